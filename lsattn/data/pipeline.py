"""Input pipeline: built dataset -> numpy batches (paper 4.1, supplementary C).

Training batches are a pure function of ``(seed, step)``: the example order
of epoch e is ``permutation(seed, e)`` and each example's crop and flip come
from ``(seed, e, position)``. So a run resumed at step s reads exactly the
batches an uninterrupted run would, and each process of a multi-host run
reads only its own rows. Images are decoded and cropped by a small thread
pool, a few batches ahead of the train step (``input_pipeline='threads'``);
`grain_loader` makes the same batches in worker processes
(``input_pipeline='grain'``).

Steps: decode (stored at 256x455 or 256x256) -> resize to ``resize_size`` if
different -> float32 minus the per-channel mean -> random ``image_size``
square crop and (classification only) random horizontal flip for training;
centre crop for evaluation.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
from typing import Iterator, Sequence

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from lsattn.errors import LsattnError


@dataclasses.dataclass(frozen=True)
class ImageOptions:
  """How images become model inputs.

  Attributes:
    resize_size: (H, W) after resizing, before cropping.
    image_size: side of the square crop.
    channel_mean: RGB mean (0-255) subtracted from every pixel.
    random_flip: random horizontal flips in training (classification only:
      a flip changes a camera pose).
  """
  resize_size: tuple[int, int]
  image_size: int
  channel_mean: tuple[float, float, float]
  random_flip: bool = False

  def __post_init__(self):
    height, width = self.resize_size
    if not 0 < self.image_size <= min(height, width):
      raise LsattnError(f"image_size={self.image_size} must be positive and fit in "
                        f"resize_size={tuple(self.resize_size)}")


class Split:
  """Random access to one split of a built dataset, with labels cached.

  Attributes:
    source: the tfds data source (decodes images on access).
    indices: the examples of this split in the source (a validation split
      carved from 'train' uses a subset).
    labels: per-example numpy arrays without images ('position',
      'orientation', 'sequence', 'image_name' or 'label', ...; the splits
      of several scenes joined by `concatenate` add 'scene').
    scene_names: () for one dataset's split; the scenes of a `concatenate`d
      one (label 'scene' k is scene_names[k]).
  """

  scene_names: tuple[str, ...] = ()

  def __init__(self, builder: tfds.core.DatasetBuilder, split: str,
               indices: Sequence[int] | None = None):
    self.name = split
    self.source = builder.as_data_source(split)
    light = builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
    every = range(len(light)) if indices is None else indices
    self.indices = np.asarray(list(every), dtype=np.int64)
    if self.indices.size == 0:
      raise LsattnError(f"split {split!r} of {builder.name}/{builder.builder_config.name} "
                        f"has no examples")
    rows = [light[int(i)] for i in self.indices]
    self.labels = {key: _stack([row[key] for row in rows]) for key in rows[0] if key != "image"}
    self._sources = (self.source,)
    self._source_of = np.zeros(len(self.indices), np.int64)

  def __len__(self) -> int:
    return len(self.indices)

  def subset(self, positions: Sequence[int]) -> "Split":
    """The same split restricted to `positions` (0..len-1)."""
    new = object.__new__(Split)
    new.name, new.source, new.scene_names = self.name, self.source, self.scene_names
    positions = np.asarray(positions, np.int64)
    new.indices = self.indices[positions]
    new.labels = {key: value[positions] for key, value in self.labels.items()}
    new._sources, new._source_of = self._sources, self._source_of[positions]
    return new

  def image(self, position: int) -> np.ndarray:
    """uint8 [H, W, 3] of the example at `position`."""
    source = self._sources[int(self._source_of[position])]
    return source[int(self.indices[position])]["image"]


def concatenate(splits: Sequence[Split], scene_names: Sequence[str]) -> Split:
  """One split of several scenes' splits (scene k = splits[k]), in that order.

  Its labels are theirs joined, plus 'scene' (int32, k); 'image_name' and
  'sequence' are prefixed with the scene's name (``'chess/seq-03/...'``,
  as the files lie under a 7-Scenes download), so every image has its own
  name. Images are read from each scene's own build.
  """
  if len(splits) != len(scene_names) or not splits:
    raise ValueError("one split per scene")
  new = object.__new__(Split)
  new.name, new.source, new.scene_names = splits[0].name, splits[0].source, tuple(scene_names)
  keys = list(splits[0].labels)
  labels = {}
  for key in keys:
    values = [split.labels[key] for split in splits]
    if key in ("image_name", "sequence"):
      values = [np.asarray([f"{scene}/{value}" for value in column], dtype=object)
                for scene, column in zip(scene_names, values)]
    labels[key] = np.concatenate(values)
  labels["scene"] = np.concatenate([np.full(len(split), k, np.int32)
                                    for k, split in enumerate(splits)])
  new.labels = labels
  new.indices = np.concatenate([split.indices for split in splits])
  sources, source_of = [], []
  for split in splits:
    source_of.append(split._source_of + len(sources))
    sources.extend(split._sources)
  new._sources, new._source_of = tuple(sources), np.concatenate(source_of)
  return new


def _stack(values):
  if isinstance(values[0], bytes):
    return np.asarray([v.decode("utf-8") for v in values], dtype=object)
  return np.stack([np.asarray(v) for v in values])


def preprocess(image: np.ndarray, options: ImageOptions, *, offset: tuple[int, int] | None,
               flip: bool = False) -> np.ndarray:
  """uint8 [H, W, 3] -> float32 [S, S, 3] mean-subtracted crop.

  Args:
    image: decoded image.
    options: sizes and mean.
    offset: (top, left) of the crop; None for the centre crop.
    flip: mirror horizontally.
  """
  return subtract_mean(crop(image, options, offset=offset, flip=flip), options)


def crop(image: np.ndarray, options: ImageOptions, *, offset: tuple[int, int] | None,
         flip: bool = False) -> np.ndarray:
  """uint8 [H, W, 3] -> uint8 [S, S, 3]: resized to `options.resize_size`, cropped at
  `offset` (None: the centre), mirrored if `flip` (`preprocess` before the mean)."""
  height, width = options.resize_size
  if image.ndim != 3 or image.shape[-1] != 3:
    raise LsattnError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
  if image.shape[:2] != (height, width):
    image = np.asarray(PIL.Image.fromarray(image).resize((width, height), PIL.Image.BILINEAR))
  size = options.image_size
  if offset is None:
    offset = ((height - size) // 2, (width - size) // 2)
  top, left = offset
  cropped = image[top:top + size, left:left + size]
  if flip:
    cropped = cropped[:, ::-1]
  return cropped


def subtract_mean(crops: np.ndarray, options: ImageOptions) -> np.ndarray:
  """uint8 [..., S, S, 3] crops -> float32 minus the channel mean (elementwise, so a batch
  of crops gives the rows `preprocess` gives one by one)."""
  return crops.astype(np.float32) - np.asarray(options.channel_mean, np.float32)


def _check_task(task: str) -> None:
  if task not in ("pose", "classification"):
    raise LsattnError(f"task must be 'pose' or 'classification', got {task!r}")


def _targets(split: Split, positions: np.ndarray, task: str) -> dict:
  scene = {}
  if "scene" in split.labels:  # several scenes (`concatenate`): the true scene's head is trained
    scene = {"scene": split.labels["scene"][positions].astype(np.int32)}
  if task == "pose":
    return {"position": split.labels["position"][positions].astype(np.float32),
            "orientation": split.labels["orientation"][positions].astype(np.float32), **scene}
  return {"label": split.labels["label"][positions].astype(np.int32)}


def check_flip(task: str, random_flip: bool) -> None:
  """Raises LsattnError for flips in pose regression (a mirrored image has another pose)."""
  if task == "pose" and random_flip:
    raise LsattnError("random_flip=True with task 'pose': a mirrored image has another pose")


SCENE_SAMPLINGS = ("equal", "by_size")


class TrainBatches:
  """Deterministic, resumable training batches (this process's rows).

  A split of several scenes (`concatenate`) is sampled by `scene_sampling`:
  'by_size' reads it as one split (epochs over all its images, so a scene
  appears in proportion to its training images); 'equal' gives global batch
  row g (= step * batch_size + row) to scene g mod S, and that scene's
  (g // S)-th image in its own epochs (a permutation per scene and epoch),
  so every scene gets the same number of rows, a small scene's images
  repeating more often. MS-Transformer's ``equalize_scenes`` balances by
  repeating the smaller scenes' images up to the largest's count; ours is
  the same proportion without a longer epoch. Either way a batch is a pure
  function of (seed, step). One scene: both are the plain epochs.
  """

  def __init__(self, split: Split, *, task: str, options: ImageOptions, batch_size: int,
               seed: int, rows: slice | None = None, num_threads: int = 2, prefetch: int = 2,
               scene_sampling: str = "equal"):
    _check_task(task)
    check_flip(task, options.random_flip)
    if scene_sampling not in SCENE_SAMPLINGS:
      raise LsattnError(f"scene_sampling must be one of {SCENE_SAMPLINGS}, "
                        f"got {scene_sampling!r}")
    self.split, self.task, self.options = split, task, options
    self.batch_size, self.seed = batch_size, seed
    self.rows = rows or slice(0, batch_size)
    self.num_threads, self.prefetch = num_threads, prefetch
    self._permutations: dict[tuple, np.ndarray] = {}
    self._scene_members = None
    if scene_sampling == "equal" and len(getattr(split, "scene_names", ())) > 1:
      scene = split.labels["scene"]
      self._scene_members = [np.flatnonzero(scene == k) for k in range(len(split.scene_names))]
      empty = [name for name, members in zip(split.scene_names, self._scene_members)
               if not len(members)]
      if empty:
        raise LsattnError(f"scene {empty[0]!r} has no training images")

  def _permutation(self, epoch: int, scene: int | None = None) -> np.ndarray:
    # Loader threads share the cache: never read back a key another may clear.
    key = (epoch, scene)
    permutation = self._permutations.get(key)
    if permutation is None:
      if len(self._permutations) > 4 * (1 + len(self._scene_members or ())):
        self._permutations.clear()
      if scene is None:
        permutation = np.random.default_rng([self.seed, epoch]).permutation(len(self.split))
      else:
        permutation = np.random.default_rng([self.seed, epoch, 2, scene]).permutation(
            len(self._scene_members[scene]))
      self._permutations[key] = permutation
    return permutation

  @property
  def process_rows(self) -> range:
    """This process's rows of a global batch."""
    return range(self.batch_size)[self.rows]

  def plan_row(self, step: int, row: int) -> tuple[int, tuple[int, int], bool]:
    """(example position, crop offset, flip) of row `row` of the global batch of `step`."""
    count = len(self.split)
    height, width = self.options.resize_size
    size = self.options.image_size
    global_position = step * self.batch_size + row
    if self._scene_members is None:
      epoch, within = divmod(global_position, count)
      rng = np.random.default_rng([self.seed, epoch, within, 1])
      position = int(self._permutation(epoch)[within])
    else:  # several scenes, 'equal': the scenes take the global batch's rows in turn
      scene, turn = (global_position % len(self._scene_members),
                     global_position // len(self._scene_members))
      members = self._scene_members[scene]
      epoch, within = divmod(turn, len(members))
      rng = np.random.default_rng([self.seed, epoch, within, 1, scene])
      position = int(members[self._permutation(epoch, scene)[within]])
    offset = (int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1)))
    flip = bool(self.options.random_flip and rng.integers(0, 2))
    return position, offset, flip

  def plan(self, step: int) -> list[tuple[int, tuple[int, int], bool]]:
    """(example position, crop offset, flip) for this process's rows of `step`."""
    return [self.plan_row(step, row) for row in self.process_rows]

  def load(self, item: tuple[int, tuple[int, int], bool]) -> np.ndarray:
    """float32 [S, S, 3]: the image of a `plan` item, cropped (and flipped) as planned."""
    return subtract_mean(self.load_crop(item), self.options)

  def load_crop(self, item: tuple[int, tuple[int, int], bool]) -> np.ndarray:
    """uint8 [S, S, 3]: `load` before the mean is subtracted."""
    position, offset, flip = item
    return crop(self.split.image(position), self.options, offset=offset, flip=flip)

  def targets(self, positions: np.ndarray) -> dict:
    """The batch's targets of the examples at `positions`."""
    return _targets(self.split, positions, self.task)

  def batch(self, step: int, pool: concurrent.futures.Executor | None = None) -> dict:
    plan = self.plan(step)
    mapper = pool.map if pool is not None else map
    images = np.stack(list(mapper(self.load, plan)))
    positions = np.asarray([item[0] for item in plan])
    return {"image": images, **self.targets(positions)}

  def iterate(self, start_step: int) -> Iterator[dict]:
    """Batches for steps start_step, start_step + 1, ... (prefetched)."""
    # Batches are assembled on their own threads: a batch waiting in `pool` for
    # image loads queued behind it in the same pool would deadlock.
    prefetch = max(self.prefetch, 1)
    with concurrent.futures.ThreadPoolExecutor(self.num_threads) as pool, \
        concurrent.futures.ThreadPoolExecutor(prefetch) as assembler:
      pending = collections.deque()
      step = start_step
      while True:
        while len(pending) < prefetch:
          pending.append(assembler.submit(self.batch, step + len(pending), pool))
        yield pending.popleft().result()
        step += 1


def eval_batches(split: Split, *, task: str, options: ImageOptions, batch_size: int,
                 rows: slice | None = None, num_threads: int = 2) -> Iterator[dict]:
  """Every example once, centre crops, in order; the last batch padded.

  Batches add 'mask' (bool [B], False on padding) and 'index' (int32 [B],
  position in the split; padding repeats the last example).
  """
  _check_task(task)
  rows = rows or slice(0, batch_size)
  count = len(split)
  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
    load = lambda position: preprocess(split.image(position), options, offset=None)
    for start in range(0, count, batch_size):
      index = np.arange(start, start + batch_size)[rows]
      mask = index < count
      index = np.minimum(index, count - 1)
      images = np.stack(list(pool.map(load, index)))
      yield {"image": images, **_targets(split, index, task), "mask": mask,
             "index": index.astype(np.int32)}
