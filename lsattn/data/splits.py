"""A validation split carved honestly from the training data.

Neighbouring video frames are nearly identical, so a validation set of random
frames would sit next to training frames and flatter the model. With
``validation_split='auto'``:

* pose data with two or more training sequences: the last sequence (by
  name) is held out whole;
* pose data with one sequence: the final 15% of its frames (by name) are
  held out, and the 5% before them are dropped so no validation frame is
  adjacent to a training frame;
* classification (independent photos): every 10th example.

``'none'`` keeps all of the training split for training. The test split is
never touched: it is evaluated once, at the end.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lsattn.errors import LsattnError

MODES = ("none", "auto")
BLOCK_FRACTION = 0.15
GAP_FRACTION = 0.05


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
  sequences = np.asarray(sequences)
  distinct = sorted(set(sequences.tolist()))
  if len(distinct) >= 2:
    held_out = sequences == distinct[-1]
    return everything[~held_out], everything[held_out]
  order = np.argsort(np.asarray(names if names is not None else everything), kind="stable")
  block = max(1, int(round(BLOCK_FRACTION * count)))
  gap = max(1, int(round(GAP_FRACTION * count)))
  if count - block - gap < 1:
    raise LsattnError(f"validation_split='auto': {count} training frames in one sequence are "
                      f"too few to hold out a separated block; use validation_split='none'")
  return np.sort(order[:count - block - gap]), np.sort(order[count - block:])
