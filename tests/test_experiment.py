"""train.py / eval.py end to end on a tiny synthetic scene: files, resume, errors, devices."""

import csv
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import test as test_config
from lsattn import experiment, training

ROOT = pathlib.Path(__file__).resolve().parent.parent
POSE_KEYS = {"median_translation_m", "median_rotation_deg", "mean_translation_m",
             "mean_rotation_deg", "baseline_median_translation_m",
             "baseline_median_rotation_deg", "layer_selection_frequency", "num_examples",
             "knn_pixels_median_translation_m", "knn_pixels_median_rotation_deg",
             "knn_features_median_translation_m", "knn_features_median_rotation_deg"}


def _config(data, **overrides):
  config = test_config.get_config()
  config.data_dir, config.manual_dir = data["data_dir"], data["manual_dir"]
  for key, value in overrides.items():
    config[key] = value
  return config


def _run(script, *args, env=None, check=True):
  result = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=600)
  if check and result.returncode != 0:
    raise AssertionError(f"{script} failed ({result.returncode}):\n{result.stderr[-3000:]}")
  return result


def _restored_params(workdir, step):
  manager = ocp.CheckpointManager(pathlib.Path(workdir) / "checkpoints",
                                  item_names=("state", "meta"))
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return restored.state["params"]


def test_train_and_eval_cli_write_every_output(data, tmp_path):
  workdir = tmp_path / "run"
  flags = [f"--config={ROOT / 'configs' / 'test.py'}", f"--workdir={workdir}",
           f"--config.data_dir={data['data_dir']}", f"--config.manual_dir={data['manual_dir']}",
           "--config.eval_retrieval_baselines=True", "--config.eval_figures=True"]
  _run("train.py", *flags, "--config.num_train_steps=3", "--config.validation_split=auto")
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "3"]
  assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
  metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert POSE_KEYS <= set(metrics) and metrics["num_examples"] == 8
  # Validation (the last training sequence) chose the checkpoint, among steps 2 and 3.
  best = [p.name for p in (workdir / "best_checkpoint").iterdir() if p.name.isdigit()]
  assert len(best) == 1 and metrics["checkpoint_step"] == int(best[0]) in (2, 3)
  assert metrics["protocol"] == "validation_selected"
  assert metrics["checkpoint_selection"].startswith("best validation score")
  assert "trained on 24 examples, none of them validation examples" in (
      metrics["checkpoint_selection"])  # 4 training sequences of 8 frames, the last held out
  assert len(metrics["layer_selection_frequency"]) == 2  # one entry per recurrent step
  # A prediction at every step; the final step's metrics are the top level's.
  assert [entry["step"] for entry in metrics["per_step"]] == [1, 2]
  assert metrics["per_step"][-1]["median_translation_m"] == metrics["median_translation_m"]
  with open(workdir / "eval" / "predictions.csv") as handle:
    rows = list(csv.DictReader(handle))
  assert len(rows) == 8 and {"image", "translation_error_m", "layer_step2"} <= set(rows[0])
  for figure in ("attention.png", "layer_frequency.png", "layer_choice_dynamics.png",
                 "trajectory.png"):
    assert (workdir / "eval" / figure).stat().st_size > 1000
  (workdir / "eval" / "metrics.json").unlink()
  _run("eval.py", *flags, "--config.num_train_steps=3", "--config.validation_split=auto")
  again = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert again["median_translation_m"] == metrics["median_translation_m"]
  assert (again["protocol"], again["checkpoint_step"]) == ("validation_selected",
                                                           metrics["checkpoint_step"])
  # Without a validation-chosen checkpoint (a run stopped before its first
  # validation), eval.py takes the last one and says that validation chose nothing.
  shutil.rmtree(workdir / "best_checkpoint")
  unselected = experiment.evaluate(_config(data, num_train_steps=3, validation_split="auto"),
                                   workdir)
  assert (unselected["protocol"], unselected["checkpoint_step"]) == (
      "validation_held_out_last_checkpoint", 3)
  assert "8 validation examples were held out" in unselected["checkpoint_selection"]


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory):
  """(workdir, result, train-step traces): configs/test.py trained for 4 steps with validation_split='none',
  the paper configs' protocol. Tests that use it must not write to it."""
  workdir = tmp_path_factory.mktemp("finished") / "run"
  traces = []
  make_train_step = training.make_train_step

  def counted(config, model_config):
    train_step = make_train_step(config, model_config)

    def traced(*args):
      traces.append(1)  # Python runs once per trace: each trace is one compilation
      return train_step(*args)
    return traced

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(training, "make_train_step", counted)
    result = experiment.train_and_evaluate(_config(data, num_train_steps=4), workdir)
  return workdir, result, len(traces)


