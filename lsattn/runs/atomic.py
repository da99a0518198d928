"""Files written whole or not at all: a temporary file in the same folder, renamed.

Every output a user keeps (metrics.json, predictions.csv, predict's CSV or
JSON, figures, config.json, export artefacts) goes through `writing`: a
reader, a failure or Ctrl-C in the middle never sees or leaves half a file,
and the previous file stays intact until the new one is complete. The
rename is atomic only within one file system, hence the same folder.

The file gets the mode a plain ``open(path, 'w')`` would (0666 less the
umask), not ``mkstemp``'s 0600, so a run folder shared with colleagues stays
readable as a whole.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from typing import IO, Iterator


def _umask() -> int:
  # The only portable way to read the umask is to set it; set it straight back.
  mask = os.umask(0)
  os.umask(mask)
  return mask


@contextlib.contextmanager
def writing(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator[IO]:
  """``with writing(path) as handle: ...`` writes `path` atomically.

  Args:
    path: the file to (re)place.
    mode: 'w' (text) or 'wb' (bytes).
    **open_kwargs: for text, e.g. ``newline=''`` or ``errors='surrogateescape'``.
  """
  path = pathlib.Path(path)
  handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                       suffix=".tmp")
  try:
    os.fchmod(handle, 0o666 & ~_umask())
    with os.fdopen(handle, mode, **open_kwargs) as stream:
      yield stream
      stream.flush()
      os.fsync(stream.fileno())  # the data is on disk before the name points at it
    os.replace(temporary, path)
  except BaseException:  # also KeyboardInterrupt: the previous file stays
    with contextlib.suppress(FileNotFoundError):
      os.unlink(temporary)
    raise


def write_text(path: str | os.PathLike, text: str, **open_kwargs) -> pathlib.Path:
  """Writes `text` to `path` atomically (UTF-8); returns the path."""
  with writing(path, "w", encoding=open_kwargs.pop("encoding", "utf-8"), **open_kwargs) as out:
    out.write(text)
  return pathlib.Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
  """Writes `data` to `path` atomically; returns the path."""
  with writing(path, "wb") as out:
    out.write(data)
  return pathlib.Path(path)
