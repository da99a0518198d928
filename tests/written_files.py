"""Helpers for tests of files lsattn writes (synthetic datasets)."""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image


def file_bytes(folder: pathlib.Path) -> dict[str, bytes]:
  """Every file under `folder`, relative path -> contents (to compare two writes)."""
  return {str(p.relative_to(folder)): p.read_bytes()
          for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_seeded(write, written: pathlib.Path, root: pathlib.Path, changed: tuple[str, ...]):
  """`write(folder, seed=None|1)` again gives `written`'s bytes; seed 1 changes `changed`."""
  assert file_bytes(write(root / "again")) == file_bytes(written)
  other, first = file_bytes(write(root / "other", seed=1)), file_bytes(written)
  assert other.keys() == first.keys()
  for name in changed:
    assert other[name] != first[name], name


def pixels(path: pathlib.Path) -> np.ndarray:
  """The decoded image at `path` as an array."""
  with Image.open(path) as image:
    return np.asarray(image)


def assert_mit67_layout(root: pathlib.Path, train: list[str], test: list[str], classes,
                        size: tuple[int, int]) -> None:
  """The listed images are `<class>/<name>.jpg` of known classes, RGB JPEGs of `size`
  (W, H), and exactly the files under Images/ (the MIT-67 layout)."""
  for relative in train + test:
    class_name, file_name = relative.split("/")
    assert class_name in classes and file_name.endswith(".jpg")
    with Image.open(root / "Images" / relative) as image:
      assert image.format == "JPEG" and image.mode == "RGB" and image.size == size
  on_disk = {str(p.relative_to(root / "Images")) for p in root.glob("Images/*/*")}
  assert on_disk == set(train + test)