def test_resume_gives_the_same_params_as_an_uninterrupted_run(data, finished_run, tmp_path):
  whole_dir, whole, traces = finished_run
  assert traces == 1  # the loop compiles the train step once
  experiment.train_and_evaluate(_config(data, num_train_steps=2), tmp_path / "split")
  resumed = experiment.train_and_evaluate(_config(data, num_train_steps=4), tmp_path / "split")
  jax.tree.map(np.testing.assert_array_equal, _restored_params(whole_dir, 4),
               _restored_params(tmp_path / "split", 4))
  assert resumed["median_translation_m"] == whole["median_translation_m"]
  dynamics = "layer_choice_dynamics.jsonl"  # the same rows, each step once
  assert (whole_dir / dynamics).read_text() == (tmp_path / "split" / dynamics).read_text()


def test_metrics_name_the_protocol_of_the_evaluated_checkpoint(data, finished_run, tmp_path):
  workdir = tmp_path / "run"  # a copy: eval.py below rewrites eval/
  shutil.copytree(finished_run[0], workdir)
  # validation_split='none': the whole training split, a fixed budget, the last checkpoint.
  written = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert written["protocol"] == finished_run[1]["protocol"] == "whole_train_split_last_checkpoint"
  assert written["checkpoint_step"] == 4 and not (workdir / "best_checkpoint").exists()
  assert written["checkpoint_selection"].startswith(
      "the last checkpoint, step 4 of the fixed budget of 4 steps, trained on the whole "
      "training split (32 examples, none held out)")
  # 'auto' trains on 24 of those 32: the last of the 4 sequences is held out.
  held_out = experiment.setup(_config(data, validation_split="auto"))
  assert (len(held_out.train_split), len(held_out.validation_split)) == (24, 8)
  # eval.py on a checkpoint short of the budget says that training has not finished.
  unfinished = experiment.evaluate(_config(data, num_train_steps=6), workdir)
  assert unfinished["protocol"] == "whole_train_split_last_checkpoint"
  assert "step 4 of the fixed budget of 6 steps (training not finished)" in (
      unfinished["checkpoint_selection"])
  # Another validation_split would change the training examples: refused, named.
  with pytest.raises(experiment.LsattnError, match="validation_split='none'"):
    experiment.evaluate(_config(data, num_train_steps=4, validation_split="auto"), workdir)
  assert written["protocol"] in experiment.PROTOCOLS


def test_lstm_posenet_baseline_trains_and_evaluates(data, tmp_path):
  result = experiment.train_and_evaluate(
      _config(data, model_variant="lstm_posenet", num_train_steps=2,
              eval_retrieval_baselines=True), tmp_path / "run")
  assert np.isfinite(result["median_translation_m"]) and result["per_step"] == []
  metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
  assert metrics["median_rotation_deg"] == result["median_rotation_deg"]
  # A baseline without Conv-LSTM steps gets the retrieval baselines too (its deepest tap).
  assert POSE_KEYS <= set(metrics) and metrics["knn_features_tap"] == "t4"
  assert not (tmp_path / "run" / "layer_choice_dynamics.jsonl").exists()  # no layer choice


def test_googlenet_classification_baseline_trains_and_evaluates(tmp_path):
  from lsattn.data.synthetic import room as synthetic
  classes = synthetic.DEFAULT_NUM_CLASSES
  manual = synthetic.write_synthetic_mit67(tmp_path / "manual", train_per_class=2,
                                           test_per_class=1, image_size=(40, 40))
  config = _config({"data_dir": str(tmp_path / "data"), "manual_dir": str(manual)},
                   dataset="mit67/synthetic", task="classification", num_classes=classes,
                   model_variant="googlenet", resize_size=(36, 36), random_flip=True,
                   num_train_steps=2)
  result = experiment.train_and_evaluate(config, tmp_path / "run")
  assert result["num_examples"] == classes and 0 <= result["mean_class_accuracy"] <= 1
  assert result["per_step"] == [] and result["protocol"] == "whole_train_split_last_checkpoint"


def test_paper_configs_train_on_the_whole_split_for_a_fixed_budget():
  from configs import ablation, cambridge, mit67, own_scene, posenet, seven_scenes, tum_lsi
  for config, steps in [(seven_scenes.get_config("redkitchen"), 20_000),
                        (posenet.get_config("seven_scenes/heads"), 20_000),
                        (cambridge.get_config("street"), 8_000),
                        (ablation.get_config("spatial_3b,old_hospital"), 8_000),
                        (tum_lsi.get_config(), 5_000), (mit67.get_config(), 8_000)]:
    assert (config.validation_split, config.num_train_steps, config.batch_size) == (
        "none", steps, 40), config.dataset
  assert own_scene.get_config("room").validation_split == "auto"  # users' scenes: validation


def test_resume_with_other_shapes_or_training_examples_is_refused(data, finished_run):
  workdir = finished_run[0]  # both are refused before anything is written
  with pytest.raises(experiment.LsattnError, match="hidden_size"):
    experiment.train_and_evaluate(_config(data, num_train_steps=6, hidden_size=16), workdir)
  with pytest.raises(experiment.LsattnError, match="validation_split='none'"):
    experiment.train_and_evaluate(_config(data, num_train_steps=6, validation_split="auto"),
                                  workdir)


