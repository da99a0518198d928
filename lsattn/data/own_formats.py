"""Readers (and the CSV writer) of the pose-file formats of a user's own scene.

This module's one job is to read the pose file beside an own scene's images,
in any of its three formats, into checked `PoseRecord`s in lsattn's pose
convention: the CSV ``image,x,y,z,qw,qx,qy,qz[,split]`` (`read_pose_csv`,
written by `write_pose_csv`), Cambridge-style ``ImageFile X Y Z W P Q R``
text (`read_pose_text`) and a COLMAP text model's ``images.txt``
(`read_colmap_images`); every problem names the file, line and text, as in
`lsattn.data.formats`, whose record type and parsing helpers it shares.
"""

from __future__ import annotations

import csv
import pathlib
from typing import Mapping, Sequence

from lsattn import geometry
# The record type and the located parsing helpers shared with the official readers.
from lsattn.data.formats import (DEFAULT_SEQUENCE, PathLike, PoseRecord, _check_split,
                                 _existing_image, _image_name, _located, _nonempty, _numbers,
                                 _read_lines, _read_wpqr, _unit_quaternion)
from lsattn.errors import LsattnError

CSV_COLUMNS = ("image", "x", "y", "z", "qw", "qx", "qy", "qz")
CSV_SPLITS = ("train", "test", "val")
_COLMAP_FORMAT = "expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME'"


def _own_sequence(name: str) -> str:
  return pathlib.PurePosixPath(name).parent.name or DEFAULT_SEQUENCE


def read_pose_csv(path: PathLike, image_root: PathLike,
                  split: str | None = None) -> list[PoseRecord]:
  """Reads an own scene's CSV: `image,x,y,z,qw,qx,qy,qz[,split]`.

  `image` is relative to `image_root`; x, y, z the camera centre; qw..qz the
  (w, x, y, z) camera-to-world quaternion (lsattn's convention; normalised,
  canonical sign on reading). The optional `split` column holds train, test
  or val. Columns may come in any order; blank rows are skipped.

  Args:
    path: the CSV file.
    image_root: the folder the image paths are relative to.
    split: None for every row, or a split name to select (needs `split`).

  Returns:
    Records in file order; sequence = the name of the image's parent folder,
    or 'seq0' for images directly in `image_root`.
  """
  path, image_root = pathlib.Path(path), pathlib.Path(image_root)
  if split is not None:
    _check_split(split, CSV_SPLITS)
  if not path.is_file():
    raise LsattnError(f"{path}: pose CSV not found")
  records = []
  with path.open(newline="", encoding="utf-8-sig") as file:
    reader = csv.reader(file)
    try:
      header = [column.strip() for column in next(reader, [])]
      if sorted(header) not in (sorted(CSV_COLUMNS), sorted(CSV_COLUMNS + ("split",))):
        raise _located(path, 1, "expected header 'image,x,y,z,qw,qx,qy,qz' with an optional "
                       "'split' column", ",".join(header))
      if split is not None and "split" not in header:
        raise _located(path, 1, f"no 'split' column to select split {split!r}", ",".join(header))
      column = {name: index for index, name in enumerate(header)}
      for row in reader:
        lineno, text = reader.line_num, ",".join(row)
        cells = [cell.strip() for cell in row]
        if not any(cells):
          continue
        if len(cells) != len(header):
          raise _located(path, lineno, f"expected {len(header)} fields", text)
        row_split = cells[column["split"]] if "split" in column else None
        if row_split is not None and row_split not in CSV_SPLITS:
          raise _located(path, lineno, f"split must be one of {', '.join(CSV_SPLITS)}", text)
        name = _image_name(cells[column["image"]], path, lineno)
        values = _numbers([cells[column[c]] for c in CSV_COLUMNS[1:]], path, lineno, text)
        record = PoseRecord(
            image_path=_existing_image(image_root, name, path, lineno, text),
            image_name=name, sequence=_own_sequence(name), position=values[:3],
            orientation=geometry.canonical_quaternion(
                _unit_quaternion(values[3:], f"{path}:{lineno}", text)))
        if split is None or row_split == split:
          records.append(record)
    except (csv.Error, UnicodeDecodeError) as error:
      raise _located(path, reader.line_num, f"malformed CSV ({error})") from None
  return _nonempty(records, path, "no images" + ("" if split is None else f" in split {split!r}"))


