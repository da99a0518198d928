"""evaluation.write_outputs for classification: metrics, predictions and the confusion figure."""

import csv
import json

import numpy as np
from PIL import Image

from lsattn import evaluation, metrics
from lsattn.data import datasets, pipeline, synthetic


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
  logits = np.zeros((2, num_classes), np.float32)
  logits[0, labels[0]] = 5.0  # right
  logits[1, (labels[1] + 1) % num_classes] = 5.0  # wrong
  steps, layers = 2, 4
  outputs = {"logits": logits,
             "layer_choices": np.eye(layers, dtype=np.float32)[[[0, 1], [2, 3]]],
             "attention_masks": np.full((2, steps, 5, 5), 1 / 25, np.float32)}
  result = metrics.classification_summary(logits, labels, num_classes)
  options = pipeline.ImageOptions(resize_size=(48, 48), image_size=40, channel_mean=(0, 0, 0))
  paths = evaluation.write_outputs(tmp_path / "eval", outputs, result, split,
                                   task="classification",
                                   layer_names=("Conv-3B", "Conv-4C", "Conv-4E", "Conv-5B"),
                                   options=options, class_names=class_names)

  assert set(paths) >= {"metrics", "predictions", "attention", "confusion"}
  written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
  assert written["accuracy"] == 0.5 and written["num_examples"] == 2
  assert np.asarray(written["confusion_matrix"]).sum() == 2
  assert Image.open(tmp_path / "eval" / "confusion.png").size[0] > 100
  with open(tmp_path / "eval" / "predictions.csv", newline="") as file:
    rows = list(csv.DictReader(file))
  assert len(rows) == 2
