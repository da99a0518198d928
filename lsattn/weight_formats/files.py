"""Reading a weights file the user named: one line for a missing or unreadable file."""

from __future__ import annotations

import os

from lsattn.errors import LsattnError


def read_weights_file(path: str | os.PathLike) -> bytes:
  """The bytes of a weights file the user named; a missing or unreadable one is
  one LsattnError line naming it."""
  path = os.fspath(path)
  try:
    with open(path, "rb") as handle:
      return handle.read()
  except FileNotFoundError:
    raise LsattnError(f"{path}: no such weights file") from None
  except OSError as error:
    raise LsattnError(f"{path}: cannot read ({error.strerror or error})") from None
