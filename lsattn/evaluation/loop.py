"""Evaluation: predictions over a split, metrics, and what eval writes.

``evaluate_split`` runs the jitted eval step over every example once
(padded last batch, masked) and returns per-example numpy arrays;
``write_outputs`` writes ``metrics.json``, ``predictions.csv``, for pose the
per-frame estimates in the community's format (``estimates_<scene>.txt``,
`lsattn.data.pseudo_gt`) and the figures into ``<workdir>/eval/`` (among them
the layer choice over training, from the rows training logged:
`lsattn.runs.choice_dynamics`).

Besides the final prediction, the recurrent models predict at every one of
their N steps (Supplementary A; the Step-1 ... Step-N rows of Tables 1, 7
and 8): ``step_position`` [E, N, 3] and ``step_orientation`` [E, N, 4], or
``step_logits`` [E, N, C]. Their metrics go to ``per_step``; the top-level
numbers are those of the final prediction. Baselines without steps have
N = 0 (or no step entries at all) and an empty ``per_step``.

Pose metrics carry two kinds of baseline: the mean training pose
(``baseline_*``, `pose_metrics`) and the pose of the nearest training image
by pixels or by the backbone's deepest features, GoogLeNet's Conv-5B
(``knn_*``, `retrieval_baselines`, added to the test split's metrics.json).
"""

from __future__ import annotations

import csv
import functools
import json
import pathlib
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from lsattn import backbones, model
from lsattn.data import pipeline, pseudo_gt
from lsattn.errors import LsattnError
from lsattn.evaluation import metrics, retrieval
from lsattn.runs import atomic, choice_dynamics, interrupts, parallel

def make_eval_step(model_config: model.ModelConfig) -> Callable:
  """The pure eval step ``(params, model_state, images) -> outputs``.

  Deterministic: no Gumbel noise (argmax layer choice), batch norm in
  inference mode (each step with its own statistics). Per-example outputs
  are batch-major: prediction entries [B, ...] (the final step's), the same
  for every step as 'step_<name>' [B, N, ...] (e.g. 'step_position'
  [B, N, 3]), layer_choices [B, N, k], attention_masks [B, N, Hm, Wm].
  """

  def eval_step(params, model_state, images):
    outputs, _ = model.apply_model(params, model_state, images, train=False,
                                   config=model_config)
    return {
        **outputs.prediction,
        **{f"step_{name}": jnp.moveaxis(value, 0, 1)
           for name, value in outputs.step_predictions.items()},
        "layer_choices": jnp.moveaxis(outputs.layer_choices, 0, 1),
        "attention_masks": jnp.moveaxis(outputs.attention_masks, 0, 1),
    }

  return eval_step


def compiled_eval_step(model_config, mesh, compiler_options: dict | None = None):
  """The jitted eval step, compiled once per model, mesh and options in a process.

  `compiler_options`: see `compilation.step_compiler_options`.
  """
  return _eval_step(model_config, mesh, tuple(sorted((compiler_options or {}).items())))


@functools.cache
def _eval_step(model_config, mesh, compiler_options: tuple):
  return jax.jit(make_eval_step(model_config), out_shardings=parallel.replicated(mesh),
                 compiler_options=dict(compiler_options) or None)


