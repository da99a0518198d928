"""Cue-scale sets: MIT-67 layout, determinism, and that each set's classes are
told apart by its own cue (fine texture or coarse layout) and not the other.

Two hand-made statistics stand for the two scales:

* fine: log of the high-frequency spectral energy along the vertical
  frequency axis over that along the horizontal axis (horizontal stripes
  > 0, vertical stripes < 0); blind to anything coarser than ~7 px;
* coarse: colour contrast of the top quarter against the middle minus that
  of the bottom quarter, on an 8x8 block-mean image (top band > 0, bottom
  band < 0); textures average out in the blocks.
"""

from __future__ import annotations

import functools
import pathlib

import numpy as np
import pytest

from lsattn import LsattnError
from lsattn.data import datasets, pipeline
from lsattn.data.synthetic import cue_scale
from written_files import assert_mit67_layout, file_bytes, pixels  # tests/written_files.py

SMALL = dict(train_per_class=2, test_per_class=1, image_size=(64, 64))
# Enough images per class for the statistics; 96 px keeps the texture period
# (2.6-3.75 px) clear of aliasing.
STATS = dict(train_per_class=8, test_per_class=2, image_size=(96, 96))


def _fine(image: np.ndarray) -> float:
  """log(energy in a +-14 degree cone about the vertical frequency axis /
  about the horizontal one), frequencies above 0.15 cycles/px only."""
  grey = image.astype(np.float64).mean(axis=-1)
  power = np.abs(np.fft.fft2(grey - grey.mean()))**2
  fy = np.fft.fftfreq(grey.shape[0])[:, None]
  fx = np.fft.fftfreq(grey.shape[1])[None, :]
  high = np.hypot(fy, fx) > 0.15
  along_y = power[high & (np.abs(fx) < 0.25 * np.abs(fy))].sum()
  along_x = power[high & (np.abs(fy) < 0.25 * np.abs(fx))].sum()
  return float(np.log(along_y / along_x))


def _coarse(image: np.ndarray) -> float:
  """|top quarter - middle quarter| - |bottom quarter - middle| (RGB, 0-255)
  of the 8x8 block means. The figure may be darker or brighter than the
  background, hence absolute contrasts."""
  height, width, _ = image.shape
  blocks = image.astype(np.float64).reshape(8, height // 8, 8, width // 8, 3).mean(axis=(1, 3))
  top, middle, bottom = (blocks[rows].mean(axis=(0, 1)) for rows in
                         (slice(0, 2), slice(3, 5), slice(6, 8)))
  return float(np.linalg.norm(top - middle) - np.linalg.norm(bottom - middle))


def _d_prime(a, b) -> float:
  """Separation of two samples: |difference of means| / pooled sd."""
  a, b = np.asarray(a), np.asarray(b)
  return float(abs(a.mean() - b.mean()) / np.sqrt((a.var() + b.var()) / 2))


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory) -> dict[str, pathlib.Path]:
  return {cue: cue_scale.write_cue_scale_mit67(tmp_path_factory.mktemp(cue), cue=cue, **SMALL)
          for cue in cue_scale.CUES}


@pytest.fixture(scope="module")
def statistics(tmp_path_factory) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
  """{cue: {class: (fine [N], coarse [N])}} over all images of each set."""
  result = {}
  for cue in cue_scale.CUES:
    root = cue_scale.write_cue_scale_mit67(tmp_path_factory.mktemp(cue), cue=cue, **STATS)
    result[cue] = {}
    for name in cue_scale.class_names(cue):
      images = [pixels(p) for p in sorted((root / "Images" / name).glob("*.jpg"))]
      assert len(images) == 10
      result[cue][name] = (np.array([_fine(i) for i in images]),
                           np.array([_coarse(i) for i in images]))
  return result


