"""One writer per run folder: ``<workdir>/.lsattn-lock``.

train.py holds it for the whole run, eval.py and export.py while they write
into the folder; readers (predict.py, export.py writing elsewhere) take none.
A second writer is refused at once, before it writes anything, with one line
naming the holder (host, pid, since when). The lock is also the check that the
folder is writable: a read-only run folder is refused here, before any compute.

Why `fcntl.flock` and a holder file rather than the `filelock` package (a
test dependency): the kernel releases a flock when its process dies, however
it dies, so a lock left by a killed process is recognised for certain (no
guessing from a pid that may have been reused), and the holder file says
whose it was. `filelock` would need the same holder file beside it. flock is
per host on some network file systems; a multi-host job takes one lock, in
process 0, and its other processes write only what process 0's run
coordinates (checkpoint shards).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import pathlib
import socket
import sys
from typing import Iterator

from lsattn.errors import LsattnError

LOCK_FILE = ".lsattn-lock"


class Busy(LsattnError):
  """Another live process holds the lock.

  Attributes:
    holder: its lock file's {'host', 'pid', 'since', 'purpose'} ({} when
      unreadable; no 'purpose' when written before lsattn recorded it).
  """

  def __init__(self, message: str, holder: dict):
    super().__init__(message)
    self.holder = holder


def _holder_text(purpose: str) -> str:
  return json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                     "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                     "purpose": purpose})


def _holder(text: str) -> dict:
  try:
    holder = json.loads(text)
  except ValueError:
    return {}
  return holder if isinstance(holder, dict) else {}


def describe_holder(text: str) -> str:
  """'pid 123 on host h since 2026-...' from a lock file's contents."""
  try:
    holder = json.loads(text)
    return f"pid {holder['pid']} on host {holder['host']} since {holder['since']}"
  except (ValueError, KeyError, TypeError):
    return "an unknown process (its lock file is unreadable)"


def _open(lock: pathlib.Path, workdir: pathlib.Path, purpose: str) -> int:
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    return os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
  except OSError as error:
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
      raise LsattnError(f"--workdir={workdir}: cannot write in this run folder "
                        f"({error.strerror}); {purpose} writes there. Make it writable, or "
                        f"use another --workdir.") from None
    raise LsattnError(f"--workdir={workdir}: cannot create the run's lock file {lock} "
                      f"({error.strerror or error})") from None


def _acquire(lock: pathlib.Path, workdir: pathlib.Path, purpose: str) -> int:
  """An open, flocked descriptor of `lock` (the file at that path now, not an unlinked one)."""
  while True:
    handle = _open(lock, workdir, purpose)
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      text = os.pread(handle, 4096, 0).decode("utf-8", "replace")
      os.close(handle)
      raise Busy(f"{workdir} is in use by another writer: {describe_holder(text)} "
                 f"(lock file {lock}). Wait for it to finish, or use another "
                 f"--workdir.", _holder(text)) from None
    # The holder before us may have unlinked the file between our open and flock.
    try:
      same = os.stat(lock).st_ino == os.fstat(handle).st_ino
    except FileNotFoundError:
      same = False
    if same:
      return handle
    os.close(handle)


@contextlib.contextmanager
def holding(workdir: str | pathlib.Path, purpose: str, *, enabled: bool = True
            ) -> Iterator[None]:
  """``with holding(workdir, 'train.py'):`` the block is the folder's only writer.

  Args:
    workdir: the run folder (made if missing).
    purpose: who writes, for the messages ('train.py', 'eval.py', ...).
    enabled: False in the processes of a multi-process job other than 0.

  Raises:
    Busy: another process holds the lock (naming it).
    LsattnError: the folder cannot be written.
  """
  if not enabled:
    yield
    return
  workdir = pathlib.Path(workdir).expanduser()
  lock = workdir / LOCK_FILE
  created = not workdir.exists()
  handle = _acquire(lock, workdir, purpose)
  try:
    left = os.pread(handle, 4096, 0).decode("utf-8", "replace")
    if left.strip():  # its holder ended without removing it (killed): the kernel freed it
      print(f"Taking over the lock {lock} left by {describe_holder(left)}, which has ended.",
            file=sys.stderr)
    try:
      os.ftruncate(handle, 0)
      os.pwrite(handle, _holder_text(purpose).encode(), 0)
      os.fsync(handle)
    except OSError as error:
      if error.errno not in (errno.ENOSPC, errno.EDQUOT):
        raise
      raise LsattnError(f"could not write {lock}: no space left on device in {workdir} "
                        f"({purpose} writes there). Free disk space, then run the same "
                        f"command again.") from None
    yield
  finally:
    # Unlinked before it is unlocked: a waiting opener then finds a new file (`_acquire`).
    with contextlib.suppress(FileNotFoundError):
      os.unlink(lock)
    os.close(handle)
    if created:  # a run that wrote nothing (it failed at its start) leaves no empty folder
      with contextlib.suppress(OSError):
        workdir.rmdir()
