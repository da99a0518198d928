"""Reading a user's own scene folder: which pose file it holds and its splits.

This module's one job is to turn an own scene's folder into checked records
per split: it finds the one pose file (``poses.csv``, the Cambridge pair
``dataset_train.txt`` + ``dataset_test.txt``, or COLMAP's ``images.txt``),
reads it with `lsattn.data.own_formats`, applies the split policy (the
CSV's ``split`` column, the Cambridge pair, or else
`lsattn.data.splits.holdout_split`) and checks that each image is listed
once; the ``own_scene`` tfds builder (`lsattn.data.builders.OwnScene`)
stores the result.
"""

from __future__ import annotations

import csv
import pathlib

from lsattn.data import own_formats, splits
from lsattn.errors import LsattnError

OWN_POSE_CSV = "poses.csv"
OWN_CAMBRIDGE_FILES = ("dataset_train.txt", "dataset_test.txt")
OWN_COLMAP_FILE = "images.txt"


def _own_pose_file(folder: pathlib.Path) -> str:
  """Which pose file the scene folder holds: 'csv', 'cambridge' or 'colmap'."""
  cambridge = [name for name in OWN_CAMBRIDGE_FILES if (folder / name).is_file()]
  found = {kind: names for kind, names in (
      ("csv", [OWN_POSE_CSV] if (folder / OWN_POSE_CSV).is_file() else []),
      ("cambridge", cambridge),
      ("colmap", [OWN_COLMAP_FILE] if (folder / OWN_COLMAP_FILE).is_file() else [])) if names}
  if not found:
    raise LsattnError(f"{folder}: no pose file; expected one of {OWN_POSE_CSV}, "
                      f"{' + '.join(OWN_CAMBRIDGE_FILES)} or {OWN_COLMAP_FILE} (COLMAP text "
                      f"model)")
  if len(found) > 1:
    names = ", ".join(name for names in found.values() for name in names)
    raise LsattnError(f"{folder}: several pose files ({names}); keep exactly one in the "
                      f"scene folder")
  (kind, names), = found.items()
  if kind == "cambridge" and len(names) != 2:
    missing, = set(OWN_CAMBRIDGE_FILES) - set(names)
    raise LsattnError(f"{folder / missing} not found: the Cambridge format needs both "
                      f"{' and '.join(OWN_CAMBRIDGE_FILES)} (or use {OWN_POSE_CSV} without a "
                      f"split column for an automatic split)")
  return kind


def _csv_splits(path: pathlib.Path) -> list[str] | None:
  """The split names used in the CSV's 'split' column, or None without one."""
  with path.open(newline="", encoding="utf-8-sig") as file:
    rows = csv.reader(file)
    header = [column.strip() for column in next(rows, [])]
    if "split" not in header:
      return None
    column = header.index("split")
    used = {row[column].strip() for row in rows if len(row) > column and row[column].strip()}
  return [split for split in own_formats.CSV_SPLITS if split in used]


def read_own_scene(folder: pathlib.Path) -> tuple[dict[str, list], str, str]:
  """Reads and checks an own scene's pose file and decides its splits.

  Args:
    folder: the scene folder.

  Returns:
    ({'train': records, 'test': records[, 'validation': records]}, the pose
    file's name, how the splits were chosen).

  Raises:
    LsattnError: no or several pose files, a malformed one (file and line
      named), an image listed twice or in two splits.
  """
  folder = pathlib.Path(folder)
  kind = _own_pose_file(folder)
  if kind == "cambridge":
    pose_file = " + ".join(OWN_CAMBRIDGE_FILES)
    records = {split: own_formats.read_pose_text(folder / f"dataset_{split}.txt", folder)
               for split in ("train", "test")}
    rule = "official: dataset_train.txt and dataset_test.txt"
  elif kind == "csv":
    path = folder / OWN_POSE_CSV
    pose_file = OWN_POSE_CSV
    every = own_formats.read_pose_csv(path, folder)  # Checks every row before choosing.
    used = _csv_splits(path)
    if used is None:
      records, rule = _holdout(every)
    else:
      records = {split: own_formats.read_pose_csv(path, folder, split)
                 for split in ("train", "test")}
      if "val" in used:
        records["validation"] = own_formats.read_pose_csv(path, folder, "val")
      rule = "the 'split' column of poses.csv"
  elif kind == "colmap":
    pose_file = OWN_COLMAP_FILE
    records, rule = _holdout(own_formats.read_colmap_images(folder / OWN_COLMAP_FILE, folder))
  else:
    raise ValueError(f"Unsupported own-scene pose file kind {kind!r}")
  _check_listed_once(records, folder / pose_file.split(" + ")[0])
  return records, pose_file, rule


def _holdout(records: list) -> tuple[dict[str, list], str]:
  train, test = splits.holdout_split([r.sequence for r in records],
                                     [r.image_name for r in records])
  if len({r.sequence for r in records}) >= 2:
    rule = f"automatic: the last sequence ({records[test[0]].sequence}) is the test split"
  else:
    rule = (f"automatic: the final {splits.TEST_BLOCK_FRACTION:.0%} of the frames (by name) "
            f"are the test split, the {splits.GAP_FRACTION:.0%} before them are unused")
  return {"train": [records[i] for i in train], "test": [records[i] for i in test]}, rule


def _check_listed_once(records: dict[str, list], path: pathlib.Path) -> None:
  seen = {}
  for split, split_records in records.items():
    for record in split_records:
      if record.image_name in seen:
        raise LsattnError(f"{path}: image {record.image_name} is listed twice (in "
                          f"{seen[record.image_name]} and {split}); each image has one pose "
                          f"and one split")
      seen[record.image_name] = split
