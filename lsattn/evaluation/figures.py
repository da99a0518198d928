"""Figures for evaluation reports: attention, layer choice (in evaluation and over
training), poses, confusion.

Each function takes numpy arrays, writes one PNG to `path` and returns the
path as a :class:`pathlib.Path`. Figures are built on
:class:`matplotlib.figure.Figure` with the Agg canvas, never through
`pyplot`, so no global figure state is created and nothing needs closing.
"""

from __future__ import annotations

import pathlib
from typing import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from PIL import Image

from lsattn.errors import LsattnError
from lsattn.runs import atomic

_DPI = 100


def _figure(width: float, height: float) -> Figure:
  figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
  FigureCanvasAgg(figure)
  return figure


def _save(figure: Figure, path) -> pathlib.Path:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with atomic.writing(path, "wb") as handle:
    figure.savefig(handle, format="png", dpi=_DPI)
  return path


def _shape_error(name: str, expected: str, value) -> LsattnError:
  return LsattnError(f"{name}: expected shape {expected}, got {np.shape(value)}")


def _upsample(mask: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear resize of mask [Hm, Wm] to [height, width], scaled to [0, 1]."""
  image = Image.fromarray(np.asarray(mask, dtype=np.float32))
  resized = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))
  low, high = float(resized.min()), float(resized.max())
  return (resized - low) / (high - low) if high > low else np.zeros_like(resized)


def _rgb_uint8(images) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise _shape_error("images", "[M, H, W, 3]", images)
  if images.dtype == np.uint8:
    return images
  if images.size and not (np.all(np.isfinite(images)) and images.min() >= 0
                          and images.max() <= 255):
    raise LsattnError("images: expected un-normalised RGB in [0, 255], got values in "
                      f"[{images.min():g}, {images.max():g}] (mean-subtracted?)")
  return np.round(images).astype(np.uint8)


def attention_overlays(path, images, masks, chosen_layers: Sequence[Sequence[str]] | None,
                       titles: Sequence[str] | None = None) -> pathlib.Path:
  """Input images and their spatial attention per recurrent step (paper figure 4).

  One row per image: the image, then one panel per Conv-LSTM step with the
  attention mask upsampled bilinearly to the image, scaled to [0, 1] per mask
  and drawn in `jet` over the image, titled with the selected layer.

  Args:
    path: where to write the PNG.
    images: uint8 [M, H, W, 3], un-normalised RGB crops (float in [0, 255]
      is rounded).
    masks: [M, N, Hm, Wm] attention mask per step on the mask grid (each sums
      to 1 over Hm * Wm); N may be 0 (PoseNet baseline), or masks None.
    chosen_layers: M lists of N display names ('Conv-4E'); None when N == 0.
    titles: optional M titles for the input panels.

  Returns:
    `path` as a `pathlib.Path`.
  """
  images = _rgb_uint8(images)
  num_images, height, width = images.shape[:3]
  if masks is None:
    masks = np.zeros((num_images, 0, 1, 1))
  masks = np.asarray(masks, dtype=np.float64)
  if masks.ndim != 4 or masks.shape[0] != num_images:
    raise _shape_error("masks", f"[{num_images}, N, Hm, Wm]", masks)
  num_steps = masks.shape[1]
  if chosen_layers is None and num_steps == 0:
    chosen_layers = [[] for _ in range(num_images)]
  if (chosen_layers is None or len(chosen_layers) != num_images
      or any(len(layers) != num_steps for layers in chosen_layers)):
    raise LsattnError(f"chosen_layers: expected {num_images} lists of {num_steps} layer "
                      f"names, got {chosen_layers!r}")
  if titles is not None and len(titles) != num_images:
    raise LsattnError(f"titles: expected {num_images} titles, got {len(titles)}")
  panel = 2.4
  figure = _figure(panel * (num_steps + 1), (panel * height / width + 0.3) * max(num_images, 1))
  axes = figure.subplots(max(num_images, 1), num_steps + 1, squeeze=False)
  for row, image in enumerate(images):
    axes[row, 0].imshow(image)
    title = str(titles[row]) if titles is not None else "input"
    # Long file names keep their informative end and stay inside the panel.
    title = title if len(title) <= 30 else "..." + title[-27:]
    axes[row, 0].set_title(title, fontsize=9)
    for step in range(num_steps):
      ax = axes[row, step + 1]
      ax.imshow(image)
      ax.imshow(_upsample(masks[row, step], height, width), cmap="jet", alpha=0.5,
                vmin=0.0, vmax=1.0)
      ax.set_title(f"step {step + 1}: {chosen_layers[row][step]}", fontsize=9)
  for ax in axes.flat:
    ax.set_axis_off()
  return _save(figure, path)


def layer_frequency_plot(path, frequencies: Sequence[Mapping[str, float]]) -> pathlib.Path:
  """Grouped bars of layer-selection frequency per step (paper figure 3).

  Args:
    path: where to write the PNG.
    frequencies: one dict per step, layer name -> fraction of examples
      (as from `metrics.layer_selection_frequency`).

  Returns:
    `path` as a `pathlib.Path`.
  """
  if not frequencies or any(not isinstance(step, Mapping) or not step for step in frequencies):
    raise LsattnError(f"frequencies: expected a non-empty list of non-empty dicts "
                      f"layer -> fraction, got {frequencies!r}")
  layers = list(dict.fromkeys(name for step in frequencies for name in step))
  num_steps = len(frequencies)
  bar_width = 0.8 / num_steps
  figure = _figure(max(4.0, 1.0 + 0.9 * len(layers) + 0.2 * num_steps * len(layers)), 3.2)
  ax = figure.subplots()
  positions = np.arange(len(layers))
  for step, fractions in enumerate(frequencies):
    offsets = positions - 0.4 + bar_width * (step + 0.5)
    ax.bar(offsets, [float(fractions.get(name, 0.0)) for name in layers], bar_width,
           label=f"step {step + 1}")
  ax.set_xticks(positions, layers)
  ax.set_ylim(0.0, 1.0)
  ax.set_ylabel("fraction of examples")
  ax.set_title("layer selection frequency")
  ax.legend(fontsize=8)
  ax.grid(axis="y", alpha=0.3)
  return _save(figure, path)


def layer_choice_dynamics_plot(path, steps, share, entropy,
                               layer_names: Sequence[str]) -> pathlib.Path:
  """Layer choice over training: share of each layer and selection entropy per step.

  One column per recurrent step: above, the fraction of the training
  choices that took each layer (Gumbel noise included) at each logged
  train step; below, the mean entropy of the selection distribution (the
  softmax before the noise), with its maximum log k dashed. A choice that
  settles shows as one share going to 1 and the entropy to 0.

  Args:
    path: where to write the PNG.
    steps: [R] train steps of the logged rows (R > 0).
    share: [R, N, k] fraction of choices per layer (nan where not logged).
    entropy: [R, N] mean selection entropy in nats.
    layer_names: k display names.

  Returns:
    `path` as a `pathlib.Path`.
  """
  steps = np.asarray(steps, dtype=np.float64)
  share = np.asarray(share, dtype=np.float64)
  entropy = np.asarray(entropy, dtype=np.float64)
  if steps.ndim != 1 or steps.size == 0:
    raise _shape_error("steps", "[R] with R > 0", steps)
  if share.ndim != 3 or share.shape[0] != steps.size or share.shape[1] == 0 or (
      share.shape[2] != len(layer_names)):
    raise _shape_error("share", f"[{steps.size}, N, {len(layer_names)}] with N > 0", share)
  if entropy.shape != share.shape[:2]:
    raise _shape_error("entropy", f"{list(share.shape[:2])}", entropy)
  num_steps = share.shape[1]
  figure = _figure(max(4.0, 3.4 * num_steps), 4.6)
  axes = figure.subplots(2, num_steps, squeeze=False, sharex=True)
  marker = "o" if steps.size < 30 else None  # a few rows: their points visible
  for t in range(num_steps):
    top, bottom = axes[0, t], axes[1, t]
    for i, name in enumerate(layer_names):
      top.plot(steps, share[:, t, i], marker=marker, markersize=3, label=name)
    top.set_ylim(-0.02, 1.02)
    top.set_title(f"recurrent step {t + 1}", fontsize=9)
    bottom.plot(steps, entropy[:, t], marker=marker, markersize=3, color="black")
    bottom.axhline(np.log(len(layer_names)), color="0.5", linestyle="--", linewidth=1,
                   label=f"log {len(layer_names)}")
    bottom.set_ylim(-0.02 * np.log(max(len(layer_names), 2)),
                    1.05 * np.log(max(len(layer_names), 2)))
    bottom.set_xlabel("train step")
    for ax in (top, bottom):
      ax.grid(alpha=0.3)
  axes[0, 0].set_ylabel("share of choices")
  axes[1, 0].set_ylabel("entropy (nats)")
  axes[0, -1].legend(fontsize=8)
  axes[1, -1].legend(fontsize=8)
  figure.suptitle("layer choice during training", fontsize=10)
  return _save(figure, path)


def trajectory_plot(path, true_positions, pred_positions, train_positions=None) -> pathlib.Path:
  """Top view of predicted against ground-truth camera positions.

  Shows the two world axes along which the ground truth spreads most, each
  prediction joined to its ground truth by a thin grey line.

  Args:
    path: where to write the PNG.
    true_positions: [N, 3] ground-truth camera centres (metres).
    pred_positions: [N, 3] predicted camera centres.
    train_positions: optional [M, 3] training camera centres, drawn faintly.

  Returns:
    `path` as a `pathlib.Path`.
  """
  arrays = {}
  for name, value in (("true_positions", true_positions), ("pred_positions", pred_positions),
                      ("train_positions", train_positions)):
    if value is None and name == "train_positions":
      continue
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 3 or array.shape[0] == 0:
      raise _shape_error(name, "[N, 3] with N > 0", array)
    arrays[name] = array
  true, pred = arrays["true_positions"], arrays["pred_positions"]
  if true.shape != pred.shape:
    raise LsattnError(f"pred_positions: expected shape {true.shape} like true_positions, "
                      f"got {pred.shape}")
  axis_u, axis_v = sorted(np.argsort(-true.std(axis=0), kind="stable")[:2])
  median = float(np.median(np.linalg.norm(pred - true, axis=1)))
  spans = np.ptp(np.concatenate(list(arrays.values())), axis=0)[[axis_u, axis_v]]
  ratio = spans[1] / spans[0] if spans[0] > 0 else 1.0
  figure = _figure(6.5, float(np.clip(5.5 * ratio + 1.0, 3.0, 7.5)))
  ax = figure.subplots()
  if "train_positions" in arrays:
    train = arrays["train_positions"]
    ax.scatter(train[:, axis_u], train[:, axis_v], s=4, c="0.75", alpha=0.5,
               label="train", zorder=1)
  segments = np.stack([true[:, [axis_u, axis_v]], pred[:, [axis_u, axis_v]]], axis=1)
  ax.add_collection(LineCollection(segments, colors="0.5", linewidths=0.5, zorder=2))
  ax.scatter(true[:, axis_u], true[:, axis_v], s=10, c="tab:green", label="ground truth",
             zorder=3)
  ax.scatter(pred[:, axis_u], pred[:, axis_v], s=10, c="tab:red", label="prediction",
             zorder=4)
  ax.set_aspect("equal", adjustable="datalim")
  ax.set_xlabel(f"{'xyz'[axis_u]} (m)")
  ax.set_ylabel(f"{'xyz'[axis_v]} (m)")
  ax.set_title(f"median translation error {median:.2f} m ({len(true)} "
               f"image{'s' * (len(true) != 1)})")
  ax.legend(fontsize=8, markerscale=1.5)
  ax.grid(alpha=0.3)
  return _save(figure, path)


def confusion_matrix_plot(path, confusion, class_names: Sequence[str]) -> pathlib.Path:
  """Row-normalised confusion matrix with a colour bar; counts shown if C <= 20.

  Args:
    path: where to write the PNG.
    confusion: [C, C] counts, rows true class, columns predicted class.
    class_names: C names.

  Returns:
    `path` as a `pathlib.Path`.
  """
  confusion = np.asarray(confusion, dtype=np.float64)
  if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1] or confusion.size == 0:
    raise _shape_error("confusion", "[C, C] with C > 0", confusion)
  num_classes = confusion.shape[0]
  if len(class_names) != num_classes:
    raise LsattnError(f"class_names: expected {num_classes} names, got {len(class_names)}")
  if not np.all(np.isfinite(confusion)) or confusion.min() < 0:
    raise LsattnError("confusion: expected non-negative finite counts")
  totals = confusion.sum(axis=1, keepdims=True)
  normalised = np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)
  accuracy = np.trace(confusion) / max(confusion.sum(), 1.0)
  side = float(np.clip(0.16 * num_classes + 3.0, 5.0, 16.0))
  # Tick labels as large as the cells allow (axes about side - 3 inches).
  font = float(np.clip(0.6 * 72 * (side - 3.0) / num_classes, 4.0, 8.0))
  figure = _figure(side + 1.2, side)
  ax = figure.subplots()
  image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
  figure.colorbar(image, ax=ax, shrink=0.6, label="fraction of true class")
  ticks = np.arange(num_classes)
  ax.set_xticks(ticks, class_names, rotation=90, fontsize=font)
  ax.set_yticks(ticks, class_names, fontsize=font)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(f"accuracy {100 * accuracy:.1f}% ({int(confusion.sum())} examples)")
  if num_classes <= 20:
    for row, col in np.ndindex(num_classes, num_classes):
      ax.text(col, row, f"{confusion[row, col]:g}", ha="center", va="center", fontsize=font,
              color="white" if normalised[row, col] > 0.5 else "black")
  return _save(figure, path)

