"""Restoring a checkpoint quiets only its own helper threads, and not for ever."""

from __future__ import annotations

import contextlib
import sys
import threading

import pytest

from lsattn.runs import checkpoint


def _fail_in_thread(name: str) -> None:
  thread = threading.Thread(target=lambda: 1 / 0, name=name)
  thread.start()
  thread.join()


@pytest.mark.parametrize("fails", [False, True], ids=["restored", "failed"])
def test_the_hooks_reach_other_threads_after_a_restore(fails):
  seen, unraisable = [], []
  previous = threading.excepthook, sys.unraisablehook
  threading.excepthook = lambda args: seen.append(args.thread.name)
  sys.unraisablehook = lambda args: unraisable.append(str(args.exc_value))
  try:
    with pytest.raises(ValueError) if fails else contextlib.nullcontext():
      with checkpoint._quiet_helper_threads():
        _fail_in_thread("helper")  # a restore's helper thread: silenced
        if fails:
          raise ValueError("damaged checkpoint")
    _fail_in_thread("later")
    for message in ("Event loop is closed", "something else"):
      sys.unraisablehook(type("Args", (), {"exc_value": RuntimeError(message)})())
    assert seen == ["later"]
    expected = ["something else"] if fails else ["Event loop is closed", "something else"]
    assert unraisable == expected
  finally:
    threading.excepthook, sys.unraisablehook = previous
