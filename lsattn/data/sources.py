"""What a built dataset was built from: a fingerprint of its manual folder.

`prepare` records it beside the build (``<build>/lsattn_source.json``) and
compares it whenever the build is reused with a manual folder at hand: an
own scene whose poses were edited, a split file changed, an image added,
removed or replaced is refused with one line saying how to rebuild, never
reused silently.

The fingerprint is every file's relative name and size, and the SHA-256 of
the contents of every file that is not an image and at most 1 MB (pose,
split and index files: small, and where an edit changes numbers without
changing sizes; a sequence's zip left beside its folder is not read each run).
Modification times are left out on purpose, so that a copied or re-extracted
folder with the same contents still matches its build.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

from lsattn.errors import LsattnError
from lsattn.runs import atomic

SOURCE_FILE = "lsattn_source.json"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_HASHED_BYTES = 1 << 20


def fingerprint(manual: pathlib.Path) -> str:
  """The SHA-256 over the folder's file names, sizes and non-image contents."""
  digest = hashlib.sha256()
  for parent, folders, files in os.walk(manual):
    folders.sort()
    for name in sorted(files):
      path = pathlib.Path(parent, name)
      relative = os.fsencode(path.relative_to(manual))
      try:
        size = path.stat().st_size
      except OSError:  # a broken link: its name is part of the source all the same
        size = -1
      digest.update(relative + b"\0" + str(size).encode() + b"\0")
      if 0 <= size <= _HASHED_BYTES and path.suffix.lower() not in _IMAGE_SUFFIXES:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
  return digest.hexdigest()


def record(build_dir: pathlib.Path, manual: pathlib.Path, value: str) -> None:
  """Writes the fingerprint `value` of `manual` beside the build in `build_dir`."""
  atomic.write_text(build_dir / SOURCE_FILE, json.dumps(
      {"manual_dir": str(manual.absolute()), "fingerprint": value}, indent=2) + "\n")


def check(build_dir: pathlib.Path, manual: pathlib.Path, dataset: str) -> None:
  """Refuses reusing the build in `build_dir` when `manual` no longer matches it.

  A build without a record (made before lsattn recorded one) is reused as it
  is: there is nothing to compare with.
  """
  path = build_dir / SOURCE_FILE
  if not path.is_file():
    return
  try:
    saved = json.loads(path.read_text())["fingerprint"]
  except (OSError, ValueError, KeyError, TypeError):
    raise LsattnError(f"{path}: unreadable record of the dataset's source; delete "
                      f"{build_dir} to rebuild {dataset!r}") from None
  if fingerprint(manual) != saved:
    raise LsattnError(f"dataset {dataset!r} in {build_dir} was built from other files than "
                      f"those now in {manual} (names, sizes or pose/split contents changed). "
                      f"To rebuild it from them, delete {build_dir} and run again (or use "
                      f"another --config.data_dir).")