def evaluate_split(eval_step, params, model_state, split: pipeline.Split, *, task: str,
                   options: pipeline.ImageOptions, batch_size: int, mesh,
                   description: str = "eval") -> dict[str, np.ndarray]:
  """Per-example outputs of `eval_step` over `split`, in split order.

  Returns:
    Dict of arrays with leading axis len(split): the prediction entries
    (final and per step), 'layer_choices' [E, N, k] and 'attention_masks'
    [E, N, Hm, Wm].
  """
  rows = parallel.process_batch_slice(batch_size)
  collected: dict[str, list] = {}
  batches = pipeline.eval_batches(split, task=task, options=options, batch_size=batch_size,
                                  rows=rows)
  total = -(-len(split) // batch_size)
  done = 0
  for batch in tqdm.tqdm(batches, total=total, desc=description, unit="batch", leave=False):
    # Ctrl-C stops here, between batches (`interrupts.at_safe_points`).
    interrupts.safe_point(f"after {done} of {total} {description} batches")
    done += 1
    images = parallel.shard_batch({"image": batch["image"]}, mesh)["image"]
    outputs = parallel.to_host(eval_step(params, model_state, images))
    mask = parallel.to_host(parallel.shard_batch({"m": batch["mask"]}, mesh))["m"]
    for name, value in outputs.items():
      collected.setdefault(name, []).append(np.asarray(value)[mask])
  interrupts.safe_point(f"after all {total} {description} batches")
  outputs = {name: np.concatenate(values) for name, values in collected.items()}
  _check_finite_predictions(outputs, description)
  return outputs


PREDICTIONS = ("position", "orientation", "logits", "step_position", "step_orientation",
               "step_logits", "scene_logits", "scene_position", "scene_orientation")


def _check_finite_predictions(outputs: dict[str, np.ndarray], description: str) -> None:
  """Refuses predictions that are not finite (before any metric or file is made of them):
  finite but huge parameters, e.g. after one step at an enormous learning rate, give
  finite losses and gradients, then NaN predictions."""
  bad = np.zeros(len(next(iter(outputs.values()))), bool)
  for name in PREDICTIONS:
    if name in outputs:
      bad |= ~np.isfinite(outputs[name].reshape(len(bad), -1)).all(axis=1)
  if bad.any():
    raise LsattnError(f"{description}: the model's predictions are not finite for "
                      f"{int(bad.sum())} of {len(bad)} images: its parameters are unusable "
                      f"(too large a learning_rate or beta?); nothing was written")


def probabilities(logits) -> np.ndarray:
  """Softmax over the last axis, on the host in float64: logits [..., C] -> [..., C]."""
  logits = np.asarray(logits, np.float64)
  exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return exp / exp.sum(axis=-1, keepdims=True)


def chosen_layers(layer_choices, layer_names) -> list[str]:
  """One image's one-hot choices [N, k] -> the name of the layer chosen at each step."""
  return [layer_names[int(np.argmax(choice))] for choice in layer_choices]


def num_prediction_steps(outputs: dict, key: str) -> int:
  """N of the per-step predictions `outputs[key]` [E, N, ...]; 0 when absent."""
  value = outputs.get(key)
  return 0 if value is None else int(np.shape(value)[1])


def pose_metrics(outputs: dict, split: pipeline.Split, train_split: pipeline.Split,
                 layer_names) -> dict:
  """Pose metrics of the final prediction, of the mean pose, and of every step.

  Args:
    outputs: 'position' [E, 3], 'orientation' [E, 4], 'layer_choices'
      [E, N, k], and optionally 'step_position' [E, N, 3] and
      'step_orientation' [E, N, 4].
    split: the evaluated split (E examples).
    train_split: its training split, for the mean-pose baseline.
    layer_names: k display names.

  Returns:
    `metrics.pose_summary` of the final prediction, the `baseline_*` keys of
    `metrics.mean_pose_baseline`, 'layer_selection_frequency', and
    'per_step': one dict per step t (N of them, [] without steps) holding
    `metrics.pose_summary` of step t's predictions and 'step': t + 1.
  """
  true_position = split.labels["position"]
  true_orientation = split.labels["orientation"]
  result = metrics.pose_summary(outputs["position"], outputs["orientation"], true_position,
                                true_orientation)
  result.update(metrics.mean_pose_baseline(train_split.labels["position"],
                                           train_split.labels["orientation"], true_position,
                                           true_orientation))
  result["layer_selection_frequency"] = _frequencies(outputs, layer_names)
  result["per_step"] = [
      {**metrics.pose_summary(outputs["step_position"][:, t], outputs["step_orientation"][:, t],
                              true_position, true_orientation), "step": t + 1}
      for t in range(num_prediction_steps(outputs, "step_position"))]
  if len(getattr(split, "scene_names", ())) > 1:
    result.update(scene_metrics(outputs, split, train_split))
  return result


def oracle_poses(outputs: dict, split: pipeline.Split) -> tuple[np.ndarray, np.ndarray]:
  """Each image's pose from its true scene's head: position [E, 3], orientation [E, 4]."""
  scene = split.labels["scene"].astype(np.int64)[:, None, None]
  pick = lambda value: np.take_along_axis(value, scene, axis=1)[:, 0]
  return pick(outputs["scene_position"]), pick(outputs["scene_orientation"])


def scene_metrics(outputs: dict, split: pipeline.Split, train_split: pipeline.Split) -> dict:
  """A several-scene run's metrics (the top-level ones are over all images, chosen heads).

  Returns:
    'scene_accuracy' (the classifier's top-1 over all images); 'per_scene':
    {scene: `metrics.pose_summary` of its images through the head the
    classifier chose, 'scene_accuracy' on them, 'oracle' (the summary through
    the scene's own head) and its mean-pose baseline (`baseline_*`, the scene's
    training images' mean pose)}; 'mean_over_scenes': the mean over scenes of
    the per-scene median errors (what papers print for a dataset), of the
    oracle's too ('oracle_median_*'), and of each threshold's fraction; 'oracle':
    `metrics.pose_summary` over all images, each through its true scene's head
    (the gap to the top level is what scene confusion costs).
  """
  true_position, true_orientation = split.labels["position"], split.labels["orientation"]
  scene = split.labels["scene"]
  chosen = np.argmax(outputs["scene_logits"], axis=-1)
  oracle_position, oracle_orientation = oracle_poses(outputs, split)
  per_scene = {}
  for k, name in enumerate(split.scene_names):
    mine, trained = scene == k, train_split.labels["scene"] == k
    if not mine.any():
      continue
    summary = metrics.pose_summary(outputs["position"][mine], outputs["orientation"][mine],
                                   true_position[mine], true_orientation[mine])
    summary["scene_accuracy"] = float(np.mean(chosen[mine] == k))
    summary["oracle"] = metrics.pose_summary(oracle_position[mine], oracle_orientation[mine],
                                             true_position[mine], true_orientation[mine])
    summary.update(metrics.mean_pose_baseline(
        train_split.labels["position"][trained], train_split.labels["orientation"][trained],
        true_position[mine], true_orientation[mine]))
    per_scene[name] = summary
  averaged = [key for key in next(iter(per_scene.values()))
              if key.startswith(("median_", "within_"))]
  mean_over_scenes = {key: float(np.mean([entry[key] for entry in per_scene.values()]))
                      for key in averaged}
  mean_over_scenes.update({f"oracle_{key}": float(np.mean([entry["oracle"][key]
                                                           for entry in per_scene.values()]))
                           for key in averaged})
  mean_over_scenes["num_scenes"] = len(per_scene)
  return {"scene_accuracy": float(np.mean(chosen == scene)), "per_scene": per_scene,
          "mean_over_scenes": mean_over_scenes,
          "oracle": metrics.pose_summary(oracle_position, oracle_orientation, true_position,
                                         true_orientation)}


def features_tap(model_config) -> str:
  """The tap the feature retrieval pools: the deepest the run's backbone computes, the
  member's deepest (Conv-5B) unless the model's layers end earlier (the backbone stops there)."""
  return backbones.get(model_config.backbone).deepest_of(model_config.layers)


@functools.cache
def _descriptor_step(model_config, tap: str, mesh, compiler_options: tuple):
  backbone = model.backbone_module(model_config).clone(taps=(tap,))

  def descriptor_step(params, model_state, images):
    variables = {"params": params["backbone"]}
    if model_state["backbone"]:
      variables["batch_stats"] = model_state["backbone"]
    taps = backbone.apply(variables, images, train=False)
    return {"pixels": retrieval.pixel_descriptors(images),
            "features": retrieval.pooled_features(taps[tap])}

  return jax.jit(descriptor_step, out_shardings=parallel.replicated(mesh),
                 compiler_options=dict(compiler_options) or None)


def retrieval_baselines(model_config, params, model_state, split: pipeline.Split,
                        train_split: pipeline.Split, *, options: pipeline.ImageOptions,
                        batch_size: int, mesh, compiler_options: dict | None = None) -> dict:
  """The pose of the nearest training image, by pixels and by backbone features.

  Both splits are read as the eval step reads them (centre crops, dataset
  mean subtracted) and described by `lsattn.evaluation.retrieval`: 16x16 RGB pixels,
  and the global average pool of the `features_tap` tap (GoogLeNet: Conv-5B)
  computed with `params['backbone']` (and its batch-norm state) as
  evaluated. For a frozen backbone that is the initial (random or loaded)
  network, the same lookup before and after training; for a trained
  backbone it is the fine-tuned one (ours: the features the run's model
  actually reads). Costs one backbone pass over
  the training and the evaluated split (one program, compiled once).

  Returns:
    'knn_pixels_median_translation_m', 'knn_pixels_median_rotation_deg',
    'knn_features_median_translation_m', 'knn_features_median_rotation_deg'
    (floats), 'knn_features_tap' (the tap pooled, `features_tap`) and
    'knn_features_layer' (its display name, 'Conv-5B').
  """
  tap = features_tap(model_config)
  step = _descriptor_step(model_config, tap, mesh,
                          tuple(sorted((compiler_options or {}).items())))
  described = {
      name: evaluate_split(step, params, model_state, which, task="pose", options=options,
                           batch_size=batch_size, mesh=mesh, description=f"retrieval {name}")
      for name, which in (("train", train_split), ("test", split))}
  result = {"knn_features_tap": tap,
            "knn_features_layer": backbones.get(model_config.backbone).display_name(tap)}
  for name, key in (("knn_pixels", "pixels"), ("knn_features", "features")):
    result.update(retrieval.retrieval_errors(
        described["test"][key], described["train"][key], train_split.labels["position"],
        train_split.labels["orientation"], split.labels["position"],
        split.labels["orientation"], name=name))
  return result


_CLASSIFICATION_STEP_KEYS = ("accuracy", "mean_class_accuracy", "num_examples")


def classification_metrics(outputs: dict, split: pipeline.Split, class_names,
                           layer_names) -> dict:
  """Classification metrics of the final prediction and of every step.

  Args:
    outputs: 'logits' [E, C], 'layer_choices' [E, N, k], and optionally
      'step_logits' [E, N, C].
    split: the evaluated split (E examples).
    class_names: C names.
    layer_names: k display names.

  Returns:
    `metrics.classification_summary` of the final prediction (with its
    confusion matrix), 'layer_selection_frequency', and 'per_step': one dict
    per step t (N of them, [] without steps) with 'accuracy',
    'mean_class_accuracy' and 'num_examples' of step t's predictions and
    'step': t + 1. The per-step confusion matrices are left out: C x C
    numbers each (4,489 for MIT-67) would swamp metrics.json.
  """
  labels = split.labels["label"]
  result = metrics.classification_summary(outputs["logits"], labels, len(class_names))
  result["layer_selection_frequency"] = _frequencies(outputs, layer_names)
  result["per_step"] = []
  for t in range(num_prediction_steps(outputs, "step_logits")):
    summary = metrics.classification_summary(outputs["step_logits"][:, t], labels,
                                             len(class_names))
    result["per_step"].append({**{key: summary[key] for key in _CLASSIFICATION_STEP_KEYS},
                               "step": t + 1})
  return result


def _frequencies(outputs, layer_names):
  choices = outputs["layer_choices"]  # [E, N, k]
  if choices.shape[1] == 0:
    return []
  return metrics.layer_selection_frequency(np.moveaxis(choices, 1, 0), list(layer_names))


def _scenes(scene, split: pipeline.Split) -> np.ndarray:
  """The scene of each example of `split`: its own when it joins several scenes
  (`pipeline.concatenate`'s 'scene' label), else `scene`: one name for all, or one
  per example."""
  count = len(split.labels["image_name"])
  if len(getattr(split, "scene_names", ())) > 1:
    scene = [split.scene_names[k] for k in split.labels["scene"]]
  scenes = np.asarray([scene] * count if isinstance(scene, str) else list(scene), dtype=object)
  if scenes.shape != (count,) or not all(isinstance(s, str) and s for s in scenes):
    raise ValueError(f"expected a scene name or {count} of them, got {scene!r}")
  return scenes


def write_predictions_csv(path: pathlib.Path, outputs: dict, split: pipeline.Split, *,
                          task: str, layer_names, class_names=None, scene=None) -> None:
  """One row per image: name, ground truth, prediction, errors, layer per step.

  Args:
    scene: pose: the scene's name ('chess', the dataset's config), or one per
      example; the 'scene' column (a split of several scenes names its own).

  Columns (pose): image, scene, x..qz, pred_x..pred_qz, translation_error_m,
  rotation_error_deg (final prediction), layer_step1..N, then the errors of
  each step's prediction, translation_error_m_step1..N and
  rotation_error_deg_step1..N. Classification: image, label, predicted,
  probability, correct, layer_step1..N, predicted_step1..N. No per-step
  prediction columns when the outputs have none.
  """
  names = split.labels["image_name"]
  steps = outputs["layer_choices"].shape[1]
  chosen = [chosen_layers(per_image, layer_names) for per_image in outputs["layer_choices"]]
  layer_columns = [f"layer_step{t + 1}" for t in range(steps)]
  with atomic.writing(path, "w", newline="") as handle:
    writer = csv.writer(handle)
    if task == "pose":
      scenes = _scenes(scene, split)
      true_p, true_q = split.labels["position"], split.labels["orientation"]
      pred_p, pred_q = outputs["position"], outputs["orientation"]
      t_err = metrics.translation_errors(pred_p, true_p)
      r_err = metrics.rotation_errors_deg(pred_q, true_q)
      prediction_steps = range(num_prediction_steps(outputs, "step_position"))
      step_t_err = np.zeros((len(names), len(prediction_steps)))  # [E, N]
      step_r_err = np.zeros((len(names), len(prediction_steps)))
      for t in prediction_steps:
        step_t_err[:, t] = metrics.translation_errors(outputs["step_position"][:, t], true_p)
        step_r_err[:, t] = metrics.rotation_errors_deg(outputs["step_orientation"][:, t], true_q)
      scene_columns, scene_cells = [], [[] for _ in names]
      # Several scenes: the chosen scene, and the oracle's errors (the true scene is
      # the 'scene' column).
      if len(getattr(split, "scene_names", ())) > 1:
        scene_columns = ["predicted_scene", "oracle_translation_error_m",
                         "oracle_rotation_error_deg"]
        oracle_p, oracle_q = oracle_poses(outputs, split)
        o_t_err = metrics.translation_errors(oracle_p, true_p)
        o_r_err = metrics.rotation_errors_deg(oracle_q, true_q)
        predicted_scene = np.argmax(outputs["scene_logits"], axis=-1)
        scene_cells = [[split.scene_names[predicted_scene[i]], f"{o_t_err[i]:.6f}",
                        f"{o_r_err[i]:.6f}"] for i in range(len(names))]
      writer.writerow(["image", "scene", "x", "y", "z", "qw", "qx", "qy", "qz", "pred_x", "pred_y",
                       "pred_z", "pred_qw", "pred_qx", "pred_qy", "pred_qz",
                       "translation_error_m", "rotation_error_deg", *layer_columns,
                       *(f"translation_error_m_step{t + 1}" for t in prediction_steps),
                       *(f"rotation_error_deg_step{t + 1}" for t in prediction_steps),
                       *scene_columns])
      for i in np.argsort(names, kind="stable"):
        writer.writerow([names[i], scenes[i], *_fmt(true_p[i]), *_fmt(true_q[i]), *_fmt(pred_p[i]),
                         *_fmt(pred_q[i]), f"{t_err[i]:.6f}", f"{r_err[i]:.6f}", *chosen[i],
                         *_fmt(step_t_err[i]), *_fmt(step_r_err[i]), *scene_cells[i]])
    else:
      labels = split.labels["label"]
      logits = outputs["logits"]
      class_probabilities = probabilities(logits)
      predicted = np.argmax(logits, axis=1)
      prediction_steps = range(num_prediction_steps(outputs, "step_logits"))
      step_predicted = (np.argmax(outputs["step_logits"], axis=2) if prediction_steps
                        else np.zeros((len(names), 0), np.int64))  # [E, N]
      writer.writerow(["image", "label", "predicted", "probability", "correct", *layer_columns,
                       *(f"predicted_step{t + 1}" for t in prediction_steps)])
      for i in np.argsort(names, kind="stable"):
        writer.writerow([names[i], class_names[labels[i]], class_names[predicted[i]],
                         f"{class_probabilities[i, predicted[i]]:.6f}",
                         int(predicted[i] == labels[i]),
                         *chosen[i], *(class_names[c] for c in step_predicted[i])])


def _fmt(values):
  return [f"{float(v):.6f}" for v in values]


def write_estimates(eval_dir: pathlib.Path, outputs: dict, split: pipeline.Split,
                    scene) -> dict[str, pathlib.Path]:
  """The final predictions as per-frame estimates, world to camera
  (`pseudo_gt.write_estimates`: `rgb_file qw qx qy qz tx ty tz`, the lines the
  pseudo-ground-truth repository's evaluate_estimates.py reads), one file per scene,
  `estimates_<scene>.txt`, frames sorted by name; returns {scene: path}."""
  names = split.labels["image_name"]
  scenes = _scenes(scene, split)
  paths = {}
  for name in sorted(set(scenes)):
    rows = [i for i in np.argsort(names, kind="stable") if scenes[i] == name]
    # Several scenes' image names start with their scene's (`pipeline.concatenate`);
    # the community's files name frames within the scene's folder.
    paths[name] = pseudo_gt.write_estimates(
        eval_dir / f"estimates_{name}.txt", [_within_scene(names[i], name) for i in rows],
        outputs["position"][rows], outputs["orientation"][rows])
  return paths


def _within_scene(image_name: str, scene: str) -> str:
  return image_name[len(scene) + 1:] if image_name.startswith(f"{scene}/") else image_name


def write_outputs(eval_dir: pathlib.Path, outputs: dict, result: dict, split: pipeline.Split, *,
                  task: str, layer_names, options: pipeline.ImageOptions,
                  train_split: pipeline.Split | None = None, class_names=None,
                  num_figure_examples: int = 4, draw_figures: bool = True,
                  scene=None,
                  layer_choice_dynamics: choice_dynamics.Dynamics | None = None
                  ) -> dict[str, str]:
  """Writes metrics.json, predictions.csv, for pose the estimates of each scene
  (`write_estimates`; `scene`: its name, or one per example) and (if
  `draw_figures`) the figures; returns {name: path}.

  `layer_choice_dynamics`: the run's layer choice during training
  (`lsattn.runs.choice_dynamics.read`), drawn as layer_choice_dynamics.png; None (no
  layer selection, or no row logged): not drawn.
  """
  interrupts.safe_point(f"before writing {eval_dir}")  # then all of them, each whole
  eval_dir.mkdir(parents=True, exist_ok=True)
  paths = {"metrics": eval_dir / "metrics.json", "predictions": eval_dir / "predictions.csv"}
  atomic.write_text(paths["metrics"], json.dumps(result, indent=2, sort_keys=True) + "\n")
  write_predictions_csv(paths["predictions"], outputs, split, task=task,
                        layer_names=layer_names, class_names=class_names, scene=scene)
  if task == "pose":
    paths.update({f"estimates_{name}": path
                  for name, path in write_estimates(eval_dir, outputs, split, scene).items()})
  if not draw_figures:
    return {name: str(path) for name, path in paths.items()}
  # matplotlib: half a second at every start, paid only to draw.
  from lsattn.evaluation import figures
  count = min(num_figure_examples, len(split))
  if count:
    picks = np.linspace(0, len(split) - 1, count).round().astype(int)
    mean = np.asarray(options.channel_mean, np.float32)
    crops = [np.clip(pipeline.preprocess(split.image(i), options, offset=None) + mean, 0, 255)
             .astype(np.uint8) for i in picks]
    chosen = [chosen_layers(outputs["layer_choices"][i], layer_names) for i in picks]
    paths["attention"] = figures.attention_overlays(
        eval_dir / "attention.png", np.stack(crops), outputs["attention_masks"][picks], chosen,
        [str(split.labels["image_name"][i]) for i in picks])
  if result.get("layer_selection_frequency"):
    paths["layers"] = figures.layer_frequency_plot(eval_dir / "layer_frequency.png",
                                                   result["layer_selection_frequency"])
  if layer_choice_dynamics is not None:
    dynamics = layer_choice_dynamics
    paths["layer_choice_dynamics"] = figures.layer_choice_dynamics_plot(
        eval_dir / "layer_choice_dynamics.png", dynamics.steps, dynamics.share,
        dynamics.entropy, dynamics.layers)
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
  """A short human-readable table of the headline numbers, then one line per step."""
  per_step = result.get("per_step") or []
  if task == "pose":
    rows = [("median translation (m)", result["median_translation_m"],
             result["baseline_median_translation_m"]),
            ("median rotation (deg)", result["median_rotation_deg"],
             result["baseline_median_rotation_deg"]),
            ("mean translation (m)", result["mean_translation_m"],
             result["baseline_mean_translation_m"]),
            ("mean rotation (deg)", result["mean_rotation_deg"],
             result["baseline_mean_rotation_deg"])]
    # The retrieval baselines (`retrieval_baselines`) give medians only.
    knn = [name for name in retrieval.RETRIEVALS if f"{name}_median_translation_m" in result]
    knn_titles = {"knn_pixels": "kNN pixels",
                  "knn_features": f"kNN {result.get('knn_features_layer', 'features')}"}
    lines = [f"{'metric':<24}{'model':>10}{'mean pose':>12}"
             + "".join(f"{knn_titles[name]:>14}" for name in knn)]
    for (name, value, baseline), key in zip(rows, ("median_translation_m", "median_rotation_deg",
                                                   None, None)):
      lines.append(f"{name:<24}{value:>10.3f}{baseline:>12.3f}" + "".join(
          f"{result[f'{knn_name}_{key}']:>14.3f}" if key else f"{'-':>14}"
          for knn_name in knn))
    lines.append(f"{'examples':<24}{result['num_examples']:>10d}")
    lines += [f"{'within ' + key.removeprefix('within_').replace('_', ' '):<24}{value:>10.3f}"
              for key, value in result.items() if key.startswith("within_")]
    if per_step:
      lines.append(f"{'per step (medians)':<24}{'m':>10}{'deg':>12}")
      lines += [f"{'  step ' + str(entry['step']):<24}{entry['median_translation_m']:>10.3f}"
                f"{entry['median_rotation_deg']:>12.3f}" for entry in per_step]
    if "per_scene" in result:  # several scenes
      lines.append(f"{'scene accuracy':<24}{result['scene_accuracy']:>10.3f}")
      lines.append(f"{'per scene (medians)':<24}{'m':>10}{'deg':>12}{'oracle m':>10}"
                   f"{'oracle deg':>12}{'scene acc':>10}")
      rows = [(name, entry, entry["oracle"], entry["scene_accuracy"])
              for name, entry in result["per_scene"].items()]
      mean = result["mean_over_scenes"]
      rows.append(("mean over scenes", mean,
                   {key.removeprefix("oracle_"): value for key, value in mean.items()},
                   result["scene_accuracy"]))
      lines += [f"{'  ' + name:<24}{entry['median_translation_m']:>10.3f}"
                f"{entry['median_rotation_deg']:>12.3f}{oracle['median_translation_m']:>10.3f}"
                f"{oracle['median_rotation_deg']:>12.3f}{accuracy:>10.3f}"
                for name, entry, oracle, accuracy in rows]
  else:
    lines = [f"{'accuracy':<24}{result['accuracy']:>10.4f}",
             f"{'mean class accuracy':<24}{result['mean_class_accuracy']:>10.4f}",
             f"{'examples':<24}{result['num_examples']:>10d}"]
    if per_step:
      lines.append(f"{'per step':<24}{'accuracy':>10}{'mean class':>12}")
      lines += [f"{'  step ' + str(entry['step']):<24}{entry['accuracy']:>10.4f}"
                f"{entry['mean_class_accuracy']:>12.4f}" for entry in per_step]
  return "\n".join(lines)
