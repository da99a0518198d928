"""Files written whole or not at all: a temporary file in the same folder, renamed.

Every output a user keeps (metrics.json, predictions.csv, predict's CSV or
JSON, figures, config.json, export artefacts) goes through `writing`: a
reader, a failure or Ctrl-C in the middle never sees or leaves half a file,
and the previous file stays intact until the new one is complete. The
rename is atomic only within one file system, hence the same folder.

The file gets the mode a plain ``open(path, 'w')`` would (0666 less the
umask), not ``mkstemp``'s 0600, so a run folder shared with colleagues stays
readable as a whole.

A full disk (or quota) is one `LsattnError` naming the folder, the free space
and what the file needed, and the temporary file is removed. A writer holds an
flock on its temporary file while it writes, so the temporary files that a
killed writer of the same path left (``.<name>.<8 characters>.tmp``, our own
naming) are told apart for certain from one still being written, and removed
by the next write of that path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pathlib
import re
import shutil
import tempfile
from typing import IO, Iterator

from lsattn.errors import LsattnError

_FULL = (errno.ENOSPC, errno.EDQUOT)


def _umask() -> int:
  # The only portable way to read the umask is to set it; set it straight back.
  mask = os.umask(0)
  os.umask(mask)
  return mask


def _temporary_pattern(path: pathlib.Path) -> re.Pattern:
  # mkstemp's names: prefix, 8 characters of [a-z0-9_], suffix.
  return re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}\.tmp")


def clear_leftovers(path: str | os.PathLike) -> list[pathlib.Path]:
  """Removes the temporary files of `path` that killed writers left; returns them.

  Only files named as `writing` names them (``.<name>.<8 characters>.tmp``)
  and not locked: a live writer holds its temporary file's flock, the kernel
  frees it when the writer dies, however it dies.
  """
  path = pathlib.Path(path)
  pattern, removed = _temporary_pattern(path), []
  try:
    candidates = [entry for entry in path.parent.iterdir() if pattern.fullmatch(entry.name)]
  except OSError:
    return removed
  for candidate in candidates:
    try:
      handle = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # gone already, or a link: not ours
      continue
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
      os.unlink(candidate)
      removed.append(candidate)
    except OSError:  # locked: a writer is still at it
      pass
    finally:
      os.close(handle)
  return removed


def _no_space(path: pathlib.Path, written: int, size: int | None) -> LsattnError:
  free = shutil.disk_usage(path.parent).free
  needed = (f"the file needed {describe_size(size)}" if size is not None else
            f"the file needed more than {describe_size(max(written, free))}")
  return LsattnError(f"could not write {path}: no space left on device in {path.parent} "
                     f"({describe_size(free)} free; {needed}). Free disk space, then run the "
                     f"same command again; the previous {path.name}, if any, is intact.")


def describe_size(count: float) -> str:
  """Bytes for a person: 512 -> '512 bytes', 1536 -> '1.5 KiB', up to TiB."""
  if count < 1024:
    return f"{int(count)} bytes"
  for unit in ("KiB", "MiB", "GiB", "TiB"):
    count /= 1024
    if count < 1024 or unit == "TiB":
      return f"{count:.1f} {unit}"
  raise AssertionError("unreachable")


def _locked_temporary(path: pathlib.Path, size: int | None) -> tuple[int, str]:
  """A new temporary file for `path`, flocked: ours while we live (`clear_leftovers`)."""
  while True:
    try:
      handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                           suffix=".tmp")
    except OSError as error:
      if error.errno in _FULL:
        raise _no_space(path, 0, size) from None
      raise
    fcntl.flock(handle, fcntl.LOCK_EX)
    # Another writer's `clear_leftovers` may have taken it for a leftover between
    # mkstemp and flock: then it is unlinked, and we start again.
    try:
      if os.stat(temporary).st_ino == os.fstat(handle).st_ino:
        return handle, temporary
    except FileNotFoundError:
      pass
    os.close(handle)


@contextlib.contextmanager
def writing(path: str | os.PathLike, mode: str = "w", *, size: int | None = None,
            **open_kwargs) -> Iterator[IO]:
  """``with writing(path) as handle: ...`` writes `path` atomically.

  Args:
    path: the file to (re)place.
    mode: 'w' (text) or 'wb' (bytes).
    size: the file's size in bytes when known (for the full-disk message).
    **open_kwargs: for text, e.g. ``newline=''`` or ``errors='surrogateescape'``.

  Raises:
    LsattnError: the disk (or quota) is full; names the folder and the space.
  """
  path = pathlib.Path(path)
  clear_leftovers(path)
  handle, temporary = _locked_temporary(path, size)
  try:
    os.fchmod(handle, 0o666 & ~_umask())
    with os.fdopen(handle, mode, **open_kwargs) as stream:
      yield stream
      stream.flush()
      os.fsync(stream.fileno())  # the data is on disk before the name points at it
    os.replace(temporary, path)
  except BaseException as error:  # also KeyboardInterrupt: the previous file stays
    full = isinstance(error, OSError) and error.errno in _FULL
    written = 0
    if full:  # what reached the file before the disk was full: a lower bound
      with contextlib.suppress(OSError):
        written = os.stat(temporary).st_size
    with contextlib.suppress(FileNotFoundError):
      os.unlink(temporary)
    if full:
      raise _no_space(path, written, size) from None
    raise


def write_text(path: str | os.PathLike, text: str, **open_kwargs) -> pathlib.Path:
  """Writes `text` to `path` atomically (UTF-8); returns the path."""
  encoding = open_kwargs.pop("encoding", "utf-8")
  size = len(text.encode(encoding, open_kwargs.get("errors", "strict")))
  with writing(path, "w", encoding=encoding, size=size, **open_kwargs) as out:
    out.write(text)
  return pathlib.Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
  """Writes `data` to `path` atomically; returns the path."""
  with writing(path, "wb", size=len(data)) as out:
    out.write(data)
  return pathlib.Path(path)
