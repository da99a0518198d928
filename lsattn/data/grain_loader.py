"""Training batches made by grain's worker processes (``input_pipeline='grain'``).

The same batches as `pipeline.TrainBatches` (the threads loader), bit for bit:
grain reads the same tfds array_record build at random (the split's
`pipeline.Split.source`, a tfds data source) through a `grain.MapDataset` whose
element i is row i of this process's rows from ``start_step`` on. Each element
follows `TrainBatches.plan_row` (example order of the epoch, crop, flip: a pure
function of seed and step), `TrainBatches.load_crop` decodes and crops it, and
`MapDataset.batch` stacks a step's rows before the targets are added
(`TrainBatches.targets`); the workers send uint8 crops, and this process
subtracts the mean (`pipeline.subtract_mean`). ``mp_prefetch`` hands whole batches to
``workers`` processes (worker w makes batches w, w + workers, ...) and
interleaves them back in order, so the batch of a step does not depend on the
number of workers; with 0 workers grain makes them in this process. Inside
each process, ``TrainBatches.num_threads`` threads read ``prefetch`` batches
ahead.

Workers are started with ``spawn``: each imports lsattn (and so jax) once,
seconds before its first batch (benchmarks/results/2026-12-06-grain.md), and
the program's main module: a script that trains must guard its entry with
``if __name__ == "__main__":``, as train.py and the lsattn-* commands do.
"""

from __future__ import annotations

import functools
import os
from typing import Iterator

from absl import flags
import grain
import numpy as np

from lsattn.data import pipeline
from lsattn.errors import LsattnError

# grain's MapDataset has a length; no run trains for this many steps.
_END_STEP = 2**40


def automatic_workers() -> int:
  """``input_workers=-1``: one worker process per core this process may use, less one
  for the process that feeds the train step (at least one)."""
  return max(1, len(os.sched_getaffinity(0)) - 1)


def _example(batches: pipeline.TrainBatches, rows: range, index: int) -> dict:
  step, row = divmod(index, len(rows))
  item = batches.plan_row(step, rows[row])
  return {"image": batches.load_crop(item), "example": np.int64(item[0])}


def _with_targets(batches: pipeline.TrainBatches, batch: dict) -> dict:
  return {"image": batch["image"], **batches.targets(batch["example"])}


def _model_input(options: pipeline.ImageOptions, batch: dict) -> dict:
  return {**batch, "image": pipeline.subtract_mean(batch["image"], options)}


def dataset(batches: pipeline.TrainBatches, start_step: int, workers: int) -> grain.IterDataset:
  """This process's batches of steps start_step, start_step + 1, ... as a grain dataset.

  Args:
    batches: what to load (split, options, seed, batch size, this process's rows,
      threads and prefetch per process).
    start_step: the first batch's step.
    workers: grain's worker processes; 0 = make the batches in this process.
  """
  if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
    raise LsattnError(f"grain workers = {workers!r}: expected an integer >= 0")
  if workers and not flags.FLAGS.is_parsed():
    # grain's workers read its absl flags: their defaults in a program that parsed none
    # (the command lines parse theirs; a notebook, a test or a benchmark does not).
    flags.FLAGS.mark_as_parsed()
  rows = batches.process_rows
  examples = grain.MapDataset.range(start_step * len(rows), _END_STEP * len(rows))
  steps = (examples.map(functools.partial(_example, batches, rows))
           .batch(len(rows), drop_remainder=True)
           .map(functools.partial(_with_targets, batches)))
  read = grain.ReadOptions(num_threads=max(batches.num_threads, 1),
                           prefetch_buffer_size=max(batches.prefetch, 1))
  # Workers send uint8 crops, a quarter of the float32 bytes; this process subtracts
  # the mean (elementwise: the same floats as `TrainBatches.load`).
  return (steps.to_iter_dataset(read)
          .mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
          .map(functools.partial(_model_input, batches.options)))


def iterate(batches: pipeline.TrainBatches, start_step: int, workers: int) -> Iterator[dict]:
  """Batches for steps start_step, start_step + 1, ...; closing the iterator stops the
  workers."""
  return _closing(iter(dataset(batches, start_step, workers)))


def _closing(iterator: grain.DatasetIterator) -> Iterator[dict]:
  try:
    while True:
      yield next(iterator)
  finally:
    iterator.close()