@pytest.mark.parametrize("cue", cue_scale.CUES)
def test_layout_on_disk(small_sets, cue):
  root = small_sets[cue]
  classes = cue_scale.class_names(cue)
  assert sorted(p.name for p in (root / "Images").iterdir()) == sorted(classes)
  train_text = (root / "TrainImages.txt").read_text()
  test_text = (root / "TestImages.txt").read_text()
  assert train_text.endswith("\n") and test_text.endswith("\n")
  train, test = train_text.splitlines(), test_text.splitlines()
  assert len(train) == 4 * 2 and len(test) == 4 * 1 and not set(train) & set(test)
  for name in classes:
    assert sum(line.startswith(name + "/") for line in train) == 2
  assert_mit67_layout(root, train, test, classes, (64, 64))


def test_class_names():
  assert cue_scale.class_names("texture") == cue_scale.TEXTURES
  assert cue_scale.class_names("layout") == cue_scale.LAYOUTS


def test_deterministic(tmp_path, small_sets):
  again = cue_scale.write_cue_scale_mit67(tmp_path / "again", cue="texture", **SMALL)
  assert file_bytes(again) == file_bytes(small_sets["texture"])
  other = cue_scale.write_cue_scale_mit67(tmp_path / "other", cue="texture", seed=1, **SMALL)
  # Same names and lists (they do not depend on the seed); every image differs.
  other_files, again_files = file_bytes(other), file_bytes(again)
  assert other_files.keys() == again_files.keys()
  assert all((other_files[name] != again_files[name]) == name.endswith(".jpg")
             for name in other_files)
  layout = cue_scale.write_cue_scale_mit67(tmp_path / "layout", cue="layout", **SMALL)
  assert file_bytes(layout) == file_bytes(small_sets["layout"])


def test_texture_set_is_told_apart_by_the_fine_cue_only(statistics):
  horizontal = statistics["texture"]["horizontal_stripes"]
  vertical = statistics["texture"]["vertical_stripes"]
  # Fine: every image of the two stripe classes is on its own side.
  assert horizontal[0].min() > 1.0 and vertical[0].max() < -1.0
  assert _d_prime(horizontal[0], vertical[0]) > 3
  # Coarse: the layout is random, so it does not tell the classes apart ...
  assert _d_prime(horizontal[1], vertical[1]) < 1
  # ... although it varies a lot within each class (every layout occurs).
  assert np.ptp(horizontal[1]) > 100 and np.ptp(vertical[1]) > 100


def test_layout_set_is_told_apart_by_the_coarse_cue_only(statistics):
  top = statistics["layout"]["top_band"]
  bottom = statistics["layout"]["bottom_band"]
  assert top[1].min() > 30 and bottom[1].max() < -30
  assert _d_prime(top[1], bottom[1]) > 3
  # The texture is random: the fine statistic swings both ways in each class.
  assert _d_prime(top[0], bottom[0]) < 1
  for fine in (top[0], bottom[0]):
    assert fine.max() > 1 and fine.min() < -1


def test_texture_spectra():
  """Each texture's high-frequency energy lies where its structure says."""
  size = (128, 128)
  fy = np.fft.fftfreq(size[0])[:, None]
  fx = np.fft.fftfreq(size[1])[None, :]
  high = np.hypot(fy, fx) > 0.15
  cones = {"along_y": np.abs(fx) < 0.25 * np.abs(fy), "along_x": np.abs(fy) < 0.25 * np.abs(fx),
           "diagonal": np.abs(np.abs(fx) - np.abs(fy)) < 0.2 * np.hypot(fx, fy)}
  expected = {"horizontal_stripes": "along_y", "vertical_stripes": "along_x",
              "checks": "diagonal", "speckle": None}
  for index, name in enumerate(cue_scale.TEXTURES):
    for seed in range(3):
      pattern = cue_scale.texture_pattern(index, np.random.default_rng(seed), size)
      assert pattern.min() >= -1 and pattern.max() <= 1
      assert np.sqrt(np.mean(pattern**2)) == pytest.approx(np.sqrt(0.5), abs=0.03)
      power = np.abs(np.fft.fft2(pattern - pattern.mean()))**2
      share = {cone: power[high & mask].sum() / power[high].sum() for cone, mask in cones.items()}
      if expected[name] is None:
        assert max(share.values()) < 0.5, (name, share)  # isotropic
      else:
        assert share[expected[name]] > 0.8, (name, share)


