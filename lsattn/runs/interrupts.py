"""Ctrl-C and SIGTERM outside the training loop: one line, never swallowed.

Inside the loop a signal is a stop request (`experiment._StopRequest`: the
step finishes and a checkpoint is saved). Anywhere else (building the dataset,
restoring, evaluating, exporting) `stopping_on_signals` makes SIGINT and
SIGTERM raise `Interrupted` at once. It derives from BaseException, so no
library's ``except Exception`` takes it for an error of its own, and what is
being written is cleaned up by the writers' own handlers (`lsattn.runs.atomic`, a
failed build's `datasets._restored_on_failure`).

Python runs a signal handler at the next bytecode of the main thread, which
may be inside a garbage-collector callback whose exceptions Python prints and
ignores ("Exception ignored in ..."). The signal is therefore also recorded,
and the block fails when it ends even if the exception itself was swallowed.
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
  """What the process is doing, for the message (`stopping_on_signals` yields it)."""

  def __init__(self, doing: str, advice: str):
    self.doing, self.advice = doing, advice
    self.signal: str | None = None

  def set(self, doing: str, advice: str | None = None) -> None:
    self.doing = doing
    if advice is not None:
      self.advice = advice

  def handle(self, signum, frame) -> None:
    self.signal = signal.Signals(signum).name
    raise Interrupted(self.signal)


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
  try:
    yield stage
  except BaseException:
    if stage.signal is None:
      raise
    # Interrupted, or what a library made of it: reported below as the signal.
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)
  if stage.signal is not None:
    raise LsattnError(f"stopped by {stage.signal} during {stage.doing}; nothing was half-"
                      f"written. {stage.advice}")
