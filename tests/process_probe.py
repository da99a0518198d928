"""train.py / eval.py with what each process reads recorded, for
tests/test_multiprocess.py (production code reads no test variables: this
launcher wraps library functions, then runs the script).

  python tests/process_probe.py train.py|eval.py <the script's flags>

* ``LSATTN_TEST_READS=<file>``: appended to <file>, one line each: every
  image read from the dataset, ``read <split> <example index>``
  (`pipeline.Split.image`, the one place images are read), ``figure_read``
  instead of ``read`` while `evaluation.write_outputs` draws figures; every training
  batch this process assembles, ``train_batch <step> <example indices>``
  (before its images are read); every evaluation batch,
  ``eval_batch <split> <split size> <batch size> <positions> / <example indices>``.
* ``LSATTN_TEST_PAUSE_BEFORE_STEP=<step>``: before the training batch of that
  (0-based) step, print ``PAUSE_LINE`` and sleep (600 s), so a test can kill
  this process while its peers wait for it in the next collective.
"""

from __future__ import annotations

import os
import pathlib
import runpy
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
READS = "LSATTN_TEST_READS"
PAUSE_BEFORE_STEP = "LSATTN_TEST_PAUSE_BEFORE_STEP"
PAUSE_LINE = f"{PAUSE_BEFORE_STEP}: pausing"


def _recorder(path: str):
  lock = threading.Lock()

  def record(line: str) -> None:
    with lock, open(path, "a") as handle:  # loader threads read concurrently
      handle.write(line + "\n")

  return record


def install() -> None:
  from lsattn import experiment
  from lsattn.evaluation import loop as evaluation
  from lsattn.data import pipeline
  if os.environ.get(READS):
    record = _recorder(os.environ[READS])
    image = pipeline.Split.image
    writing = threading.Event()  # set while evaluation.write_outputs runs (figures)

    def recorded_image(self, position):
      kind = "figure_read" if writing.is_set() else "read"
      record(f"{kind} {self.name} {int(self.indices[position])}")
      return image(self, position)

    write_outputs = evaluation.write_outputs

    def recorded_write_outputs(*args, **kwargs):
      writing.set()
      try:
        return write_outputs(*args, **kwargs)
      finally:
        writing.clear()

    evaluation.write_outputs = recorded_write_outputs

    pipeline.Split.image = recorded_image
    batch = pipeline.TrainBatches.batch

    def recorded_batch(self, step, pool=None):
      indices = [int(self.split.indices[item[0]]) for item in self.plan(step)]
      record(f"train_batch {step} {' '.join(map(str, indices))}")
      return batch(self, step, pool)

    pipeline.TrainBatches.batch = recorded_batch
    eval_batches = pipeline.eval_batches

    def recorded_eval_batches(split, **kwargs):
      for loaded in eval_batches(split, **kwargs):
        indices = [int(split.indices[i]) for i in loaded["index"]]
        record(f"eval_batch {split.name} {len(split)} {kwargs['batch_size']} "
               f"{' '.join(map(str, loaded['index']))} / {' '.join(map(str, indices))}")
        yield loaded

    pipeline.eval_batches = recorded_eval_batches
  if os.environ.get(PAUSE_BEFORE_STEP):
    pause_step = int(os.environ[PAUSE_BEFORE_STEP])
    training_batches = experiment.training_batches

    def pausing_batches(run, start_step):
      for step, batch in enumerate(training_batches(run, start_step), start=start_step):
        if step == pause_step:
          print(PAUSE_LINE, file=sys.stderr, flush=True)
          time.sleep(600)
        yield batch

    experiment.training_batches = pausing_batches


if __name__ == "__main__":
  sys.path.insert(0, str(ROOT))
  install()
  script = str(ROOT / sys.argv[1])
  sys.argv = [script, *sys.argv[2:]]
  runpy.run_path(script, run_name="__main__")
