"""Config keys declared once (lsattn.config_schema.KEYS): a key added in one declaration
reaches the defaults, the listing, the checks, the run-key check and the checkpoint
signature; every number is refused outside its domain (infinite, negative) before any
file is written; a run folder written by main before the declarations still loads."""

from __future__ import annotations

import json
import math
import pathlib
import shutil
import subprocess
import sys

import pytest

import configs.default
from configs import test as test_config
from lsattn import (LsattnError, config_checks, config_schema as defaults, experiment, model,
                    prediction)
from lsattn.data import splits
from lsattn.nn import attention, compute_options, convlstm
from lsattn.runs import checkpoint, run_folder
import trained_runs

ROOT = pathlib.Path(__file__).resolve().parent.parent

# What adding a key takes: this declaration. (A model key adds its field to
# ModelConfig and one line to ModelConfig.from_config: the code that uses it.)
LABEL_SMOOTHING = defaults.Key("label_smoothing", 0.0, defaults.Number(0),
                               "cross-entropy label smoothing", group="loss")
MASK_DROPOUT = defaults.Key("mask_dropout", 0.0, defaults.Number(0),
                            "dropout on the attention mask", defaults.RUN, group="model",
                            signature=("mask_dropout",))


def _declare(monkeypatch, *keys: defaults.Key) -> None:
  declared = defaults.KEYS + keys
  monkeypatch.setattr(defaults, "KEYS", declared)
  monkeypatch.setattr(defaults, "BY_NAME", {key.name: key for key in declared})


def test_a_key_added_in_one_declaration_reaches_every_use(monkeypatch, tmp_path):
  old_run = test_config.get_config()  # a run written before the keys were added
  run_folder.write(tmp_path, old_run)
  _declare(monkeypatch, LABEL_SMOOTHING, MASK_DROPOUT)

  config = test_config.get_config()  # the defaults
  assert (config.label_smoothing, config.mask_dropout) == (0.0, 0.0)
  model_config = config_checks.check_config(config)  # known keys, values in their domains
  config.label_smoothing = math.inf
  with pytest.raises(LsattnError) as error:
    config_checks.check_config(config)
  assert str(error.value) == "config.label_smoothing = inf: expected a finite number >= 0"
  assert ("* ``label_smoothing`` = ``0.0`` (a finite number >= 0): cross-entropy label "
          "smoothing.") in defaults.listing()
  assert "label_smoothing" in defaults.runtime_keys() and "mask_dropout" in defaults.run_keys()
  config.label_smoothing, config.mask_dropout = 0.1, 0.25
  signature = checkpoint.shape_signature(config, model_config, (32, 32, 3))
  assert signature["mask_dropout"] == 0.25

  # The older run: its config.json lacks both keys, which read as their defaults.
  saved = run_folder.read(tmp_path)
  assert (saved.label_smoothing, saved.mask_dropout) == (0.0, 0.0)
  given = test_config.get_config()
  given.label_smoothing = 0.1  # run-time: applied and reported
  merged, overrides = run_folder.resolve(tmp_path, given)
  assert merged.label_smoothing == 0.1
  assert overrides == {"label_smoothing": {"run": 0.0, "used": 0.1}}
  given.mask_dropout = 0.25  # the run's: refused
  with pytest.raises(LsattnError, match=r"mask_dropout=0.0 in the run, 0.25 given"):
    run_folder.resolve(tmp_path, given)


def test_every_key_is_listed_in_configs_default():
  for key in defaults.KEYS:
    assert f"* ``{key.name}`` = ``{key.default!r}``" in configs.default.__doc__


def test_declared_choices_are_what_the_code_implements():
  assert defaults.choices("model_variant") == model.MODEL_VARIANTS
  assert defaults.choices("kernels") == compute_options.KERNELS
  assert defaults.choices("remat") == compute_options.REMATS
  assert set(defaults.choices("initial_state")) == set(convlstm.INITIAL_STATES)
  assert set(defaults.choices("attention_nonlinearity")) == set(attention.NONLINEARITIES)
  assert defaults.choices("validation_split") == splits.MODES


def test_every_default_config_file_declares_nothing_new():
  # A config file sets keys; a key it adds (a typo) is refused by name.
  config = test_config.get_config()
  config.learnig_rate = 0.1
  with pytest.raises(LsattnError, match=r"unknown config key\(s\) \['learnig_rate'\]"):
    config_checks.check_config(config)


# Numbers that would poison a run: each refused with one line naming key and value,
# before the run folder (or anything in it) is written.
NUMBERS = [
    ("learning_rate", math.inf, "a finite number > 0"),
    ("learning_rate", math.nan, "a finite number > 0"),
    ("beta", math.inf, "a finite number >= 0"),
    ("beta", -1.0, "a finite number >= 0"),
    ("temperature_init", math.inf, "a finite number > 0"),
    ("temperature_final", math.nan, "a finite number > 0"),
    ("seed", -1, "an integer in [0, 4294967295]"),
    ("num_figure_examples", -1, "an integer >= 0"),
    ("warmup_steps", -1, "an integer >= 0"),
    ("temperature_decay_steps", -5, "an integer >= 0"),
    ("scan_unroll", -1, "an integer >= 0"),
    ("num_classes", -2, "an integer >= 0"),
    ("hidden_size", 0, "an integer >= 1"),
    ("num_recurrent_steps", 0, "an integer >= 1"),
    ("heartbeat_timeout_seconds", 0, "an integer >= 1"),
    ("channel_mean", (math.inf, 0.0, 0.0), "() (the dataset's mean) or three numbers in "
                                           "[0, 255] (R, G, B)"),
    ("convlstm_kernel_sizes", (1, 2), "one or more odd integers >= 1"),
]


