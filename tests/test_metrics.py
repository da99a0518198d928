"""Evaluation metrics against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lsattn.errors import LsattnError
from lsattn.evaluation import metrics

IDENTITY = [1.0, 0.0, 0.0, 0.0]
C = np.sqrt(0.5)


@pytest.mark.parametrize("pred, expected", [
    ([C, 0, 0, C], 90.0),           # quarter turn about z
    ([0, 0, 0, 1], 180.0),          # half turn about z
    ([-1, 0, 0, 0], 0.0),           # -q is the same rotation
    ([2, 0, 0, 0], 0.0),            # not normalised
    ([1, 1e-9, 0, 0], 0.0),         # |<q, q^>| rounds to just about 1
], ids=["90deg", "180deg", "negated", "scaled", "near_one"])
def test_rotation_errors(pred, expected):
  error = metrics.rotation_errors_deg([pred], [IDENTITY])
  assert np.isfinite(error[0]) and error[0] == pytest.approx(expected, abs=1e-4)


def test_pose_summary_relocaliser_thresholds():
  """5 cm / 5 deg, 10 cm / 5 deg, 10 cm / 10 deg and 50 cm / 5 deg: both errors must be
  within, boundaries included."""
  degrees = np.array([4.0, 4.0, 8.0, 1.0, 5.0])
  true_pos = np.zeros((5, 3))
  pred_pos = [[0.04, 0, 0], [0, 0.08, 0], [0, 0, 0.04], [0.2, 0, 0], [0.05, 0, 0]]
  half = np.deg2rad(degrees) / 2
  pred_q = np.stack([np.cos(half), np.sin(half), 0 * half, 0 * half], axis=-1)
  summary = metrics.pose_summary(pred_pos, pred_q, true_pos, [IDENTITY] * 5)
  assert summary["within_0.05m_5deg"] == pytest.approx(2 / 5)  # 1st and last (on both edges)
  assert summary["within_0.1m_5deg"] == pytest.approx(3 / 5)  # not the 8 deg nor the 0.2 m one
  assert summary["within_0.1m_10deg"] == pytest.approx(4 / 5)  # all but the 0.2 m one
  assert summary["within_0.5m_5deg"] == pytest.approx(4 / 5)  # all but the 8 deg one


def test_pose_summary_values_and_json():
  pred_pos = [[3, 4, 0], [0, 0, 0.1], [0.2, 0, 0]]
  true_pos = np.zeros((3, 3))
  pred_q = [IDENTITY, [C, 0, 0, C], IDENTITY]
  summary = metrics.pose_summary(pred_pos, pred_q, true_pos, [IDENTITY] * 3)
  assert summary["median_translation_m"] == pytest.approx(0.2)
  assert summary["mean_translation_m"] == pytest.approx(5.3 / 3)
  assert summary["median_rotation_deg"] == pytest.approx(0.0)
  assert summary["mean_rotation_deg"] == pytest.approx(30.0)
  assert summary["within_0.25m_2deg"] == pytest.approx(1 / 3)  # 2nd fails on rotation
  assert summary["within_5m_10deg"] == pytest.approx(2 / 3)
  assert summary["num_examples"] == 3
  json.dumps(summary)
  with pytest.raises(LsattnError, match="no examples"):
    metrics.pose_summary(np.zeros((0, 3)), np.zeros((0, 4)), np.zeros((0, 3)), np.zeros((0, 4)))


def test_mean_pose_and_baseline():
  # +-10 deg about z, one stored with the opposite sign: the mean is identity.
  s, c = np.sin(np.radians(5)), np.cos(np.radians(5))
  train_q = [[c, 0, 0, s], [-c, 0, 0, s]]
  position, orientation = metrics.mean_pose([[0, 0, 0], [2, 0, 0]], train_q)
  np.testing.assert_allclose(position, [1, 0, 0])
  np.testing.assert_allclose(orientation, IDENTITY, atol=1e-12)
  baseline = metrics.mean_pose_baseline([[0, 0, 0], [2, 0, 0]], train_q,
                                        [[1, 3, 4], [1, 0, 0]], [[C, 0, 0, C], IDENTITY])
  assert baseline["baseline_mean_translation_m"] == pytest.approx(2.5)
  assert baseline["baseline_median_rotation_deg"] == pytest.approx(45.0)


def test_classification_summary_unbalanced():
  # Class 0: 4 examples, all right; class 1: 1 example, wrong; class 2 absent.
  labels = [0, 0, 0, 0, 1]
  logits = np.eye(3)[[0, 0, 0, 0, 0]]
  summary = metrics.classification_summary(logits, labels, 3)
  assert summary["accuracy"] == pytest.approx(0.8)
  assert summary["mean_class_accuracy"] == pytest.approx(0.5)
  assert summary["confusion_matrix"] == [[4, 0, 0], [1, 0, 0], [0, 0, 0]]
  assert metrics.classification_summary([0, 0, 0, 0, 1], labels, 3)["accuracy"] == 1.0
  with pytest.raises(LsattnError, match="labels: value 3"):
    metrics.classification_summary([0], [3], 3)


def test_layer_selection_frequency():
  names = ("3b", "4c", "4e", "5b")
  step0 = np.eye(4)[[0, 0, 1, 3]]
  step1 = np.eye(4)[[2, 2, 2, 2]]
  stacked = np.stack([step0, step1])  # [2 steps, 4 examples, 4 layers]
  frequencies = metrics.layer_selection_frequency(stacked, names)
  assert frequencies[0] == {"3b": 0.5, "4c": 0.25, "4e": 0.0, "5b": 0.25}
  assert frequencies[1]["4e"] == 1.0
  per_batch = [stacked[:, :3], stacked[:, 3:]]
  assert metrics.layer_selection_frequency(per_batch, names) == frequencies
  masked = metrics.layer_selection_frequency(stacked, names, mask=[True, True, False, False])
  assert masked[0] == {"3b": 1.0, "4c": 0.0, "4e": 0.0, "5b": 0.0}
  with pytest.raises(LsattnError, match="expected shape"):
    metrics.layer_selection_frequency(stacked, names[:3])
