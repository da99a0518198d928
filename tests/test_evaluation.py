"""evaluation: metrics of the final and of every step's prediction, and what eval writes.

Per-step outputs are made by hand so that each step's errors are known by
construction; a pose split is a stand-in holding only the labels that
evaluation reads.
"""

import csv
import json
import types

import numpy as np
from PIL import Image
import pytest

from lsattn import geometry
from lsattn.data import datasets, pipeline, pseudo_gt
from lsattn.data.synthetic import room as synthetic
from lsattn.evaluation import loop as evaluation

LAYERS = ("Conv-3B", "Conv-4C", "Conv-4E", "Conv-5B")
# Per step: translation error (m) of each of 3 examples, rotation error (deg).
STEP_ERRORS = (((1.0, 1.0, 4.0), 20.0), ((0.4, 0.4, 0.4), 3.0), ((0.0, 0.0, 0.0), 0.0))


def _class_split(root):
  """mit67/full built from lsattn's synthetic MIT-67 writer: 2 classes, 1 test image each."""
  manual = synthetic.write_synthetic_mit67(root / "manual", num_classes=2, train_per_class=2,
                                           test_per_class=1, image_size=(48, 48))
  builder = datasets.prepare("mit67/full", data_dir=root / "data", manual_dir=manual)
  return pipeline.Split(builder, "test"), tuple(builder.info.features["label"].names)


def test_classification_outputs_include_metrics_predictions_and_confusion(tmp_path):
  split, class_names = _class_split(tmp_path)
  labels = split.labels["label"]
  num_classes = len(class_names)
  right = np.eye(num_classes, dtype=np.float32)[labels] * 5.0  # [2, C]
  wrong = np.eye(num_classes, dtype=np.float32)[(labels + 1) % num_classes] * 5.0
  logits = np.stack([right[0], wrong[1]])  # final: the first right, the second wrong
  steps = 2
  outputs = {"logits": logits,
             "step_logits": np.stack([wrong, logits], axis=1),  # [2, N, C]; step 1 all wrong
             "layer_choices": np.eye(len(LAYERS), dtype=np.float32)[[[0, 1], [2, 3]]],
             "attention_masks": np.full((2, steps, 5, 5), 1 / 25, np.float32)}
  result = evaluation.classification_metrics(outputs, split, class_names, LAYERS)
  options = pipeline.ImageOptions(resize_size=(48, 48), image_size=40, channel_mean=(0, 0, 0))
  paths = evaluation.write_outputs(tmp_path / "eval", outputs, result, split,
                                   task="classification", layer_names=LAYERS,
                                   options=options, class_names=class_names)

  assert set(paths) >= {"metrics", "predictions", "attention", "confusion"}
  written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
  assert written["accuracy"] == 0.5 and written["num_examples"] == 2
  assert np.asarray(written["confusion_matrix"]).sum() == 2
  assert written["per_step"] == [
      {"step": 1, "accuracy": 0.0, "mean_class_accuracy": 0.0, "num_examples": 2},
      {"step": 2, "accuracy": 0.5, "mean_class_accuracy": 0.5, "num_examples": 2}]
  assert Image.open(tmp_path / "eval" / "confusion.png").size[0] > 100
  with open(tmp_path / "eval" / "predictions.csv", newline="") as file:
    rows = list(csv.DictReader(file))
  assert len(rows) == 2
  assert list(rows[0])[-4:] == ["layer_step1", "layer_step2", "predicted_step1",
                                "predicted_step2"]
  for row in rows:
    assert row["predicted_step1"] != row["label"] and row["predicted_step2"] == row["predicted"]
  table = evaluation.summary_table(result, "classification").splitlines()
  assert table[-2].split() == ["step", "1", "0.0000", "0.0000"]
  assert table[-1].split() == ["step", "2", "0.5000", "0.5000"]


def _turned(orientation, degrees):
  """orientation [E, 4] followed by a turn of `degrees` about the camera's z axis."""
  half = np.radians(degrees) / 2
  return geometry.quaternion_multiply(orientation, [np.cos(half), 0.0, 0.0, np.sin(half)])