def write_pose_csv(path: PathLike, splits: Mapping[str, Sequence[PoseRecord]]) -> None:
  """Writes records as an own-scene CSV that `read_pose_csv` reads back.

  Args:
    path: the CSV file to write.
    splits: split name ('train', 'test' or 'val') -> its records. Image paths
      are written as `image_name`, so read back with the scene root as
      `image_root`.
  """
  with pathlib.Path(path).open("w", newline="", encoding="utf-8") as file:
    writer = csv.writer(file)
    writer.writerow(CSV_COLUMNS + ("split",))
    for split, records in splits.items():
      _check_split(split, CSV_SPLITS)
      for record in records:
        # repr of a Python float is the shortest string that reads back exactly.
        numbers = [float(v) for v in (*record.position, *record.orientation)]
        writer.writerow([record.image_name, *numbers, split])


def read_pose_text(path: PathLike, image_root: PathLike) -> list[PoseRecord]:
  """Reads an own scene's Cambridge-style `ImageFile X Y Z W P Q R` file.

  Same convention as `lsattn.data.formats.read_cambridge`: XYZ is the camera centre and WPQR the
  world-to-camera quaternion, so orientation = canonical(conjugate(WPQR)).
  The Cambridge header (lines up to one starting with 'ImageFile', within the
  first three) is optional; blank and '#' lines are skipped.

  Args:
    path: the text file.
    image_root: the folder the image paths are relative to.

  Returns:
    Records in file order; sequence as in `read_pose_csv`.
  """
  path = pathlib.Path(path)
  lines = _read_lines(path, "pose text file")
  header = [i for i, line in enumerate(lines[:3]) if line.lstrip().startswith("ImageFile")]
  first = header[0] + 1 if header else 0
  return _read_wpqr(path, pathlib.Path(image_root), lines, first, _own_sequence)


def read_colmap_images(images_txt: PathLike, image_root: PathLike) -> list[PoseRecord]:
  """Reads the poses of a COLMAP text model's `images.txt`.

  After '#' comment lines, each image takes two lines: ``IMAGE_ID QW QX QY QZ
  TX TY TZ CAMERA_ID NAME`` and its 2-D points (possibly an empty line).
  COLMAP stores the world-to-camera rotation R(q) and translation t, so the
  camera centre is -R^T t and the orientation canonical(conjugate(q)).

  Args:
    images_txt: the `images.txt` file.
    image_root: the folder the NAMEs are relative to.

  Returns:
    Records sorted by image name; sequence as in `read_pose_csv`.
  """
  path, image_root = pathlib.Path(images_txt), pathlib.Path(image_root)
  entries = [(lineno, text) for lineno, text in enumerate(_read_lines(path, "COLMAP images.txt"), 1)
             if not text.startswith("#")]
  last_data_line = max((lineno for lineno, text in entries if text.strip()), default=0)
  records = []
  for lineno, text in entries[::2]:
    if lineno > last_data_line:
      break  # Blank lines at the end of the file.
    fields = text.split(maxsplit=9)
    if len(fields) != 10:
      raise _located(path, lineno, _COLMAP_FORMAT, text)
    try:
      int(fields[0]), int(fields[8])
    except ValueError:
      raise _located(path, lineno, f"{_COLMAP_FORMAT}, IDs are integers", text) from None
    values = _numbers(fields[1:8], path, lineno, text)
    q_world_to_camera = _unit_quaternion(values[:4], f"{path}:{lineno}", text)
    centre, orientation = geometry.invert_pose(values[4:], q_world_to_camera)
    name = _image_name(fields[9].strip(), path, lineno)
    records.append(PoseRecord(
        image_path=_existing_image(image_root, name, path, lineno, text),
        image_name=name, sequence=_own_sequence(name), position=centre,
        orientation=orientation))
  return sorted(_nonempty(records, path, "no images"), key=lambda record: record.image_name)
