"""Figures: each writes a readable PNG of sensible size; bad shapes are refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lsattn.errors import LsattnError
from lsattn.evaluation import figures


def _check_png(path, returned, min_width=200, min_height=150):
  assert returned == path and path.stat().st_size > 2000
  with Image.open(path) as image:
    assert image.format == "PNG"
    image.load()
    width, height = image.size
    assert width >= min_width and height >= min_height
    pixels = np.asarray(image.convert("L"))
  assert pixels.std() > 5.0  # something was drawn, not a blank canvas
  return width, height


def _masks(num_images, num_steps, height, width, rng):
  masks = rng.random((num_images, num_steps, height, width))
  return masks / masks.sum(axis=(2, 3), keepdims=True)


@pytest.mark.parametrize("num_steps, mask_grid", [(3, (7, 7)), (2, (28, 14)), (0, (7, 7))],
                         ids=["three_steps", "other_grid", "posenet_no_steps"])
def test_attention_overlays(tmp_path, num_steps, mask_grid):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2, 56, 72, 3), dtype=np.uint8)
  masks = _masks(2, num_steps, *mask_grid, rng)
  layers = [["Conv-4E", "Conv-3B", "Conv-5B"][:num_steps]] * 2
  path = tmp_path / "attention.png"
  returned = figures.attention_overlays(path, images, masks, layers, titles=["a", "b"])
  width, _ = _check_png(path, returned, min_width=100)
  more = tmp_path / "wider.png"
  figures.attention_overlays(more, images, _masks(2, num_steps + 1, *mask_grid, rng),
                             [["Conv-4C"] * (num_steps + 1)] * 2)
  with Image.open(more) as image:
    assert image.size[0] > width  # one more column per step


def test_attention_overlay_draws_mask_where_attended(tmp_path):
  images = np.full((1, 64, 64, 3), 128, dtype=np.uint8)
  masks = np.zeros((1, 1, 4, 4))
  masks[0, 0, 0, 0] = 1.0  # all attention on the top-left cell
  path = figures.attention_overlays(tmp_path / "a.png", images, masks, [["Conv-5B"]])
  with Image.open(path) as image:
    pixels = np.asarray(image.convert("RGB")).astype(int)
  # jet at 1 is dark red, at 0 dark blue: red-dominant pixels exist and sit in
  # the upper half of the right-hand (overlay) panel only.
  red = (pixels[..., 0] - pixels[..., 2]) > 60
  rows, cols = np.nonzero(red)
  assert rows.size > 20
  assert cols.min() > pixels.shape[1] // 2 and np.median(rows) < pixels.shape[0] * 0.6


@pytest.mark.parametrize("kwargs, name", [
    (dict(images=np.zeros((2, 8, 8), np.uint8)), "images"),
    (dict(images=np.full((2, 8, 8, 3), -10.0)), "images"),
    (dict(masks=np.zeros((3, 1, 4, 4))), "masks"),
    (dict(chosen_layers=[["Conv-4E", "Conv-5B"]] * 2), "chosen_layers"),
    (dict(chosen_layers=None), "chosen_layers"),
    (dict(titles=["only one"]), "titles"),
], ids=["images_rank", "images_normalised", "masks_count", "layers_steps", "layers_missing",
        "titles"])
def test_attention_overlays_bad_arguments(tmp_path, kwargs, name):
  arguments = dict(images=np.zeros((2, 8, 8, 3), np.uint8), masks=np.ones((2, 1, 4, 4)) / 16,
                   chosen_layers=[["Conv-4E"]] * 2, titles=None)
  arguments.update(kwargs)
  with pytest.raises(LsattnError, match=name):
    figures.attention_overlays(tmp_path / "x.png", **arguments)
  assert not (tmp_path / "x.png").exists()


def test_layer_frequency_plot(tmp_path):
  frequencies = [{"Conv-3B": 0.1, "Conv-4C": 0.2, "Conv-4E": 0.6, "Conv-5B": 0.1},
                 {"Conv-3B": 0.0, "Conv-4C": 0.5, "Conv-4E": 0.0, "Conv-5B": 0.5},
                 {"Conv-3B": 1.0}]
  path = tmp_path / "sub" / "lsf.png"
  _check_png(path, figures.layer_frequency_plot(path, frequencies))
  with pytest.raises(LsattnError, match="frequencies"):
    figures.layer_frequency_plot(tmp_path / "x.png", [])


@pytest.mark.parametrize("num_rows, num_steps", [(12, 3), (1, 1)], ids=["rows", "one_row"])
def test_layer_choice_dynamics_plot(tmp_path, num_rows, num_steps):
  rng = np.random.default_rng(0)
  share = rng.random((num_rows, num_steps, 4))
  share /= share.sum(axis=2, keepdims=True)
  entropy = rng.random((num_rows, num_steps)) * np.log(4)
  entropy[0, 0] = np.nan  # a non-finite value logged as null
  steps = np.arange(1, num_rows + 1) * 100
  names = ["Conv-3B", "Conv-4C", "Conv-4E", "Conv-5B"]
  path = tmp_path / "dynamics.png"
  width, _ = _check_png(path, figures.layer_choice_dynamics_plot(path, steps, share, entropy,
                                                                 names))
  assert num_steps == 1 or width > 300 * num_steps  # a column per recurrent step


@pytest.mark.parametrize("kwargs, name", [
    ({"steps": []}, "steps"), ({"share": np.ones((2, 2, 3))}, "share"),
    ({"share": np.ones((2, 0, 4))}, "share"), ({"entropy": np.ones((2, 3))}, "entropy")])
def test_layer_choice_dynamics_plot_bad_shapes(tmp_path, kwargs, name):
  arguments = {"steps": [1, 2], "share": np.full((2, 2, 4), 0.25), "entropy": np.ones((2, 2)),
               "layer_names": ["a", "b", "c", "d"], **kwargs}
  with pytest.raises(LsattnError, match=name):
    figures.layer_choice_dynamics_plot(tmp_path / "x.png", **arguments)


@pytest.mark.parametrize("num_points, with_train", [(40, True), (1, False)],
                         ids=["sequence", "one_point"])
def test_trajectory_plot(tmp_path, num_points, with_train):
  rng = np.random.default_rng(1)
  angle = np.linspace(0, np.pi, num_points)
  true = np.stack([10 * np.cos(angle), np.full(num_points, 1.5), 4 * np.sin(angle)], axis=1)
  pred = true + rng.normal(0, 0.5, true.shape)
  train = true[rng.integers(0, num_points, 100)] + rng.normal(0, 1, (100, 3)) if with_train else None
  path = tmp_path / "trajectory.png"
  _check_png(path, figures.trajectory_plot(path, true, pred, train))


@pytest.mark.parametrize("kwargs, name", [
    (dict(true_positions=np.zeros((4, 2))), "true_positions"),
    (dict(pred_positions=np.zeros((3, 3))), "pred_positions"),
    (dict(train_positions=np.zeros((0, 3))), "train_positions"),
], ids=["true_width", "pred_count", "train_empty"])
def test_trajectory_plot_bad_shapes(tmp_path, kwargs, name):
  arguments = dict(true_positions=np.zeros((4, 3)), pred_positions=np.ones((4, 3)),
                   train_positions=None)
  arguments.update(kwargs)
  with pytest.raises(LsattnError, match=name):
    figures.trajectory_plot(tmp_path / "x.png", **arguments)


@pytest.mark.parametrize("num_classes", [5, 67], ids=["small_with_counts", "mit67"])
def test_confusion_matrix_plot(tmp_path, num_classes):
  rng = np.random.default_rng(2)
  confusion = rng.integers(0, 3, (num_classes, num_classes)) + 20 * np.eye(num_classes, dtype=int)
  confusion[-1] = 0  # a class with no test examples must not divide by zero
  names = [f"class_{i}_long_name" for i in range(num_classes)]
  path = tmp_path / "confusion.png"
  _check_png(path, figures.confusion_matrix_plot(path, confusion, names), 400, 400)


@pytest.mark.parametrize("confusion, names, name", [
    (np.zeros((3, 4)), ["a", "b", "c"], "confusion"),
    (np.zeros((3, 3)), ["a", "b"], "class_names"),
    (-np.ones((2, 2)), ["a", "b"], "confusion"),
], ids=["not_square", "names_count", "negative"])
def test_confusion_matrix_plot_bad_arguments(tmp_path, confusion, names, name):
  with pytest.raises(LsattnError, match=name):
    figures.confusion_matrix_plot(tmp_path / "x.png", confusion, names)

