"""train.py with faults injected, for tests/test_reliability.py (production code reads no
test variables: this launcher wraps two named functions, then runs train.py).

  python tests/fault_injection.py <train.py flags>

* ``LSATTN_TEST_PAUSE_IN_SAVE=<step>[:<seconds>]``: the save of ``<step>``
  pauses after its files are written and before orbax renames the folder into
  place (600 s by default), so a test can kill the process in the middle of a
  save. It prints ``PAUSE_LINE`` with the folder when it pauses.
* ``LSATTN_TEST_NAN_STEPS=2,3``: the training batches of those (0-based) steps
  get NaN images, to exercise the non-finite policy end to end.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import runpy
import sys

import numpy as np
import orbax.checkpoint as ocp

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAUSE_IN_SAVE = "LSATTN_TEST_PAUSE_IN_SAVE"
NAN_STEPS = "LSATTN_TEST_NAN_STEPS"
PAUSE_LINE = f"{PAUSE_IN_SAVE}: pausing before finalising"


class PausingTemporaryPath(ocp.path.atomicity.AtomicRenameTemporaryPath):
  """Orbax's default (atomic rename), pausing before the rename of one step."""

  async def finalize(self):
    step, _, seconds = os.environ.get(PAUSE_IN_SAVE, "").partition(":")
    if self.get_final().name == step:
      print(f"{PAUSE_LINE} {self.get()}", file=sys.stderr, flush=True)
      await asyncio.sleep(float(seconds or 600))
    await super().finalize()


def nan_steps() -> frozenset[int]:
  value = os.environ.get(NAN_STEPS, "")
  try:
    return frozenset(int(step) for step in value.split(",") if step.strip())
  except ValueError:
    raise SystemExit(f"{NAN_STEPS}={value!r}: expected comma-separated step numbers") from None


def install() -> None:
  from lsattn import experiment
  from lsattn.runs import checkpoint
  if os.environ.get(PAUSE_IN_SAVE):
    create_manager = checkpoint.create_manager

    def pausing_manager(*args, **kwargs):
      return create_manager(*args, temporary_path_class=PausingTemporaryPath, **kwargs)

    checkpoint.create_manager = pausing_manager
  steps = nan_steps()
  if steps:
    training_batches = experiment.training_batches

    def nan_batches(run, start_step):
      for step, batch in enumerate(training_batches(run, start_step), start=start_step):
        yield dict(batch, image=np.full_like(batch["image"], np.nan)) if step in steps else batch

    experiment.training_batches = nan_batches


if __name__ == "__main__":
  sys.path.insert(0, str(ROOT))
  install()
  sys.argv = [str(ROOT / "train.py"), *sys.argv[1:]]
  runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
