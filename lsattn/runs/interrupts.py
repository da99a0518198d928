"""Ctrl-C and SIGTERM outside the training loop: one line, never swallowed.

Inside the loop a signal is a stop request (`experiment._StopRequest`: the
step finishes and a checkpoint is saved). Anywhere else `stopping_on_signals`
turns SIGINT and SIGTERM into one `LsattnError` line, in one of two ways:

* at once (building the dataset, restoring, exporting): the handler raises
  `Interrupted`, a BaseException, so no library's ``except Exception`` takes
  it for an error of its own, and what is being written is cleaned up by the
  writers' own handlers (`lsattn.runs.atomic`, a failed build's
  `datasets._restored_on_failure`);
* at safe points (evaluating, predicting; `at_safe_points`): the handler only
  records the signal, and the work stops at its next `safe_point` (between
  batches, before its outputs are written), saying how far it got and what
  was and was not written. A second signal stops at once.

Why safe points: Python runs a signal handler at the next bytecode of the main
thread, which may be inside a callback whose exceptions Python prints and
ignores ("Exception ignored in _xla_gc_callback"): a raising handler let
eval.py run to its end and write its outputs after Ctrl-C. The signal is also
recorded in either way, so the block fails when it ends even if an exception
was swallowed.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

from lsattn.errors import LsattnError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
  """SIGINT or SIGTERM arrived; args[0] is the signal's name."""


class Stage:
  """What the process is doing, for the message (`stopping_on_signals` yields it).

  Attributes:
    doing, advice: the message's parts ('the evaluation', 'Run the same command again.').
    signal: the name of the first signal that arrived, or None.
    unwritten: at safe points, what a stop leaves unwritten ('nothing was written:
      eval/ keeps its previous outputs'); None: the signal raises at once.
    progress: how far the work got when a safe point stopped it.
  """

  def __init__(self, doing: str, advice: str):
    self.doing, self.advice = doing, advice
    self.signal: str | None = None
    self.unwritten: str | None = None
    self.progress: str | None = None

  def set(self, doing: str, advice: str | None = None) -> None:
    self.doing = doing
    if advice is not None:
      self.advice = advice

  def handle(self, signum, frame) -> None:
    first = self.signal is None
    self.signal = signal.Signals(signum).name
    if self.unwritten is None or not first:
      raise Interrupted(self.signal)

  def message(self, finished: bool) -> str:
    """The one line for a stop; `finished`: the block ran to its end after the signal."""
    if self.unwritten is not None and self.progress is not None:
      return (f"stopped by {self.signal} during {self.doing} at a safe point ({self.progress}); "
              f"{self.unwritten}. {self.advice}")
    if self.unwritten is not None and finished:
      # The signal came after the last safe point, while the outputs were written.
      return (f"{self.signal} arrived during {self.doing} after its last safe point: it ran to "
              f"its end and its outputs were written whole")
    # Raised at once, a second signal, or an error before the next safe point.
    return (f"stopped by {self.signal} during {self.doing}; nothing was half-written. "
            f"{self.advice}")


_active: list[Stage] = []  # the stages of the blocks the main thread is in, innermost last


def at_safe_points(unwritten: str) -> None:
  """From here on, the innermost `stopping_on_signals` block stops at its next
  `safe_point` instead of at once.

  Args:
    unwritten: what such a stop leaves unwritten, for the message ('nothing was
      written: eval/ keeps its previous outputs').
  """
  if _active:
    _active[-1].unwritten = unwritten


def safe_point(progress: str) -> None:
  """Stops here when a signal arrived since the block went to safe points.

  Args:
    progress: how far the work got, for the message ('after 3 of 10 test batches').

  Raises:
    Interrupted: a signal is recorded (the block turns it into its one line).
  """
  if _active and _active[-1].signal is not None and _active[-1].unwritten is not None:
    _active[-1].progress = progress
    raise Interrupted(_active[-1].signal)


@contextlib.contextmanager
def stopping_on_signals(doing: str, advice: str) -> Iterator[Stage]:
  """SIGINT/SIGTERM in the block become one `LsattnError`:
  'stopped by SIGINT during <doing>; <advice>'.

  Args:
    doing: what the block does ('the evaluation'); `Stage.set` changes it.
    advice: what the user can do next ('run the same command again').
  """
  stage = Stage(doing, advice)
  if threading.current_thread() is not threading.main_thread():
    yield stage  # only the main thread can set handlers (and receives signals)
    return
  previous = {sig: signal.signal(sig, stage.handle) for sig in SIGNALS}
  _active.append(stage)
  finished = False
  try:
    yield stage
    finished = True
  except BaseException:
    if stage.signal is None:
      raise
    # Interrupted, or what a library made of it: reported below as the signal.
  finally:
    _active.remove(stage)
    for sig, handler in previous.items():
      signal.signal(sig, handler)
  if stage.signal is not None:
    raise LsattnError(stage.message(finished))