def test_layouts_survive_left_right_flips():
  size = (64, 80)
  nominal = {name: cue_scale.layout_mask(i, None, size) for i, name in enumerate(cue_scale.LAYOUTS)}
  for name, mask in nominal.items():
    assert mask.shape == size and mask.min() >= 0 and mask.max() <= 1
    np.testing.assert_allclose(mask, mask[:, ::-1], atol=1e-12, err_msg=name)
    assert 0.1 < mask.mean() < 0.5, name  # a large figure on a larger background
  # Not up-down symmetric: that is what tells the two bands apart.
  np.testing.assert_allclose(nominal["top_band"][::-1], nominal["bottom_band"], atol=1e-12)
  assert np.abs(nominal["top_band"] - nominal["bottom_band"]).mean() > 0.5
  # Jittered shapes: bands and bars stay exactly symmetric; the disk's centre
  # moves at most 5% of the width off the middle.
  for seed in range(5):
    for index, name in enumerate(cue_scale.LAYOUTS):
      mask = cue_scale.layout_mask(index, np.random.default_rng(seed), size)
      if name == "centre_disk":
        columns = np.arange(size[1]) + 0.5
        centre_x = (mask.sum(axis=0) * columns).sum() / mask.sum()
        assert abs(centre_x / size[1] - 0.5) <= 0.05 + 1e-3
      else:
        np.testing.assert_allclose(mask, mask[:, ::-1], atol=1e-12, err_msg=name)


def test_render_image():
  image = cue_scale.render_image(2, 3, np.random.default_rng(0), (40, 48))
  assert image.shape == (40, 48, 3) and image.dtype == np.uint8 and image.std() > 10
  again = cue_scale.render_image(2, 3, np.random.default_rng(0), (40, 48))
  np.testing.assert_array_equal(image, again)
  with pytest.raises(LsattnError, match="texture.*7"):
    cue_scale.render_image(7, 0, np.random.default_rng(0))
  with pytest.raises(LsattnError, match="layout.*-1"):
    cue_scale.render_image(0, -1, np.random.default_rng(0))


@pytest.mark.parametrize("kwargs, named", [
    (dict(cue="colour"), "'colour'"),
    (dict(cue="texture", train_per_class=0), "train_per_class"),
    (dict(cue="layout", test_per_class=0), "test_per_class"),
    (dict(cue="layout", image_size=(16, 64)), "image_size"),
])
def test_bad_arguments_are_named(tmp_path, kwargs, named):
  with pytest.raises(LsattnError, match=named):
    cue_scale.write_cue_scale_mit67(tmp_path, **kwargs)
  with pytest.raises(LsattnError, match="'shape'"):
    cue_scale.class_names("shape")


@pytest.mark.parametrize("cue", cue_scale.CUES)
def test_prepare_builds_the_config(tmp_path, small_sets, cue):
  dataset = f"mit67/synthetic_{cue}"
  assert datasets.is_synthetic(dataset) and datasets.task_of(dataset) == "classification"
  builder = datasets.prepare(dataset, data_dir=tmp_path / "data", manual_dir=small_sets[cue])
  classes = cue_scale.class_names(cue)
  assert builder.info.features["label"].names == list(classes)
  train = pipeline.Split(builder, "train")
  assert len(train) == 8 and len(pipeline.Split(builder, "test")) == 4
  for name, label in zip(train.labels["image_name"], train.labels["label"]):
    assert classes[int(label)] == name.split("/")[0]
  assert builder.as_data_source("train")[0]["image"].shape == (256, 256, 3)


def test_prepare_writes_the_source_files_itself(tmp_path, monkeypatch):
  # The default counts and size take a while; the dispatch is what is tested.
  monkeypatch.setattr(cue_scale, "write_cue_scale_mit67",
                      functools.partial(cue_scale.write_cue_scale_mit67, **SMALL))
  builder = datasets.prepare("mit67/synthetic_layout", data_dir=tmp_path)
  assert builder.info.features["label"].names == list(cue_scale.LAYOUTS)
  manual = tmp_path / "manual" / "mit67_synthetic_layout"
  assert sorted(p.name for p in (manual / "Images").iterdir()) == sorted(cue_scale.LAYOUTS)