@pytest.mark.parametrize("key, value, expected", NUMBERS,
                         ids=[f"{key}={value}" for key, value, _ in NUMBERS])
def test_a_number_outside_its_domain_is_refused_before_any_file(key, value, expected,
                                                                tmp_path):
  config = test_config.get_config()
  config.data_dir, config.manual_dir = str(tmp_path / "data"), str(tmp_path / "manual")
  config[key] = value
  with pytest.raises(LsattnError) as error:
    experiment.train_and_evaluate(config, tmp_path / "workdir")
  assert str(error.value) == f"config.{key} = {value!r}: expected {expected}"
  assert list(tmp_path.iterdir()) == []


def test_train_py_refuses_an_infinite_learning_rate_in_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, "train.py", "--config=configs/test.py", f"--workdir={tmp_path / 'run'}",
       "--config.learning_rate=inf"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert (result.returncode, result.stderr.strip()) == (
      2, "error: config.learning_rate = inf: expected a finite number > 0")
  assert list(tmp_path.iterdir()) == []


# A run folder as main wrote it before the declarations (computed with main 714d571's
# code for trained_runs.config): its config.json, and its checkpoint's shape signature.
MAIN_CONFIG_JSON = {
    "attention_branch_channels": 4, "attention_kernel_sizes": [1, 3],
    "attention_nonlinearity": "leaky_relu", "backbone": "caffe", "backbone_weights": "",
    "batch_size": 4, "beta": 10.0, "candidate_layers": [], "channel_mean": [],
    "checkpoint_every_steps": 2, "compilation_cache_dir": "~/.cache/lsattn/jax_compilation",
    "convlstm_kernel_sizes": [1, 3], "data_dir": "DATA",
    "dataset": "seven_scenes/synthetic_room", "dtype": "float32", "eval_batch_size": 4,
    "eval_every_steps": 2, "eval_figures": False, "eval_retrieval_baselines": False,
    "fixed_layer": "", "freeze_backbone": True, "gate_embedding_size": 4,
    "heartbeat_timeout_seconds": 100, "hidden_size": 8, "image_size": 32,
    "initial_state": "image", "jax_distributed": False, "keep_checkpoints": 2,
    "kernels": "auto", "learned_loss_weighting": False, "learning_rate": 0.001,
    "learning_rate_schedule": "constant", "log_every_steps": 2, "manual_dir": "MANUAL",
    "max_consecutive_nonfinite": 10, "model_variant": "layer_spatial",
    "nonfinite_policy": "skip", "num_classes": 0, "num_figure_examples": 2,
    "num_recurrent_steps": 2, "num_train_steps": 2, "projection_size": 8,
    "random_flip": False, "remat": "none", "resize_size": [40, 64], "scan_unroll": 0,
    "seed": 0, "step_loss": "final", "task": "pose", "temperature_decay_steps": 100,
    "temperature_final": 0.5, "temperature_init": 1.0, "temperature_schedule": "exponential",
    "torchvision_transform_input": "auto", "validation_split": "none", "warmup_steps": 0,
    "xla_cpu_ynn_fusions": "dot,reduce"}
MAIN_SIGNATURE = trained_runs.MAIN_TEST_CONFIG_SIGNATURE


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return trained_runs.shared_pose_run(tmp_path_factory)


# The shared run reads configs/test.py's backbone (tiny_cnn, which main did not have): main's
# files in main's format, with that run's backbone and taps.
RUN_BACKBONE = {"backbone": "tiny_cnn"}
RUN_SIGNATURE = dict(MAIN_SIGNATURE, **RUN_BACKBONE, candidate_layers=["t1", "t2", "t3", "t4"],
                     fixed_layer="t4")


def test_a_run_folder_written_by_main_still_loads(run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(run["workdir"], workdir, ignore=shutil.ignore_patterns("eval", "tensorboard"))
  written = dict(MAIN_CONFIG_JSON, **RUN_BACKBONE, data_dir=run["data"]["data_dir"],
                 manual_dir=run["data"]["manual_dir"])
  (workdir / "config.json").write_text(json.dumps(written, indent=2, sort_keys=True) + "\n")
  metas = list((workdir / "checkpoints").glob("*/meta/metadata"))
  assert metas
  for path in metas:  # the meta main's code wrote: its literal signature
    meta = json.loads(path.read_text())
    assert meta["signature"] == RUN_SIGNATURE
    path.write_text(json.dumps(dict(meta, signature=RUN_SIGNATURE)))

  saved = run_folder.read(workdir)
  assert saved.to_dict() == run["config"].to_dict()
  model_config = config_checks.check_config(saved)
  assert checkpoint.shape_signature(saved, model_config, (32, 32, 3)) == RUN_SIGNATURE
  predictor = prediction.load_predictor(workdir)
  assert predictor.step == 2 and predictor.model_config == model_config