@pytest.mark.parametrize("flag, message", [
    ("--config.num_train_steps=0", "num_train_steps"),
    ("--config.temperature_init=0", "temperature_init"),
    ("--config.beta=-1", "beta"),
    ("--config.dataset=seven_scenes/chess", "manual_dir"),
])
def test_bad_config_fails_fast_with_a_named_error(tmp_path, flag, message):
  result = _run("train.py", f"--config={ROOT / 'configs' / 'test.py'}",
                f"--workdir={tmp_path / 'run'}", f"--config.data_dir={tmp_path / 'none'}",
                flag, check=False)
  assert result.returncode == 2, result.stderr[-2000:]
  assert message in result.stderr and "Traceback" not in result.stderr
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_override_key_is_refused(tmp_path):
  result = _run("train.py", f"--config={ROOT / 'configs' / 'test.py'}",
                f"--workdir={tmp_path / 'run'}", "--config.num_trian_steps=3", check=False)
  assert result.returncode != 0 and "num_trian_steps" in result.stderr


TWO_DEVICE_SCRIPT = r"""
import sys, jax, numpy as np
sys.path.insert(0, {root!r})
from configs import test as test_config
from lsattn import config_checks, training
from lsattn.runs import parallel
assert jax.device_count() == 2, jax.devices()
config = test_config.get_config()
model_config = config_checks.check_config(config)
rng = np.random.default_rng(0)
batch = {{"image": rng.normal(0, 50, (4, 32, 32, 3)).astype(np.float32),
          "position": rng.normal(0, 1, (4, 3)).astype(np.float32),
          "orientation": np.tile(np.float32([1, 0, 0, 0]), (4, 1))}}
loss_fn = training.make_loss_fn(config, model_config)
results = []
for devices in (jax.devices()[:1], jax.devices()):
  mesh = parallel.create_mesh(devices)
  replicated = parallel.replicated(mesh)
  state = parallel.replicate(training.create_train_state(
      jax.random.key(0), config, model_config, (32, 32, 3)), mesh)
  sharded = parallel.shard_batch(batch, mesh)
  # What the train step computes before the optimiser's elementwise update: the loss, its
  # gradients, the layer choices and the new batch-norm statistics (one program per mesh).
  def loss_and_grads(params):
    (loss, (_, outputs, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, state.model_state, sharded, jax.random.key(2), 0.7)
    return loss, grads, outputs.layer_choices, new_state
  step = jax.jit(loss_and_grads, out_shardings=replicated)
  results.append(jax.device_get(step(state.params)))
(loss_one, grads_one, choices_one, stats_one), (loss_two, grads_two, choices_two, stats_two) = (
    results)
# The same batch split over 2 devices gives the same loss, gradients, layer choices and
# statistics (up to float summation order).
np.testing.assert_allclose(loss_one, loss_two, rtol=1e-5)
np.testing.assert_array_equal(choices_one, choices_two)
assert choices_one.shape[1] == 4  # the whole batch on both meshes
assert jax.tree.leaves(stats_one)  # the attention's batch norm, per step
for one, two in ((grads_one, grads_two), (stats_one, stats_two)):
  scale = max(float(np.max(np.abs(g))) for g in jax.tree.leaves(one))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * scale),
               one, two)
print("OK", loss_one, loss_two)
"""


def test_two_device_loss_and_gradients_match_one_device(tmp_path):
  script = tmp_path / "two_devices.py"
  script.write_text(TWO_DEVICE_SCRIPT.format(root=str(ROOT)))
  env = dict(os.environ, XLA_FLAGS=f"{os.environ['XLA_FLAGS']} "
                                   "--xla_force_host_platform_device_count=2")
  result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                          timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.startswith("OK")


def test_eval_without_a_checkpoint_says_so_before_any_work(tmp_path):
  """eval.py on a run with no checkpoint (or a misspelled workdir) stops at once: no dataset
  is written or built, and the run folder is not created."""
  data_dir, workdir = tmp_path / "data", tmp_path / "no_such_run"
  result = _run("eval.py", f"--config={ROOT / 'configs' / 'test.py'}", f"--workdir={workdir}",
                f"--config.data_dir={data_dir}", check=False)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      f"error: no checkpoint in {workdir.resolve() / 'checkpoints'}: train first with "
      f"train.py --workdir={workdir}")
  assert not data_dir.exists() and not workdir.exists()


@pytest.mark.parametrize("script", ["train.py", "eval.py", "predict.py"])
def test_bad_config_overrides_are_one_line_errors(script, tmp_path):
  """A misspelled --config key or a value of the wrong type: one line naming it, exit 2."""
  base = [f"--config={ROOT / 'configs' / 'test.py'}", f"--workdir={tmp_path}"]
  typo = _run(script, *base, "--config.batchsize=4", check=False)
  assert typo.returncode == 2
  assert typo.stderr.strip() == ("error: unknown config key in --config.batchsize=4: "
                                 "'batchsize'; Did you mean \"batch_size\" instead of "
                                 "\"batchsize\"?")
  value = _run(script, *base, "--config.batch_size=abc", check=False)
  assert value.returncode == 2
  assert value.stderr.strip() == ("error: flag --config.batch_size=abc: invalid literal for "
                                  "int() with base 10: 'abc'")
