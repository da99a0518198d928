"""Issue 35's cases 1-4, 8, 9 and 11: Ctrl-C stops at a safe point, predict never
writes over the run's own files, Cambridge files need their header, a model too large
for the memory is refused before compute, run folders hold absolute paths, and the
absurd or empty values are one line each. RELIABILITY.md says which test proves which
guarantee.

Most run in-process, on the shared tiny run (tests/trained_runs.py) or on inputs refused
before any compute; the command-line cases run the script as a subprocess (a few
seconds: they stop before jax compiles anything).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

import trained_runs
from lsattn import (LsattnError, backbones, cli, config_checks, config_schema, experiment,
                    prediction, training)
from lsattn.backbones import loading
from lsattn.data import formats
from lsattn.evaluation import loop as evaluation
from lsattn.runs import interrupts, run_folder, run_lock

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEST_CONFIG = ROOT / "configs" / "test.py"
CAMBRIDGE_HEADER = "Visual Landmark Dataset V1\nImageFile, Camera Position [X Y Z W P Q R]\n\n"


def _cli(script: str, *args, cwd=ROOT) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd,
                        capture_output=True, text=True, timeout=300)


def _last_line(result: subprocess.CompletedProcess) -> str:
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  return result.stderr.strip().splitlines()[-1]


# ------------------------------------------------------- 3. Cambridge without its header


def _cambridge_scene(root: pathlib.Path, header: str, count: int = 4) -> pathlib.Path:
  lines = []
  for i in range(count):
    name = f"seq1/frame{i:05d}.png"
    (root / "seq1").mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(b"never decoded")
    lines.append(f"{name} {i} 0 0 1 0 0 0")
  (root / "dataset_train.txt").write_text(header + "\n".join(lines) + "\n")
  return root


def test_a_cambridge_file_without_its_header_is_refused_naming_it(tmp_path):
  """Before: the first three image lines were skipped unseen (17 of 20 images, exit 0)."""
  scene = _cambridge_scene(tmp_path, header="")
  with pytest.raises(LsattnError, match=r"dataset_train.txt:1: expected the Cambridge header"):
    formats.read_cambridge(scene, "train")


@pytest.mark.parametrize("header", [CAMBRIDGE_HEADER, CAMBRIDGE_HEADER.rstrip("\n") + "\n"],
                         ids=["three-lines", "no-blank-line"])
def test_every_image_after_the_cambridge_header_is_read(tmp_path, header):
  records = formats.read_cambridge(_cambridge_scene(tmp_path, header), "train")
  assert [r.position[0] for r in records] == [0, 1, 2, 3]


# ----------------------------------------- 9. values that are absurd: channel_mean


@pytest.mark.parametrize("mean", [(1e30, 1e30, 1e30), (-1.0, 0.0, 0.0), (0.0, 256.0, 0.0)])
def test_an_absurd_channel_mean_is_refused_naming_the_key(mean):
  """Before: channel_mean=(1e30,)*3 trained and evaluated every image to one prediction."""
  config = config_schema.get_config()
  config.channel_mean = mean
  with pytest.raises(LsattnError, match=r"config.channel_mean = .*: expected \(\) .* or three "
                                        r"numbers in \[0, 255\]"):
    config_schema.check_values(config)


# -------------------------------------------- 11. get_config() None; no weight readers


def test_a_config_file_returning_none_with_overrides_names_the_file(tmp_path):
  """Before: 'unknown config key in --config.data_dir=...: Attribute <class 'NoneType'>...'."""
  config = tmp_path / "none.py"
  config.write_text("def get_config():\n  return None\n")
  last = _last_line(_cli("train.py", f"--config={config}", f"--workdir={tmp_path / 'run'}",
                         f"--config.data_dir={tmp_path}"))
  assert last.startswith(f"error: --config={config}: get_config() returned None"), last
  assert not (tmp_path / "run").exists()


def test_a_backbone_without_weight_readers_says_so(tmp_path):
  """Before: "backbone 'tiny_cnn' reads  weights" and "expected a weights file ()"."""
  assert not backbones.get("tiny_cnn").readers
  weights = tmp_path / "w.npz"
  np.savez(weights, x=np.zeros(1))
  with pytest.raises(LsattnError) as raised:
    loading.load_backbone_weights(weights, "tiny_cnn")
  assert "backbone 'tiny_cnn' reads no weight files" in str(raised.value)
  assert "reads  weights" not in str(raised.value)
  with pytest.raises(LsattnError) as raised:
    backbones.weights_file("tiny_cnn", "imagenet")
  assert str(raised.value) == ("config.backbone_weights = 'imagenet': backbone 'tiny_cnn' has no "
                               "named weights and reads no weight files (random init only); "
                               "leave backbone_weights ''")


# ------------------------------------------ 9. an empty or too long --workdir


def test_an_empty_workdir_is_refused_instead_of_the_current_folder(tmp_path, monkeypatch):
  """Before: `--workdir=` (an unset variable) trained into the current folder."""
  monkeypatch.chdir(tmp_path)
  config = trained_runs.config({"data_dir": str(tmp_path / "data"),
                                "manual_dir": str(tmp_path / "manual")})
  with pytest.raises(LsattnError, match=r"--workdir is empty \(an unset variable\?\)"):
    experiment.train_and_evaluate(config, "")
  assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("limit", ["NAME_MAX", "PATH_MAX"])
def test_a_workdir_too_long_for_the_system_is_named_before_any_file(tmp_path, limit):
  """Before: tensorboardX's traceback, after config.json and checkpoints were written."""
  if limit == "NAME_MAX":
    workdir = tmp_path / ("r" * (os.pathconf(tmp_path, "PC_NAME_MAX") + 1))
  else:
    depth = os.pathconf(tmp_path, "PC_PATH_MAX") - len(str(tmp_path)) - 100
    workdir = tmp_path.joinpath(*["d" * 99] * (depth // 100))
  with pytest.raises(LsattnError, match=rf"--workdir=.*\({limit}\). Use a shorter --workdir"):
    run_folder.check_workdir(workdir)
  assert not list(tmp_path.iterdir())


# ------------------------------------------- 2. predict over the run's own files


@pytest.mark.parametrize("output", ["config.json", "eval/predictions.csv",
                                    "checkpoints/4/x.json"])
def test_predict_refuses_an_output_over_the_runs_own_files_before_any_work(tmp_path, output):
  """Before: `predict.py --output=<run>/config.json` replaced the run's config."""
  run = tmp_path / "run"
  (run / "eval").mkdir(parents=True)
  (run / "checkpoints" / "4").mkdir(parents=True)
  (run / "config.json").write_text("{}\n")
  image = tmp_path / "a.png"
  image.write_bytes(b"never read")
  with pytest.raises(LsattnError, match=rf"--output={run / output} would replace the run's "
                                        rf"own {pathlib.PurePath(output).parts[0]}"):
    cli.predict_images(None, run, [image], str(run / output), None, False)
  assert (run / "config.json").read_text() == "{}\n"
  assert sorted(p.name for p in run.rglob("*")) == ["4", "checkpoints", "config.json", "eval"]


def test_predict_refuses_overlays_in_the_runs_own_folders(tmp_path):
  run = tmp_path / "run"
  (run / "eval").mkdir(parents=True)
  with pytest.raises(LsattnError, match=r"--overlays=.*/run/eval/over lies in the run's own eval"):
    cli.predict_images(None, run, [tmp_path / "a.png"], None, str(run / "eval" / "over"), False)


# ------------------------------------------------ 8. absolute paths in config.json


def test_config_json_holds_relative_paths_as_absolute(tmp_path, monkeypatch):
  """Before: `--config.data_dir=data --config.manual_dir=man` were stored as typed, so
  eval.py from another folder looked for another data_dir."""
  (tmp_path / "here").mkdir()
  (tmp_path / "elsewhere").mkdir()
  (tmp_path / "run").mkdir()
  monkeypatch.chdir(tmp_path / "here")
  config = config_schema.get_config()
  config.data_dir, config.manual_dir = "data", "./man"
  config.backbone_weights, config.compilation_cache_dir = "w/googlenet.npz", "~/cache"
  run_folder.write(tmp_path / "run", config)
  assert config.data_dir == "data"  # the caller's config is left as given
  monkeypatch.chdir(tmp_path / "elsewhere")
  saved, overrides = run_folder.resolve(tmp_path / "run")
  here = tmp_path / "here"
  assert (saved.data_dir, saved.manual_dir, saved.backbone_weights) == (
      str(here / "data"), str(here / "man"), str(here / "w" / "googlenet.npz"))
  assert saved.compilation_cache_dir == "~/cache" and overrides == {}
  # A config given from another folder: its relative paths mean that folder.
  _, overrides = run_folder.resolve(tmp_path / "run", config)
  assert overrides["data_dir"] == {"run": str(here / "data"),
                                   "used": str(tmp_path / "elsewhere" / "data")}
  config.backbone_weights = "imagenet"  # a name, not a path
  assert run_folder.absolute_paths(config)[1] == {"data_dir": "data", "manual_dir": "./man"}


# ------------------------------------------ 1. Ctrl-C stops at the next safe point


@pytest.fixture(scope="module")
def pose(tmp_path_factory):
  return trained_runs.shared_pose_run(tmp_path_factory)


def _signalled_once_and_swallowed(function, calls: list):
  """`function`, which on its first call gets SIGINT while a library swallows whatever the
  handler raises (as Python does in `_xla_gc_callback`); `calls` counts the calls."""

  def wrapped(*args, **kwargs):
    calls.append(1)
    if len(calls) == 1:
      try:
        signal.raise_signal(signal.SIGINT)
      except BaseException:  # pylint: disable=broad-except
        pass  # "Exception ignored in ...": what once let eval.py run to its end
    return function(*args, **kwargs)

  return wrapped


def test_ctrl_c_during_eval_stops_after_the_batch_and_writes_nothing(pose, tmp_path,
                                                                     monkeypatch):
  """Before: the evaluation ran to its end and wrote metrics.json and predictions.csv, then
  said 'nothing was half-written'."""
  run = pathlib.Path(shutil.copytree(pose["workdir"], tmp_path / "run", symlinks=True))
  before = {path.name: path.read_bytes() for path in (run / "eval").iterdir()}
  calls = []
  compiled = evaluation.compiled_eval_step
  monkeypatch.setattr(evaluation, "compiled_eval_step", lambda *args: (
      _signalled_once_and_swallowed(compiled(*args), calls)))
  with pytest.raises(LsattnError) as raised:
    experiment.evaluate(None, run)
  assert str(raised.value) == (
      f"stopped by SIGINT during the evaluation at a safe point (after 1 of 2 test batches); "
      f"nothing was written ({run / 'eval'} keeps its previous outputs). Run the same command "
      f"again.")
  assert len(calls) == 1  # the second batch never ran
  assert {path.name: path.read_bytes() for path in (run / "eval").iterdir()} == before
  assert not (run / run_lock.LOCK_FILE).exists()


def test_ctrl_c_during_predict_stops_after_the_batch_and_writes_nothing(pose, tmp_path,
                                                                        monkeypatch):
  calls = []
  monkeypatch.setattr(prediction, "_run", _signalled_once_and_swallowed(prediction._run, calls))
  output = tmp_path / "predictions.csv"
  frames = sorted(pose["test_frames"].glob("*.color.png"))
  assert len(frames) == 8
  with pytest.raises(LsattnError, match=r"^stopped by SIGINT during the prediction at a safe point "
                                        r"\(after 4 of 8 images\); no predictions were written. "
                                        r"Run the same command again.$"):
    cli._stopping_on_signals(cli.predict_images, "the prediction")(
        None, pose["workdir"], frames, str(output), None, False)
  assert len(calls) == 1 and not output.exists()


def test_a_signal_after_the_last_safe_point_lets_the_writes_finish():
  """The outputs being written when the signal came are written whole, and the line says so."""
  written = []
  with pytest.raises(LsattnError, match=r"^SIGTERM arrived during the evaluation after its last "
                                        r"safe point: it ran to its end and its outputs were "
                                        r"written whole$"):
    with interrupts.stopping_on_signals("the evaluation", "Run it again."):
      interrupts.at_safe_points("nothing was written")
      interrupts.safe_point("before writing")
      signal.raise_signal(signal.SIGTERM)
      written.append("metrics.json")
  assert written == ["metrics.json"]


# ----------------------------------------- 4. a model too large for the memory


@pytest.mark.parametrize("key, value", [("hidden_size", 1_000_000), ("batch_size", 10**9)])
def test_a_step_too_large_for_the_memory_is_refused_naming_the_key(tmp_path, key, value):
  """Before: hidden_size=1000000 hung at 0% CPU after writing config.json and the lock."""
  config = trained_runs.config({"data_dir": str(tmp_path / "data"),
                                "manual_dir": str(tmp_path / "manual")}, **{key: value})
  expected = (rf"^the train step needs at least [\d.]+ TiB \(state .*, gradients .*, batch .*; "
              rf"activations come on top\), more than this host's memory \([\d.]+ GiB\): "
              rf"{key}={value} \(at its default .*\) makes it large. Nothing was written.$")
  with pytest.raises(LsattnError, match=expected):
    experiment.start_training(config)
  with pytest.raises(LsattnError, match=expected):
    experiment.train_and_evaluate(config, tmp_path / "run")
  assert not list(tmp_path.iterdir())  # no run folder, lock or dataset


def test_memory_needed_counts_params_statistics_and_adam_moments():
  config = trained_runs.config({"data_dir": "", "manual_dir": ""}, freeze_backbone=False)
  model_config = config_checks.check_config(config)
  parts = training.memory_needed(config, model_config, (32, 32, 3))
  state = training.create_train_state(jax.random.key(0), config, model_config, (32, 32, 3))
  size = lambda tree: sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(tree))
  assert parts["gradients"] == size(state.params)
  assert parts["state"] == size(state.params) + size(state.model_state) + size(state.opt_state)
  assert parts["batch"] == 4 * 32 * 32 * 3 * 4


def test_a_second_signal_stops_at_once():
  ran = []
  with pytest.raises(LsattnError, match=r"^stopped by SIGINT during the evaluation; nothing was "
                                        r"half-written. Run it again.$"):
    with interrupts.stopping_on_signals("the evaluation", "Run it again."):
      interrupts.at_safe_points("nothing was written")
      signal.raise_signal(signal.SIGINT)
      ran.append("after the first")
      signal.raise_signal(signal.SIGINT)
      ran.append("after the second")
  assert ran == ["after the first"]
