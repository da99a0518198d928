"""Evaluation: predictions over a split, metrics, and what eval writes.

``evaluate_split`` runs the jitted eval step over every example once
(padded last batch, masked) and returns per-example numpy arrays;
``write_outputs`` writes ``metrics.json``, ``predictions.csv`` and the
figures into ``<workdir>/eval/``.
"""

from __future__ import annotations

import csv
import json
import pathlib

import jax
import numpy as np
import tqdm

from lsattn import figures, metrics, parallel, training
from lsattn.data import pipeline

_EVAL_STEPS: dict = {}


def compiled_eval_step(model_config, mesh, compiler_options: dict | None = None):
  """The jitted eval step, compiled once per model, mesh and options in a process.

  `compiler_options`: see `compilation.step_compiler_options`.
  """
  key = (model_config, mesh, tuple(sorted((compiler_options or {}).items())))
  if key not in _EVAL_STEPS:
    _EVAL_STEPS[key] = jax.jit(training.make_eval_step(model_config),
                               out_shardings=parallel.replicated(mesh),
                               compiler_options=compiler_options)
  return _EVAL_STEPS[key]


def evaluate_split(eval_step, params, model_state, split: pipeline.Split, *, task: str,
                   options: pipeline.ImageOptions, batch_size: int, mesh,
                   description: str = "eval") -> dict[str, np.ndarray]:
  """Per-example outputs of `eval_step` over `split`, in split order.

  Returns:
    Dict of arrays with leading axis len(split): the prediction entries,
    'layer_choices' [E, N, k] and 'attention_masks' [E, N, Hm, Wm].
  """
  rows = parallel.process_batch_slice(batch_size)
  collected: dict[str, list] = {}
  batches = pipeline.eval_batches(split, task=task, options=options, batch_size=batch_size,
                                  rows=rows)
  total = -(-len(split) // batch_size)
  for batch in tqdm.tqdm(batches, total=total, desc=description, unit="batch", leave=False):
    images = parallel.shard_batch({"image": batch["image"]}, mesh)["image"]
    outputs = parallel.to_host(eval_step(params, model_state, images))
    mask = parallel.to_host(parallel.shard_batch({"m": batch["mask"]}, mesh))["m"]
    for name, value in outputs.items():
      collected.setdefault(name, []).append(np.asarray(value)[mask])
  return {name: np.concatenate(values) for name, values in collected.items()}


def pose_metrics(outputs: dict, split: pipeline.Split, train_split: pipeline.Split,
                 layer_names) -> dict:
  true_position = split.labels["position"]
  true_orientation = split.labels["orientation"]
  result = metrics.pose_summary(outputs["position"], outputs["orientation"], true_position,
                                true_orientation)
  result.update(metrics.mean_pose_baseline(train_split.labels["position"],
                                           train_split.labels["orientation"], true_position,
                                           true_orientation))
  result["layer_selection_frequency"] = _frequencies(outputs, layer_names)
  return result


def classification_metrics(outputs: dict, split: pipeline.Split, class_names,
                           layer_names) -> dict:
  result = metrics.classification_summary(outputs["logits"], split.labels["label"],
                                          len(class_names))
  result["layer_selection_frequency"] = _frequencies(outputs, layer_names)
  return result


def _frequencies(outputs, layer_names):
  choices = outputs["layer_choices"]  # [E, N, k]
  if choices.shape[1] == 0:
    return []
  return metrics.layer_selection_frequency(np.moveaxis(choices, 1, 0), list(layer_names))


def write_predictions_csv(path: pathlib.Path, outputs: dict, split: pipeline.Split, *,
                          task: str, layer_names, class_names=None) -> None:
  """One row per image: name, ground truth, prediction, errors, layer per step."""
  names = split.labels["image_name"]
  steps = outputs["layer_choices"].shape[1]
  chosen = [[layer_names[int(np.argmax(c))] for c in per_image]
            for per_image in outputs["layer_choices"]]
  layer_columns = [f"layer_step{t + 1}" for t in range(steps)]
  with open(path, "w", newline="") as handle:
    writer = csv.writer(handle)
    if task == "pose":
      true_p, true_q = split.labels["position"], split.labels["orientation"]
      pred_p, pred_q = outputs["position"], outputs["orientation"]
      t_err = metrics.translation_errors(pred_p, true_p)
      r_err = metrics.rotation_errors_deg(pred_q, true_q)
      writer.writerow(["image", "x", "y", "z", "qw", "qx", "qy", "qz", "pred_x", "pred_y",
                       "pred_z", "pred_qw", "pred_qx", "pred_qy", "pred_qz",
                       "translation_error_m", "rotation_error_deg", *layer_columns])
      for i in np.argsort(names, kind="stable"):
        writer.writerow([names[i], *_fmt(true_p[i]), *_fmt(true_q[i]), *_fmt(pred_p[i]),
                         *_fmt(pred_q[i]), f"{t_err[i]:.6f}", f"{r_err[i]:.6f}", *chosen[i]])
    else:
      labels = split.labels["label"]
      logits = outputs["logits"]
      probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
      probabilities /= probabilities.sum(axis=1, keepdims=True)
      predicted = np.argmax(logits, axis=1)
      writer.writerow(["image", "label", "predicted", "probability", "correct", *layer_columns])
      for i in np.argsort(names, kind="stable"):
        writer.writerow([names[i], class_names[labels[i]], class_names[predicted[i]],
                         f"{probabilities[i, predicted[i]]:.6f}", int(predicted[i] == labels[i]),
                         *chosen[i]])


def _fmt(values):
  return [f"{float(v):.6f}" for v in values]


def write_outputs(eval_dir: pathlib.Path, outputs: dict, result: dict, split: pipeline.Split, *,
                  task: str, layer_names, options: pipeline.ImageOptions,
                  train_split: pipeline.Split | None = None, class_names=None,
                  num_figure_examples: int = 4) -> dict[str, str]:
  """Writes metrics.json, predictions.csv and figures; returns {name: path}."""
  eval_dir.mkdir(parents=True, exist_ok=True)
  paths = {"metrics": eval_dir / "metrics.json", "predictions": eval_dir / "predictions.csv"}
  paths["metrics"].write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
  write_predictions_csv(paths["predictions"], outputs, split, task=task,
                        layer_names=layer_names, class_names=class_names)
  count = min(num_figure_examples, len(split))
  if count:
    picks = np.linspace(0, len(split) - 1, count).round().astype(int)
    mean = np.asarray(options.channel_mean, np.float32)
    crops = [np.clip(pipeline.preprocess(split.image(i), options, offset=None) + mean, 0, 255)
             .astype(np.uint8) for i in picks]
    chosen = [[layer_names[int(np.argmax(c))] for c in outputs["layer_choices"][i]]
              for i in picks]
    paths["attention"] = figures.attention_overlays(
        eval_dir / "attention.png", np.stack(crops), outputs["attention_masks"][picks], chosen,
        [str(split.labels["image_name"][i]) for i in picks])
  if result.get("layer_selection_frequency"):
    paths["layers"] = figures.layer_frequency_plot(eval_dir / "layer_frequency.png",
                                                   result["layer_selection_frequency"])
  if task == "pose":
    train_positions = None if train_split is None else train_split.labels["position"]
    paths["trajectory"] = figures.trajectory_plot(
        eval_dir / "trajectory.png", split.labels["position"], outputs["position"],
        train_positions)
  else:
    paths["confusion"] = figures.confusion_matrix_plot(
        eval_dir / "confusion.png", np.asarray(result["confusion_matrix"]), class_names)
  return {name: str(path) for name, path in paths.items()}


def summary_table(result: dict, task: str) -> str:
  """A short human-readable table of the headline numbers."""
  if task == "pose":
    rows = [("median translation (m)", result["median_translation_m"],
             result["baseline_median_translation_m"]),
            ("median rotation (deg)", result["median_rotation_deg"],
             result["baseline_median_rotation_deg"]),
            ("mean translation (m)", result["mean_translation_m"],
             result["baseline_mean_translation_m"]),
            ("mean rotation (deg)", result["mean_rotation_deg"],
             result["baseline_mean_rotation_deg"])]
    lines = [f"{'metric':<24}{'model':>10}{'mean pose':>12}"]
    lines += [f"{name:<24}{value:>10.3f}{baseline:>12.3f}" for name, value, baseline in rows]
  else:
    lines = [f"{'accuracy':<24}{result['accuracy']:>10.4f}",
             f"{'mean class accuracy':<24}{result['mean_class_accuracy']:>10.4f}"]
  lines.append(f"{'examples':<24}{result['num_examples']:>10d}")
  return "\n".join(lines)