def _pose_case():
  """3 examples and 3 steps whose errors are STEP_ERRORS; the last step is exact.

  Returns:
    outputs (as evaluate_split gives them), the test split and the train
    split, both stand-ins holding only their labels.
  """
  rng = np.random.default_rng(0)
  true_position = rng.normal(size=(3, 3))
  true_orientation = geometry.normalize_quaternion(rng.normal(size=(3, 4)))
  step_position, step_orientation = [], []
  for translation, degrees in STEP_ERRORS:
    step_position.append(true_position + np.outer(translation, [1.0, 0.0, 0.0]))
    step_orientation.append(_turned(true_orientation, degrees))
  # The final step's quaternions negated: the same rotations.
  step_orientation[-1] = -step_orientation[-1]
  outputs = {"position": step_position[-1], "orientation": step_orientation[-1],
             "step_position": np.stack(step_position, axis=1),  # [E, N, 3]
             "step_orientation": np.stack(step_orientation, axis=1),  # [E, N, 4]
             "layer_choices": np.eye(len(LAYERS))[[[0, 1, 3], [0, 2, 3], [1, 1, 3]]]}
  split = types.SimpleNamespace(labels={"position": true_position,
                                        "orientation": true_orientation,
                                        "image_name": np.array(["c.png", "a.png", "b.png"])})
  train_split = types.SimpleNamespace(labels={"position": true_position + 1.0,
                                              "orientation": true_orientation})
  return outputs, split, train_split


def test_pose_metrics_per_step():
  outputs, split, train_split = _pose_case()
  result = evaluation.pose_metrics(outputs, split, train_split, LAYERS)
  first, second, last = result["per_step"]
  assert [entry["step"] for entry in result["per_step"]] == [1, 2, 3]
  assert first["median_translation_m"] == pytest.approx(1.0)
  assert first["mean_translation_m"] == pytest.approx(2.0)
  assert first["median_rotation_deg"] == pytest.approx(20.0)
  assert first["within_5m_10deg"] == 0.0
  assert second["median_translation_m"] == pytest.approx(0.4)
  assert second["median_rotation_deg"] == pytest.approx(3.0)
  assert second["within_0.5m_5deg"] == 1.0 and second["within_0.25m_2deg"] == 0.0
  # Same keys as the top-level pose metrics; the top level is the final step.
  summary_keys = {"median_translation_m", "median_rotation_deg", "mean_translation_m",
                  "mean_rotation_deg", "within_0.25m_2deg", "within_0.5m_5deg",
                  "within_5m_10deg", "within_0.05m_5deg", "within_0.1m_5deg",
                  "within_0.1m_10deg",
                  "num_examples"}
  for entry in result["per_step"]:
    assert set(entry) == summary_keys | {"step"} and entry["num_examples"] == 3
  assert summary_keys <= set(result)
  assert last == pytest.approx({**{key: result[key] for key in summary_keys}, "step": 3},
                               abs=1e-6)
  assert result["median_translation_m"] == pytest.approx(0.0, abs=1e-9)
  json.dumps(result)  # plain Python numbers, as metrics.json needs

  table = evaluation.summary_table(result, "pose").splitlines()
  assert [line.split() for line in table[-3:]] == [["step", "1", "1.000", "20.000"],
                                                   ["step", "2", "0.400", "3.000"],
                                                   ["step", "3", "0.000", "0.000"]]


def test_pose_predictions_csv_has_each_steps_errors(tmp_path):
  outputs, split, _ = _pose_case()
  evaluation.write_predictions_csv(tmp_path / "predictions.csv", outputs, split, task="pose",
                                   layer_names=LAYERS, scene="chess")
  with open(tmp_path / "predictions.csv", newline="") as file:
    rows = list(csv.DictReader(file))
  assert list(rows[0])[:2] == ["image", "scene"] and {row["scene"] for row in rows} == {"chess"}
  assert list(rows[0])[-9:] == [
      "layer_step1", "layer_step2", "layer_step3",
      "translation_error_m_step1", "translation_error_m_step2", "translation_error_m_step3",
      "rotation_error_deg_step1", "rotation_error_deg_step2", "rotation_error_deg_step3"]
  assert [row["image"] for row in rows] == ["a.png", "b.png", "c.png"]
  # Rows sorted by name: a.png is example 1, b.png 2, c.png 0.
  for row, example in zip(rows, (1, 2, 0)):
    for t, (translation, degrees) in enumerate(STEP_ERRORS):
      assert float(row[f"translation_error_m_step{t + 1}"]) == pytest.approx(
          translation[example], abs=1e-6)
      assert float(row[f"rotation_error_deg_step{t + 1}"]) == pytest.approx(degrees, abs=1e-4)
    assert row["translation_error_m_step3"] == row["translation_error_m"]
  assert rows[1]["layer_step2"] == "Conv-4C"


