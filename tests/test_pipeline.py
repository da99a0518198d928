"""Input pipeline on tiny built datasets: determinism, coverage, crops, masks; grain's
loader makes the same batches as the threads.

Every fixture image has a constant red channel that identifies it (so a batch
row can be matched to its targets) and green / blue ramps along columns /
rows (so crops and flips change pixels).
"""

from __future__ import annotations

import itertools
import pathlib
import threading
import types

import ml_collections
import numpy as np
from PIL import Image
import pytest

from lsattn import LsattnError, config_checks, config_schema, experiment
from lsattn.data import datasets, grain_loader, pipeline
from configs import test as test_config

SOURCE_SIZE = (32, 48)
TRAIN_FRAMES = {1: 4, 2: 3}  # 7 train examples: batches of 3 straddle epochs.
TEST_FRAMES = {3: 5}  # 5 test examples: batches of 2 leave a ragged last one.
POSE_OPTIONS = dict(resize_size=(64, 112), image_size=48)
CLASS_OPTIONS = dict(resize_size=(64, 64), image_size=40)
RED_TOLERANCE = 6.0  # Red values of different examples are 17 apart.


def _ramp_image(red: int) -> Image.Image:
  height, width = SOURCE_SIZE
  rows, columns = np.mgrid[0:height, 0:width]
  pixels = np.stack([np.full(SOURCE_SIZE, red), columns * 255 // (width - 1),
                     rows * 255 // (height - 1)], axis=-1)
  return Image.fromarray(pixels.astype(np.uint8))


def _red(example: int) -> int:
  return 20 + 17 * example


@pytest.fixture(scope="module")
def pose_builder(tmp_path_factory):
  """seven_scenes/chess: example k has red _red(k) and position (k, 0, 0)."""
  root = tmp_path_factory.mktemp("pose")
  scene = root / "manual" / "chess"
  example = 0
  for sequence, frames in {**TRAIN_FRAMES, **TEST_FRAMES}.items():
    folder = scene / f"seq-{sequence:02d}"
    folder.mkdir(parents=True)
    for frame in range(frames):
      _ramp_image(_red(example)).save(folder / f"frame-{frame:06d}.color.png")
      (folder / f"frame-{frame:06d}.pose.txt").write_text(
          f"1 0 0 {example}\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
      example += 1
  (scene / "TrainSplit.txt").write_text("".join(f"sequence{s}\n" for s in TRAIN_FRAMES))
  (scene / "TestSplit.txt").write_text("".join(f"sequence{s}\n" for s in TEST_FRAMES))
  return datasets.prepare("seven_scenes/chess", data_dir=root / "data",
                          manual_dir=root / "manual")


@pytest.fixture(scope="module")
def class_builder(tmp_path_factory):
  """mit67/full with 'bar' (label 4) and 'kitchen' (label 37) images."""
  root = tmp_path_factory.mktemp("classes") / "manual"
  listing = {"TrainImages.txt": [], "TestImages.txt": []}
  for index, name in enumerate(["bar/a.jpg", "bar/b.jpg", "kitchen/c.jpg", "kitchen/d.jpg",
                                "kitchen/e.jpg", "bar/f.jpg"]):
    (root / "Images" / name).parent.mkdir(parents=True, exist_ok=True)
    _ramp_image(_red(index)).save(root / "Images" / name, quality=95)
    listing["TrainImages.txt" if index < 4 else "TestImages.txt"].append(name)
  for file, names in listing.items():
    (root / file).write_text("".join(f"{name}\n" for name in names))
  return datasets.prepare("mit67/full", data_dir=root.parent / "data", manual_dir=root)


@pytest.fixture(scope="module")
def train_split(pose_builder):
  return pipeline.Split(pose_builder, "train")


@pytest.fixture(scope="module")
def pose_options(pose_builder):
  mean = tuple(pose_builder.info.metadata["channel_mean"])
  return pipeline.ImageOptions(**POSE_OPTIONS, channel_mean=mean)


def _train(split, options, **kwargs):
  kwargs = {"task": "pose", "batch_size": 3, "seed": 0, **kwargs}
  return pipeline.TrainBatches(split, options=options, **kwargs)


def _assert_batches_equal(got: dict, want: dict) -> None:
  assert sorted(got) == sorted(want)
  for key in want:
    assert got[key].dtype == want[key].dtype, key
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def _examples(batch: dict) -> list[int]:
  """The fixture example numbers of a pose batch (its x positions)."""
  return [int(x) for x in batch["position"][:, 0]]


def _take(iterator, count: int, timeout: float = 15.0) -> list[dict]:
  """`count` items of `iterator`, failing (not hanging) if it blocks."""
  items, errors = [], []

  def consume_fn():
    try:
      items.extend(itertools.islice(iterator, count))
    except Exception as error:  # Re-raised in the test's thread below.
      errors.append(error)

  thread = threading.Thread(target=consume_fn, daemon=True)
  thread.start()
  thread.join(timeout)
  assert not thread.is_alive(), f"no {count} batches within {timeout} s (deadlock?)"
  if errors:
    raise errors[0]
  iterator.close()
  assert len(items) == count
  return items


# ---------------------------------------------------------------- training


def test_train_batch_is_a_function_of_seed_and_step(train_split, pose_options):
  first, again = _train(train_split, pose_options), _train(train_split, pose_options)
  for step in (0, 3):
    _assert_batches_equal(again.batch(step), first.batch(step))
  batch = first.batch(0)
  assert batch["image"].dtype == np.float32 and batch["image"].shape == (3, 48, 48, 3)
  assert batch["position"].shape == (3, 3) and batch["orientation"].shape == (3, 4)

  other = _train(train_split, pose_options, seed=1)
  order = [e for step in range(3) for e in _examples(first.batch(step))]
  other_order = [e for step in range(3) for e in _examples(other.batch(step))]
  assert order != other_order


@pytest.mark.parametrize("prefetch", [2, 0])
def test_iterate_resumed_at_step_k_equals_batches_k_onwards(train_split, pose_options,
                                                            prefetch):
  batches = _train(train_split, pose_options, prefetch=prefetch, num_threads=2)
  resumed = _take(batches.iterate(4), 3)
  for offset, batch in enumerate(resumed):
    _assert_batches_equal(batch, _train(train_split, pose_options).batch(4 + offset))


def test_every_example_once_per_epoch_and_image_matches_targets(train_split, pose_options):
  batches = _train(train_split, pose_options)
  count = len(train_split)
  assert count == 7
  seen = []
  for step in range(7):  # 21 rows = 3 epochs of 7, batches straddling epochs.
    batch = batches.batch(step)
    seen += _examples(batch)
    red = batch["image"][..., 0].mean(axis=(1, 2)) + pose_options.channel_mean[0]
    np.testing.assert_allclose(red, [_red(e) for e in _examples(batch)], atol=RED_TOLERANCE)
  epochs = [seen[i:i + count] for i in range(0, len(seen), count)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(count))
  assert epochs[0] != epochs[1]  # Reshuffled every epoch.


def test_random_crops_are_image_size_squares_inside_resize_size(train_split, pose_options):
  batches = _train(train_split, pose_options)
  height, width = pose_options.resize_size
  size = pose_options.image_size
  offsets = set()
  for step in range(4):
    batch = batches.batch(step)
    assert batch["image"].shape == (3, size, size, 3)
    for row, (position, (top, left), flip) in enumerate(batches.plan(step)):
      assert 0 <= top <= height - size and 0 <= left <= width - size
      assert not flip
      offsets.add((top, left))
      resized = np.asarray(Image.fromarray(train_split.image(position)).resize(
          (width, height), Image.BILINEAR), np.float32)
      want = resized[top:top + size, left:left + size] - np.float32(pose_options.channel_mean)
      np.testing.assert_array_equal(batch["image"][row], want)
  assert len(offsets) > 6


def test_flip_only_when_enabled_and_never_for_pose(class_builder, train_split, pose_options):
  split = pipeline.Split(class_builder, "train")
  mean = tuple(class_builder.info.metadata["channel_mean"])
  for random_flip in (False, True):
    options = pipeline.ImageOptions(**CLASS_OPTIONS, channel_mean=mean, random_flip=random_flip)
    batches = pipeline.TrainBatches(split, task="classification", options=options,
                                    batch_size=4, seed=3)
    flips = []
    for step in range(3):
      batch = batches.batch(step)
      assert batch["label"].dtype == np.int32
      for row, (position, offset, flip) in enumerate(batches.plan(step)):
        unflipped = pipeline.preprocess(split.image(position), options, offset=offset)
        want = unflipped[:, ::-1] if flip else unflipped
        np.testing.assert_array_equal(batch["image"][row], want)
        # The green ramp rises to the right unless mirrored.
        green = batch["image"][row, :, :, 1].mean(axis=0)
        assert (green[-1] < green[0]) == flip
        flips.append(flip)
    assert (True in flips) == random_flip and False in flips

  flipping = pipeline.ImageOptions(**POSE_OPTIONS, channel_mean=pose_options.channel_mean,
                                   random_flip=True)
  with pytest.raises(LsattnError, match="random_flip"):
    _train(train_split, flipping)


def test_process_rows_are_rows_of_the_full_batch(train_split, pose_options):
  full = _train(train_split, pose_options, batch_size=4)
  halves = [_train(train_split, pose_options, batch_size=4, rows=slice(start, start + 2))
            for start in (0, 2)]
  for step in (0, 1, 5):
    want = full.batch(step)
    for start, half in zip((0, 2), halves):
      _assert_batches_equal(half.batch(step),
                            {key: value[start:start + 2] for key, value in want.items()})


def test_unknown_task_is_refused(train_split, pose_options):
  with pytest.raises(LsattnError, match="'regression'"):
    _train(train_split, pose_options, task="regression")
  with pytest.raises(LsattnError, match="'regression'"):
    next(pipeline.eval_batches(train_split, task="regression", options=pose_options,
                               batch_size=2))


# ---------------------------------------------------------------- grain


# Worker processes start with spawn (each imports lsattn and jax: seconds), so one
# worker in the suite; two (the interleaving of their batches) in the slow run.
@pytest.mark.parametrize("workers, start_step, rows", [
    (0, 0, None), (0, 4, slice(1, 3)), (1, 4, slice(1, 3)),
    pytest.param(2, 5, slice(0, 2), marks=pytest.mark.slow)],
    ids=["in-process-from-0", "in-process-resumed-rows", "one-worker-resumed-rows",
         "two-workers-resumed-rows"])
def test_grain_batches_equal_the_threaded_batches(train_split, pose_options, workers,
                                                  start_step, rows):
  threads = _train(train_split, pose_options, rows=rows)
  got = _take(grain_loader.iterate(threads, start_step, workers), 4, timeout=120.0)
  for offset, batch in enumerate(got):  # steps over the epochs of 7 examples
    _assert_batches_equal(batch, threads.batch(start_step + offset))


def test_grain_batches_keep_the_flips(class_builder):
  split = pipeline.Split(class_builder, "train")
  mean = tuple(class_builder.info.metadata["channel_mean"])
  options = pipeline.ImageOptions(**CLASS_OPTIONS, channel_mean=mean, random_flip=True)
  threads = pipeline.TrainBatches(split, task="classification", options=options,
                                  batch_size=4, seed=3)
  assert any(flip for step in range(1, 4) for _, _, flip in threads.plan(step))
  for offset, batch in enumerate(_take(grain_loader.iterate(threads, 1, 0), 3)):
    _assert_batches_equal(batch, threads.batch(1 + offset))


def test_training_batches_come_from_the_configured_loader(train_split, pose_options):
  config = test_config.get_config()
  config.task, config.batch_size, config.seed = "pose", 3, 5
  run = types.SimpleNamespace(config=config, train_split=train_split, options=pose_options)
  config.input_pipeline = "threads"
  want = _take(experiment.training_batches(run, 2), 2)
  config.input_pipeline, config.input_workers = "grain", 0
  for got, batch in zip(_take(experiment.training_batches(run, 2), 2), want, strict=True):
    _assert_batches_equal(got, batch)
  assert config_schema.choices("input_pipeline") == experiment.INPUT_PIPELINES
  assert config_schema.BY_NAME["input_workers"].kind == config_schema.RUNTIME
  assert config_schema.BY_NAME["input_pipeline"].kind == config_schema.RUNTIME


@pytest.mark.parametrize("key, value, expected", [
    ("input_pipeline", "processes", "one of ('threads', 'grain')"),
    ("input_pipeline", "", "one of ('threads', 'grain')"),
    ("input_workers", -2, "an integer >= -1"),
    ("input_workers", 1.5, "an integer >= -1"),
    ("input_workers", True, "an integer >= -1")])
def test_bad_loader_keys_are_one_line(key, value, expected):
  # A config file's value as it is (a ConfigDict would convert a float to an int key's type).
  config = ml_collections.ConfigDict({**test_config.get_config().to_dict(), key: value})
  with pytest.raises(LsattnError) as error:
    config_checks.check_config(config)
  assert str(error.value) == f"config.{key} = {value!r}: expected {expected}"


def test_grain_workers_refused_or_chosen_by_cores(train_split, pose_options, monkeypatch):
  batches = _train(train_split, pose_options)
  for workers in (-1, 2.0, None):
    with pytest.raises(LsattnError) as error:
      grain_loader.iterate(batches, 0, workers)
    assert str(error.value) == f"grain workers = {workers!r}: expected an integer >= 0"
  for cores, workers in ((1, 1), (2, 1), (16, 15)):
    monkeypatch.setattr(grain_loader.os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert grain_loader.automatic_workers() == workers


# ---------------------------------------------------------------- preprocess


def test_preprocess_mean_subtraction_of_constant_image():
  options = pipeline.ImageOptions(resize_size=(32, 48), image_size=24,
                                  channel_mean=(100.5, 20.25, 3.0))
  for shape in ((32, 48, 3), (20, 30, 3)):  # Stored size and a resized one.
    out = pipeline.preprocess(np.full(shape, 77, np.uint8), options, offset=None)
    assert out.dtype == np.float32 and out.shape == (24, 24, 3)
    np.testing.assert_allclose(out, np.broadcast_to([-23.5, 56.75, 74.0], out.shape))


def test_preprocess_centre_crop_and_explicit_offset():
  rows, columns = np.mgrid[0:32, 0:48]
  image = np.stack([rows, columns, np.full_like(rows, 9)], axis=-1).astype(np.uint8)
  options = pipeline.ImageOptions(resize_size=(32, 48), image_size=24, channel_mean=(1, 2, 3))
  centre = pipeline.preprocess(image, options, offset=None)
  np.testing.assert_array_equal(centre[0, 0], [4 - 1, 12 - 2, 9 - 3])  # ((32-24)/2, (48-24)/2)
  np.testing.assert_array_equal(centre, image[4:28, 12:36] - np.float32([1, 2, 3]))
  moved = pipeline.preprocess(image, options, offset=(1, 20), flip=True)
  np.testing.assert_array_equal(moved, image[1:25, 20:44][:, ::-1] - np.float32([1, 2, 3]))


def test_preprocess_resizes_when_stored_size_differs():
  image = np.zeros((16, 24, 3), np.uint8)
  image[:, :12] = (200, 0, 0)
  image[:, 12:] = (0, 0, 200)
  options = pipeline.ImageOptions(resize_size=(32, 48), image_size=32, channel_mean=(0, 0, 0))
  out = pipeline.preprocess(image, options, offset=None)  # Columns 8..39 of the 48.
  assert out.shape == (32, 32, 3)
  np.testing.assert_allclose(out[:, :12], np.broadcast_to([200, 0, 0], (32, 12, 3)))
  np.testing.assert_allclose(out[:, -12:], np.broadcast_to([0, 0, 200], (32, 12, 3)))


@pytest.mark.parametrize("shape", [(32, 48, 4), (32, 48, 1), (32, 48)],
                         ids=["rgba", "one-channel", "grey-2d"])
def test_preprocess_refuses_non_rgb(shape):
  options = pipeline.ImageOptions(resize_size=(32, 48), image_size=24, channel_mean=(0, 0, 0))
  with pytest.raises(LsattnError, match=r"RGB image \[H, W, 3\]"):
    pipeline.preprocess(np.zeros(shape, np.uint8), options, offset=None)


@pytest.mark.parametrize("image_size", [33, 0, -1])
def test_image_options_refuse_crop_not_inside_resize(image_size):
  with pytest.raises(LsattnError, match=f"image_size={image_size}"):
    pipeline.ImageOptions(resize_size=(32, 48), image_size=image_size, channel_mean=(0, 0, 0))
  assert pipeline.ImageOptions(resize_size=(32, 48), image_size=32,
                               channel_mean=(0, 0, 0)).image_size == 32


# ---------------------------------------------------------------- evaluation


def test_eval_batches_cover_each_example_once_with_padded_last_batch(pose_builder,
                                                                     pose_options):
  split = pipeline.Split(pose_builder, "test")
  assert len(split) == 5
  batches = list(pipeline.eval_batches(split, task="pose", options=pose_options, batch_size=2))
  assert len(batches) == 3
  for batch in batches:
    assert batch["mask"].dtype == bool and batch["index"].dtype == np.int32
    assert batch["image"].shape == (2, 48, 48, 3)
    assert np.all((0 <= batch["index"]) & (batch["index"] < 5))
    for row, index in enumerate(batch["index"]):
      want = pipeline.preprocess(split.image(index), pose_options, offset=None)
      np.testing.assert_array_equal(batch["image"][row], want)
      np.testing.assert_array_equal(batch["position"][row], split.labels["position"][index])
  np.testing.assert_array_equal(batches[-1]["mask"], [True, False])
  assert all(batch["mask"].all() for batch in batches[:-1])
  covered = np.concatenate([batch["index"][batch["mask"]] for batch in batches])
  np.testing.assert_array_equal(covered, np.arange(5))
  test_examples = sorted(int(x) for x in split.labels["position"][:, 0])
  assert test_examples == list(range(7, 12))

  second_rows = list(pipeline.eval_batches(split, task="pose", options=pose_options,
                                           batch_size=2, rows=slice(1, 2)))
  for part, whole in zip(second_rows, batches, strict=True):
    _assert_batches_equal(part, {key: value[1:2] for key, value in whole.items()})


def test_eval_batches_classification_labels(class_builder):
  split = pipeline.Split(class_builder, "test")
  options = pipeline.ImageOptions(**CLASS_OPTIONS, channel_mean=(0, 0, 0))
  (batch,) = pipeline.eval_batches(split, task="classification", options=options, batch_size=3)
  assert batch["label"].dtype == np.int32
  np.testing.assert_array_equal(batch["mask"], [True, True, False])
  names = split.labels["image_name"][batch["index"][:2]]
  expected = {"kitchen/e.jpg": 37, "bar/f.jpg": 4}
  np.testing.assert_array_equal(batch["label"][:2], [expected[name] for name in names])


# ---------------------------------------------------------------- Split


def test_split_subset_keeps_labels_aligned(train_split, class_builder):
  positions = [5, 0, 3]
  subset = train_split.subset(positions)
  assert len(subset) == 3
  np.testing.assert_array_equal(subset.indices, train_split.indices[positions])
  for key, values in train_split.labels.items():
    np.testing.assert_array_equal(subset.labels[key], values[positions], err_msg=key)
  for new, old in enumerate(positions):
    np.testing.assert_array_equal(subset.image(new), train_split.image(old))
    red = subset.image(new)[..., 0].mean()
    assert abs(red - _red(int(subset.labels["position"][new, 0]))) < RED_TOLERANCE
  nested = subset.subset([2, 0])
  np.testing.assert_array_equal(nested.indices, train_split.indices[[3, 5]])
  np.testing.assert_array_equal(nested.labels["position"], train_split.labels["position"][[3, 5]])

  classes = pipeline.Split(class_builder, "train")
  expected = {"bar/a.jpg": 4, "bar/b.jpg": 4, "kitchen/c.jpg": 37, "kitchen/d.jpg": 37}
  picked = classes.subset([3, 1])
  np.testing.assert_array_equal(picked.labels["label"],
                                [expected[name] for name in picked.labels["image_name"]])
  np.testing.assert_array_equal(picked.image(0), classes.image(3))
