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
A build that also reads files outside that folder (a 7-Scenes scene's SfM
pseudo ground truth, `builders.extra_source_files`) adds each one's file name
and contents. Modification times are left out on purpose, so that a copied or
re-extracted folder with the same contents still matches its build.

The record also covers the build's own files (``outputs``: each file's size and
SHA-256), checked whenever the build is reused, with or without its source at
hand: a truncated or corrupted ``array_record`` shard is found before
training, naming the dataset, the file and how to rebuild, not as a reader's
traceback half-way through. Records written before lsattn recorded outputs
are not checked for them.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Sequence

from lsattn.errors import LsattnError
from lsattn.runs import atomic

SOURCE_FILE = "lsattn_source.json"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_HASHED_BYTES = 1 << 20


def fingerprint(manual: pathlib.Path, extra_files: Sequence[pathlib.Path] = ()) -> str:
  """The SHA-256 over the folder's file names, sizes and non-image contents, then the
  file names (without their folders) and contents of `extra_files` (a missing one: its
  name alone)."""
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
  for path in extra_files:
    digest.update(b"extra\0" + os.fsencode(path.name) + b"\0")
    if path.is_file():
      digest.update(hashlib.sha256(path.read_bytes()).digest())
  return digest.hexdigest()


def outputs(build_dir: pathlib.Path) -> dict[str, dict]:
  """{relative name: {'size', 'sha256'}} of every file of the build (not the record)."""
  files = {}
  for path in sorted(build_dir.rglob("*")):
    if path.is_file() and path.name != SOURCE_FILE:
      digest = hashlib.sha256()
      with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
          digest.update(block)
      files[path.relative_to(build_dir).as_posix()] = {"size": path.stat().st_size,
                                                       "sha256": digest.hexdigest()}
  return files


def record(build_dir: pathlib.Path, manual: pathlib.Path, value: str,
           extra_files: Sequence[pathlib.Path] = ()) -> None:
  """Writes the fingerprint `value` of `manual` (and `extra_files`), and of the build's
  own files, beside the build in `build_dir`."""
  saved = {"manual_dir": str(manual.absolute()), "fingerprint": value}
  if extra_files:
    saved["extra_files"] = [str(path.absolute()) for path in extra_files]
  saved["outputs"] = outputs(build_dir)
  atomic.write_text(build_dir / SOURCE_FILE, json.dumps(saved, indent=2) + "\n")


def _read(build_dir: pathlib.Path, dataset: str) -> dict | None:
  path = build_dir / SOURCE_FILE
  if not path.is_file():
    return None
  try:
    saved = json.loads(path.read_text())
    saved["fingerprint"]
  except (OSError, ValueError, KeyError, TypeError):
    raise LsattnError(f"{path}: unreadable record of the dataset's source; delete "
                      f"{build_dir} to rebuild {dataset!r}") from None
  return saved


def check_outputs(build_dir: pathlib.Path, dataset: str) -> None:
  """Refuses reusing a build whose own files are not those it recorded (a truncated or
  corrupted shard, a file removed), naming the file and how to rebuild. Files added
  beside them are not the build's and are left alone.

  A build without a record of its outputs (made before lsattn recorded them) is
  reused as it is.
  """
  saved = _read(build_dir, dataset)
  if saved is None or not isinstance(saved.get("outputs"), dict):
    return
  expected, found = saved["outputs"], outputs(build_dir)
  for name in sorted(expected):
    if name not in found:
      problem = "is missing"
    elif found[name]["size"] != expected[name]["size"]:
      problem = (f"has {found[name]['size']} bytes, the build wrote "
                 f"{expected[name]['size']} (truncated or overwritten)")
    elif found[name]["sha256"] != expected[name]["sha256"]:
      problem = "has other contents than the build wrote (corrupted)"
    else:
      continue
    raise LsattnError(f"dataset {dataset!r} in {build_dir} is damaged: {name} {problem}. "
                      f"Rebuild it: delete {build_dir} and run the same command again (it "
                      f"needs the source files, config.manual_dir), or use another "
                      f"--config.data_dir.")


def check(build_dir: pathlib.Path, manual: pathlib.Path, dataset: str,
          extra_files: Sequence[pathlib.Path] = ()) -> None:
  """Refuses reusing the build in `build_dir` when `manual` no longer matches it.

  A build without a record (made before lsattn recorded one) is reused as it
  is: there is nothing to compare with.
  """
  saved = _read(build_dir, dataset)
  if saved is None:
    return
  if fingerprint(manual, extra_files) != saved["fingerprint"]:
    extra = "".join(f", {path}" for path in extra_files)
    raise LsattnError(f"dataset {dataset!r} in {build_dir} was built from other files than "
                      f"those now in {manual}{extra} (names, sizes or pose/split contents "
                      f"changed). "
                      f"To rebuild it from them, delete {build_dir} and run again (or use "
                      f"another --config.data_dir).")