@pytest.mark.parametrize("steps", ["zero_steps", "absent"])
@pytest.mark.parametrize("task", ["pose", "classification"])
def test_no_recurrent_steps_give_empty_per_step_and_no_step_columns(tmp_path, task, steps):
  outputs, split, train_split = _pose_case()
  outputs["layer_choices"] = np.zeros((3, 0, len(LAYERS)))
  outputs = {key: value[:, :0] if key.startswith("step_") else value
             for key, value in outputs.items()}
  class_names = ("bar", "kitchen")
  if task == "classification":
    split.labels["label"] = np.array([0, 1, 1])
    outputs["logits"] = np.eye(2)[[0, 1, 0]]
    outputs["step_logits"] = np.zeros((3, 0, 2))
  if steps == "absent":
    outputs = {key: value for key, value in outputs.items() if not key.startswith("step_")}
  result = (evaluation.pose_metrics(outputs, split, train_split, LAYERS) if task == "pose"
            else evaluation.classification_metrics(outputs, split, class_names, LAYERS))
  assert result["per_step"] == [] and result["layer_selection_frequency"] == []
  assert "step" not in evaluation.summary_table(result, task)
  evaluation.write_predictions_csv(tmp_path / "predictions.csv", outputs, split, task=task,
                                   layer_names=LAYERS, class_names=class_names, scene="chess")
  with open(tmp_path / "predictions.csv", newline="") as file:
    header = next(csv.reader(file))
  assert not [column for column in header if "step" in column]


def test_pose_outputs_hold_the_scene_and_per_frame_estimates(tmp_path):
  """estimates_<scene>.txt holds the final predictions, world to camera: read back, they
  are predictions.csv's poses, and give its errors against the true poses."""
  outputs, split, train_split = _pose_case()
  result = evaluation.pose_metrics(outputs, split, train_split, LAYERS)
  options = pipeline.ImageOptions(resize_size=(48, 48), image_size=40, channel_mean=(0, 0, 0))
  paths = evaluation.write_outputs(tmp_path / "eval", outputs, result, split, task="pose",
                                   layer_names=LAYERS, options=options, draw_figures=False,
                                   scene="chess")
  assert paths["estimates_chess"] == str(tmp_path / "eval" / "estimates_chess.txt")
  with open(tmp_path / "eval" / "predictions.csv", newline="") as file:
    rows = {row["image"]: row for row in csv.DictReader(file)}
  estimates = pseudo_gt.read_pose_lines(paths["estimates_chess"], focal_length=False)
  assert list(estimates) == ["a.png", "b.png", "c.png"] == sorted(rows)
  for i, name in enumerate(split.labels["image_name"]):
    estimate, row = estimates[name], rows[name]
    assert row["scene"] == "chess"
    np.testing.assert_allclose(estimate.position, outputs["position"][i], atol=1e-9)
    assert geometry.quaternion_angle_deg(estimate.orientation, outputs["orientation"][i]) < 1e-5
    np.testing.assert_allclose(
        estimate.position, [float(row[f"pred_{axis}"]) for axis in "xyz"], atol=1e-6)
    translation = np.linalg.norm(estimate.position - split.labels["position"][i])
    assert translation == pytest.approx(float(row["translation_error_m"]), abs=1e-6)

  # One file per scene when the examples come from several.
  (tmp_path / "multi").mkdir()
  paths = evaluation.write_estimates(tmp_path / "multi", outputs, split,
                                     ["fire", "chess", "fire"])
  assert sorted(paths) == ["chess", "fire"]
  assert list(pseudo_gt.read_pose_lines(paths["fire"], focal_length=False)) == ["b.png",
                                                                                "c.png"]
  assert list(pseudo_gt.read_pose_lines(paths["chess"], focal_length=False)) == ["a.png"]
