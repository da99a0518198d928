"""export.py / lsattn.exporting: the exported file runs with only jax and numpy and predicts
what predict.py predicts, for a pose run and a classification run (each trained once)."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from lsattn import LsattnError, exporting as export, prediction
from lsattn.data import images, pipeline
import trained_runs

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Run outside the repository, with no path to it: only jax and numpy can be imported.
LOADER = r"""
import sys
import jax
import numpy as np
exported = jax.export.deserialize(open(sys.argv[1], "rb").read())
inputs = np.load(sys.argv[2])
results = {}
for name in inputs.files:
  outputs = exported.call(inputs[name])
  results.update({f"{name}/{key}": np.asarray(value) for key, value in outputs.items()})
np.savez(sys.argv[3], **results)
assert not [module for module in sys.modules if module.split(".")[0] in ("lsattn", "configs")]
print("loaded", sorted(sys.modules.keys() & {"jax", "numpy", "flax", "orbax", "lsattn"}))
"""


def _call_outside_the_repository(tmp_path, exported_file, batches: dict) -> dict:
  """{batch name: {output name: array}} from the exported file, in a bare subprocess."""
  folder = tmp_path / "elsewhere"
  folder.mkdir()
  (folder / "load.py").write_text(LOADER)
  np.savez(folder / "inputs.npz", **batches)
  env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
  result = subprocess.run([sys.executable, "load.py", str(exported_file), "inputs.npz",
                           "outputs.npz"], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == "loaded ['jax', 'numpy']"
  with np.load(folder / "outputs.npz") as saved:
    outputs: dict = {}
    for key in saved.files:
      batch, name = key.split("/")
      outputs.setdefault(batch, {})[name] = saved[key]
  return outputs


def _crops(workdir, paths) -> np.ndarray:
  """float32 [B, S, S, 3], 0-255: the photos resized and centre-cropped as predict does,
  without the channel mean (the exported function subtracts it)."""
  predictor = prediction.load_predictor(workdir)
  options = dataclasses.replace(predictor.options, channel_mean=(0.0, 0.0, 0.0))
  return np.stack([pipeline.preprocess(images.load_image(path, predictor.stored_size), options,
                                       offset=None) for path in paths])


@pytest.fixture(scope="module")
def pose(tmp_path_factory):
  run = trained_runs.shared_pose_run(tmp_path_factory)
  output = tmp_path_factory.mktemp("export") / "pose.jaxexport"
  # The command line, with the run folder's own config (no --config).
  result = subprocess.run([sys.executable, str(ROOT / "export.py"),
                           f"--workdir={run['workdir']}", f"--output={output}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return dict(run, exported=output)


def test_pose_export_predicts_as_predict_with_only_jax_and_numpy(pose, tmp_path):
  paths = sorted(pose["test_frames"].glob("*.png"))[:5]
  crops = _crops(pose["workdir"], paths)
  outputs = _call_outside_the_repository(tmp_path, pose["exported"],
                                         {"one": crops[:1], "five": crops})
  one, five = outputs["one"], outputs["five"]
  assert five["position"].shape == (5, 3) and five["orientation"].shape == (5, 4)
  assert five["layer_choices"].shape == (2, 5, 4)  # [N, B, k]: 2 steps, 4 candidate layers
  assert one["layer_choices"].shape == (2, 1, 4)
  for name in ("position", "orientation", "layer_choices"):
    np.testing.assert_allclose(one[name][..., :1, :] if name == "layer_choices" else one[name],
                               five[name][..., :1, :] if name == "layer_choices"
                               else five[name][:1], atol=1e-5)

  sidecar = json.loads(pathlib.Path(f"{pose['exported']}.json").read_text())
  predicted = prediction.predict(pose["workdir"], None, paths)
  for b, result in enumerate(predicted):
    np.testing.assert_allclose(five["position"][b], result["position"], atol=1e-4)
    np.testing.assert_allclose(five["orientation"][b], result["orientation"], atol=1e-4)
    chosen = [sidecar["layer_names"][k] for k in np.argmax(five["layer_choices"][:, b], -1)]
    assert chosen == result["layers"]
  np.testing.assert_allclose(np.linalg.norm(five["orientation"], axis=-1), 1.0, atol=1e-5)


def test_pose_sidecar_says_what_the_input_and_outputs_are(pose):
  sidecar = json.loads(pathlib.Path(f"{pose['exported']}.json").read_text())
  predictor = prediction.load_predictor(pose["workdir"])
  assert sidecar["input_size"] == 32 and sidecar["input"]["shape"] == ["B", 32, 32, 3]
  assert sidecar["input"]["channel_order"] == "RGB" and sidecar["input"]["range"] == [0, 255]
  assert sidecar["input"]["channel_mean_subtracted_inside"] == pytest.approx(
      list(predictor.options.channel_mean))
  assert sidecar["resize_size"] == [40, 64]
  assert sidecar["layer_names"] == ["Tiny-1", "Tiny-2", "Tiny-3", "Tiny-4"]  # configs/test.py
  assert (sidecar["num_steps"], sidecar["checkpoint_step"], sidecar["task"]) == (2, 2, "pose")
  assert set(sidecar["outputs"]) == {"position", "orientation", "layer_choices"}
  assert sidecar["outputs"]["layer_choices"]["shape"] == ["N", "B", "k"]
  assert "camera-to-world" in sidecar["pose_convention"]["orientation"]
  assert "class_names" not in sidecar


def test_export_into_a_missing_folder_is_refused(pose, tmp_path):
  with pytest.raises(LsattnError, match="existing folder"):
    export.export_run(pose["workdir"], tmp_path / "missing" / "model.bin")


@pytest.fixture(scope="module")
def classification(tmp_path_factory):
  run = trained_runs.shared_classification_run(tmp_path_factory)
  output = tmp_path_factory.mktemp("export") / "scenes.jaxexport"
  description = export.export_run(run["workdir"], output)
  return dict(run, exported=output, description=description)


def test_classification_export_gives_predicts_logits(classification, tmp_path):
  paths = sorted((classification["images"] / "Images").glob("*/*.jpg"))[:3]
  crops = _crops(classification["workdir"], paths)
  outputs = _call_outside_the_repository(tmp_path, classification["exported"],
                                         {"three": crops})["three"]
  sidecar = classification["description"]
  classes = len(sidecar["class_names"])
  assert set(outputs) == {"logits", "layer_choices"}
  assert outputs["logits"].shape == (3, classes)
  assert outputs["layer_choices"].shape == (2, 3, 4)
  assert sidecar["outputs"]["logits"]["shape"] == ["B", classes]
  assert json.loads(pathlib.Path(f"{classification['exported']}.json").read_text()) == sidecar
  for b, result in enumerate(prediction.predict(classification["workdir"], None, paths)):
    assert list(result["probabilities"]) == sidecar["class_names"]
    logits = outputs["logits"][b] - outputs["logits"][b].max()
    probabilities = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(probabilities, list(result["probabilities"].values()),
                               atol=1e-4)
    assert sidecar["class_names"][int(np.argmax(probabilities))] == result["class"]
