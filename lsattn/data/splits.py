"""Held-out splits carved honestly from sequences of frames.

Neighbouring video frames are nearly identical, so a held-out set of random
frames would sit next to training frames and flatter the model. Both
functions below hold out whole sequences, or one separated final block.

Validation (``validation_split``), with ``validation_split='auto'``:

* pose data with two or more training sequences: the last sequence (by
  name) is held out whole;
* pose data with one sequence: the final 15% of its frames (by name) are
  held out, and the 5% before them are dropped so no validation frame is
  adjacent to a training frame;
* classification (independent photos): every 10th example.

``'none'`` keeps all of the training split for training. The test split is
never touched: it is evaluated once, at the end.

Test split of an own scene without split information (``holdout_split``,
used by the ``own_scene`` builder): the last sequence (by name) if there are
two or more, otherwise the final 20% of the frames (by name) with the 5%
before them dropped.

Frames are ordered by name with digit runs compared as numbers
(``frame9.jpg`` before ``frame10.jpg``), so unpadded frame numbers keep
their time order.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from lsattn.errors import LsattnError

MODES = ("none", "auto")
BLOCK_FRACTION = 0.15
GAP_FRACTION = 0.05
TEST_BLOCK_FRACTION = 0.20
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
  """Sort key of a frame name: digit runs compare as numbers ('f9' < 'f10')."""
  return tuple((0, int(part), part) if part.isdigit() else (1, 0, part)
               for part in _DIGITS.split(str(name)) if part)


def frame_order(names: Sequence[str]) -> np.ndarray:
  """Positions of `names` in natural order (`natural_key`); [count] int64."""
  keys = [natural_key(name) for name in names]
  return np.asarray(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)


def _final_block(order: np.ndarray, block_fraction: float, gap_fraction: float,
                 what: str, hint: str) -> tuple[np.ndarray, np.ndarray]:
  """(kept, held out): the last block of `order`, separated by a dropped gap."""
  count = len(order)
  block = max(1, int(round(block_fraction * count)))
  gap = max(1, int(round(gap_fraction * count)))
  if count - block - gap < 1:
    raise LsattnError(f"{what}: {count} frames in one sequence are too few to hold out a "
                      f"separated block (needs at least {block + gap + 1}); {hint}")
  return np.sort(order[:count - block - gap]), np.sort(order[count - block:])


def _by_sequence(sequences, names, count: int, block_fraction: float, what: str, hint: str):
  everything = np.arange(count)
  sequences = np.asarray(sequences)
  distinct = sorted(set(sequences.tolist()))
  if len(distinct) >= 2:
    held_out = sequences == distinct[-1]
    return everything[~held_out], everything[held_out]
  order = frame_order(names) if names is not None else everything
  return _final_block(order, block_fraction, GAP_FRACTION, what, hint)


def validation_split(sequences: Sequence[str] | None, count: int, mode: str,
                     names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(train positions, validation positions) within a split of `count` examples.

  Args:
    sequences: per-example sequence name (pose data) or None (classification).
    count: number of examples.
    mode: 'none' or 'auto' (module docstring).
    names: per-example image names, ordering frames within a sequence
      (defaults to the given order).
  """
  everything = np.arange(count)
  if mode == "none":
    return everything, np.zeros(0, np.int64)
  if mode != "auto":
    raise LsattnError(f"config.validation_split = {mode!r}: expected one of {MODES}")
  if sequences is None:
    is_validation = everything % 10 == 9
    return everything[~is_validation], everything[is_validation]
  return _by_sequence(sequences, names, count, BLOCK_FRACTION, "validation_split='auto'",
                      "use validation_split='none'")


def holdout_split(sequences: Sequence[str], names: Sequence[str]
                  ) -> tuple[np.ndarray, np.ndarray]:
  """(train positions, test positions) of a scene that comes without a split.

  The last sequence (by name) is the test split if there are two or more;
  otherwise the final 20% of the frames (natural name order) are, and the 5%
  before them are in neither split.

  Args:
    sequences: [count] sequence name per example.
    names: [count] image name per example (orders the frames).
  """
  if len(sequences) != len(names):
    raise ValueError(f"{len(sequences)} sequences but {len(names)} names")
  return _by_sequence(sequences, names, len(names), TEST_BLOCK_FRACTION,
                      "automatic test split", "add images, or give poses.csv a 'split' column")
