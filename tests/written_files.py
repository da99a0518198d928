"""Helpers for tests of files lsattn writes (synthetic datasets)."""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image


def file_bytes(folder: pathlib.Path) -> dict[str, bytes]:
  """Every file under `folder`, relative path -> contents (to compare two writes)."""
  return {str(p.relative_to(folder)): p.read_bytes()
          for p in sorted(folder.rglob("*")) if p.is_file()}


def pixels(path: pathlib.Path) -> np.ndarray:
  """The decoded image at `path` as an array."""
  with Image.open(path) as image:
    return np.asarray(image)
