"""Evaluation metrics on the host: pose errors, accuracies, layer frequencies.

Numpy in float64 throughout; summaries hold plain Python numbers so they can
be written to ``metrics.json`` as they are. Poses follow the convention of
:mod:`lsattn.geometry`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lsattn import geometry
from lsattn.errors import LsattnError

# The paper's yardsticks (Cambridge-scale), then those of today's 7-Scenes relocalisers:
# 5 cm / 5 deg (the main one), 10 cm / 5 deg, 10 cm / 10 deg (and 50 cm / 5 deg, above),
# so numbers compare with both.
DEFAULT_THRESHOLDS = ((0.25, 2.0), (0.5, 5.0), (5.0, 10.0), (0.05, 5.0), (0.1, 5.0),
                      (0.1, 10.0))


def _array(value, name: str, width: int) -> np.ndarray:
  """`value` as float64 [N, width], refusing other shapes and N == 0."""
  array = np.asarray(value, dtype=np.float64)
  if array.ndim != 2 or array.shape[1] != width:
    raise LsattnError(f"{name}: expected shape [N, {width}], got {array.shape}")
  if array.shape[0] == 0:
    raise LsattnError(f"{name}: no examples (shape {array.shape})")
  return array


def _same_length(*arrays_and_names) -> None:
  lengths = {name: len(array) for array, name in arrays_and_names}
  if len(set(lengths.values())) > 1:
    raise LsattnError(f"different numbers of examples: {lengths}")


def translation_errors(pred, true) -> np.ndarray:
  """Euclidean distances [N] (metres) between positions pred, true: [N, 3]."""
  pred, true = _array(pred, "pred", 3), _array(true, "true", 3)
  _same_length((pred, "pred"), (true, "true"))
  return np.linalg.norm(pred - true, axis=-1)


def rotation_errors_deg(pred_q, true_q) -> np.ndarray:
  """Rotation angles [N] in degrees between quaternions pred_q, true_q: [N, 4].

  2 acos(clip(|<q, q^>|, 0, 1)) on normalised quaternions, so q and -q agree
  and rounding just above 1 gives 0, not NaN.
  """
  pred_q, true_q = _array(pred_q, "pred_q", 4), _array(true_q, "true_q", 4)
  _same_length((pred_q, "pred_q"), (true_q, "true_q"))
  return geometry.quaternion_angle_deg(pred_q, true_q)


def _threshold_key(metres: float, degrees: float) -> str:
  return f"within_{metres:g}m_{degrees:g}deg"


def pose_summary(pred_pos, pred_q, true_pos, true_q,
                 thresholds: Sequence[tuple[float, float]] = DEFAULT_THRESHOLDS) -> dict:
  """Median and mean errors, and the fraction within each threshold pair.

  Args:
    pred_pos, true_pos: [N, 3] camera centres (metres).
    pred_q, true_q: [N, 4] quaternions (w, x, y, z).
    thresholds: (metres, degrees) pairs; an example counts as within a pair
      when both its errors are at most the pair's values.

  Returns:
    Dict of floats: median_translation_m, median_rotation_deg,
    mean_translation_m, mean_rotation_deg, one 'within_{m}m_{d}deg' per
    threshold (e.g. 'within_0.25m_2deg'), and num_examples (int).
  """
  translation = translation_errors(pred_pos, true_pos)
  rotation = rotation_errors_deg(pred_q, true_q)
  _same_length((translation, "positions"), (rotation, "orientations"))
  summary = {
      "median_translation_m": float(np.median(translation)),
      "median_rotation_deg": float(np.median(rotation)),
      "mean_translation_m": float(np.mean(translation)),
      "mean_rotation_deg": float(np.mean(rotation)),
  }
  for metres, degrees in thresholds:
    within = (translation <= metres) & (rotation <= degrees)
    summary[_threshold_key(metres, degrees)] = float(np.mean(within))
  summary["num_examples"] = int(len(translation))
  return summary


def mean_pose(positions, orientations) -> tuple[np.ndarray, np.ndarray]:
  """Mean camera centre [3] and mean rotation [4] of a set of poses.

  The mean rotation is the eigenvector of the largest eigenvalue of
  sum_i q_i q_i^T (Markley et al., "Averaging quaternions", 2007), which does
  not depend on the signs of the q_i; it is returned with canonical sign.

  Args:
    positions: [N, 3].
    orientations: [N, 4] quaternions (w, x, y, z).
  """
  positions = _array(positions, "positions", 3)
  orientations = geometry.normalize_quaternion(_array(orientations, "orientations", 4))
  _same_length((positions, "positions"), (orientations, "orientations"))
  _, vectors = np.linalg.eigh(orientations.T @ orientations)
  return positions.mean(axis=0), geometry.canonical_quaternion(vectors[:, -1])


def mean_pose_baseline(train_pos, train_q, test_pos, test_q) -> dict:
  """Errors of always predicting the mean training pose on the test set.

  Returns:
    Dict of floats: baseline_median_translation_m, baseline_median_rotation_deg,
    baseline_mean_translation_m, baseline_mean_rotation_deg.
  """
  position, orientation = mean_pose(train_pos, train_q)
  test_pos = _array(test_pos, "test_pos", 3)
  test_q = _array(test_q, "test_q", 4)
  translation = translation_errors(np.broadcast_to(position, test_pos.shape), test_pos)
  rotation = rotation_errors_deg(np.broadcast_to(orientation, test_q.shape), test_q)
  return {
      "baseline_median_translation_m": float(np.median(translation)),
      "baseline_median_rotation_deg": float(np.median(rotation)),
      "baseline_mean_translation_m": float(np.mean(translation)),
      "baseline_mean_rotation_deg": float(np.mean(rotation)),
  }


def classification_summary(logits_or_predictions, labels, num_classes: int) -> dict:
  """Top-1 accuracy, mean class accuracy and confusion matrix.

  Args:
    logits_or_predictions: [N, C] scores (argmax taken) or int [N] classes.
    labels: int [N] true classes in [0, num_classes).
    num_classes: C.

  Returns:
    Dict: accuracy (float), mean_class_accuracy (float; the mean over classes
    present in `labels` of their recall, the paper's MIT-67 "mean accuracy"),
    confusion_matrix (list of lists of int, [true][pred]), num_examples (int).
  """
  scores = np.asarray(logits_or_predictions)
  predictions = scores.argmax(axis=-1) if scores.ndim == 2 else scores
  labels = np.asarray(labels)
  if predictions.ndim != 1 or labels.ndim != 1 or len(predictions) != len(labels):
    raise LsattnError(f"expected predictions [N] or logits [N, C] and labels [N], got "
                      f"shapes {scores.shape} and {labels.shape}")
  if len(labels) == 0:
    raise LsattnError("classification_summary: no examples")
  for name, values in (("labels", labels), ("predictions", predictions)):
    outside = (values < 0) | (values >= num_classes)
    if np.any(outside):
      raise LsattnError(f"{name}: value {values[outside][0]} outside [0, {num_classes})")
  confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
  np.add.at(confusion, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
  support = confusion.sum(axis=1)
  present = support > 0
  recall = np.diag(confusion)[present] / support[present]
  return {
      "accuracy": float(np.trace(confusion) / len(labels)),
      "mean_class_accuracy": float(np.mean(recall)),
      "confusion_matrix": confusion.tolist(),
      "num_examples": int(len(labels)),
  }


def _join_batches(value, *, ndim: int, axis: int) -> np.ndarray:
  """One array from an array, or from a sequence of per-batch `ndim`-D arrays."""
  if isinstance(value, (list, tuple)) and value and np.ndim(value[0]) == ndim:
    return np.concatenate([np.asarray(v) for v in value], axis=axis)
  return np.asarray(value)


def layer_selection_frequency(layer_choices, layer_names: Sequence[str],
                              mask=None) -> list[dict[str, float]]:
  """Fraction of examples that chose each layer, per Conv-LSTM step.

  Args:
    layer_choices: one-hot [N_steps, B, k], either one array (already stacked
      over batches, B = all examples) or a sequence of per-batch arrays,
      joined along the example axis.
    layer_names: k names, e.g. ('3b', '4c', '4e', '5b').
    mask: optional bool [B] (or a sequence of per-batch masks); False rows
      (padding) are left out.

  Returns:
    One dict per step, layer name -> fraction (summing to 1).
  """
  choices = _join_batches(layer_choices, ndim=3, axis=1).astype(np.float64)
  if choices.ndim != 3 or choices.shape[2] != len(layer_names):
    raise LsattnError(f"layer_choices: expected shape [N_steps, B, {len(layer_names)}] "
                      f"for layers {list(layer_names)}, got {choices.shape}")
  if mask is not None:
    mask = _join_batches(mask, ndim=1, axis=0).astype(bool)
    if mask.shape != choices.shape[1:2]:
      raise LsattnError(f"mask: expected shape {choices.shape[1:2]}, got {mask.shape}")
    choices = choices[:, mask]
  counts = choices.sum(axis=1)
  totals = counts.sum(axis=1, keepdims=True)
  if choices.shape[1] == 0 or np.any(totals == 0):
    raise LsattnError("layer_choices: no examples to count")
  fractions = counts / totals
  return [{name: float(f) for name, f in zip(layer_names, step)} for step in fractions]
