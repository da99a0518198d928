"""Readers of the official datasets' on-disk index and pose formats.

This module's one job is to turn the index and pose files of 7-Scenes,
Cambridge Landmarks, TUM-LSI and MIT-67 into checked records: `PoseRecord`s
in lsattn's pose convention (`lsattn.geometry`: `position` is the camera
centre in world coordinates, `orientation` the unit quaternion (w, x, y, z)
of the camera-to-world rotation, canonical sign) or `ClassRecord`s. It also
holds the record types and the located line-parsing helpers that the
own-scene readers (`lsattn.data.own_formats`) reuse. Nothing here decodes an
image or imports tfds; the dataset builders wrap these readers.

| dataset            | reader               | files                                           |
| ------------------ | -------------------- | ----------------------------------------------- |
| Cambridge          | `read_cambridge`     | `dataset_{train,test}.txt`                      |
| 7-Scenes           | `read_seven_scenes`  | `{Train,Test}Split.txt`, `seq-XX/*.pose.txt`    |
| TUM-LSI            | `read_tum_lsi`       | `{train,test}.txt`, `poses/<scan>_poses.xml`    |
| MIT-67             | `read_mit67`         | `{Train,Test}Images.txt`, `Images/<class>/`     |

7-Scenes' SfM pseudo ground truth (the same frames, other poses):
`lsattn.data.pseudo_gt`.

Every problem with the files raises `LsattnError` naming the file, the 1-based
line (or the XML element) and the offending text, e.g.
``.../dataset_train.txt:7: expected 8 fields 'ImageFile X Y Z W P Q R': 'seq1/a.png 1 2'``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from typing import Callable, Sequence
from xml.etree import ElementTree

import numpy as np

from lsattn import geometry
from lsattn.errors import LsattnError

PathLike = str | os.PathLike

# Sequence of an image that sits directly in the image root.
DEFAULT_SEQUENCE = "seq0"
_MIN_QUATERNION_NORM = 1e-6
_ORTHONORMAL_TOLERANCE = 1e-3
_WPQR_FORMAT = "expected 8 fields 'ImageFile X Y Z W P Q R'"


@dataclasses.dataclass(frozen=True, eq=False)
class PoseRecord:
  """One posed image.

  Attributes:
    image_path: the image file.
    image_name: its path relative to the scene root (posix).
    sequence: the sequence (or scan) it belongs to, e.g. 'seq13', 'seq-01'.
    position: [3] float64, camera centre in world coordinates.
    orientation: [4] float64, unit quaternion (w, x, y, z) of the
      camera-to-world rotation, canonical sign.
    focal_length: the focal length in pixels where the pose file gives one
      (7-Scenes' SfM pseudo ground truth), else None.
  """
  image_path: pathlib.Path
  image_name: str
  sequence: str
  position: np.ndarray
  orientation: np.ndarray
  focal_length: float | None = None

  def __post_init__(self):
    for field, size in (("position", 3), ("orientation", 4)):
      value = np.array(getattr(self, field), dtype=np.float64)
      if value.shape != (size,):
        raise ValueError(f"{field} must have shape ({size},), got {value.shape}")
      value.setflags(write=False)
      object.__setattr__(self, field, value)


@dataclasses.dataclass(frozen=True)
class ClassRecord:
  """One labelled image: file, path relative to the image folder, class name."""
  image_path: pathlib.Path
  image_name: str
  label: str


# ---------------------------------------------------------------- helpers


def _located(path, lineno, message: str, text: str | None = None) -> LsattnError:
  where = f"{path}:{lineno}" if lineno else f"{path}"
  return LsattnError(f"{where}: {message}" + ("" if text is None else f": {text!r}"))


def _check_split(split: str, allowed) -> None:
  if split not in allowed:
    raise LsattnError(f"unknown split {split!r}, expected one of {', '.join(allowed)}")


def _read_lines(path: pathlib.Path, what: str) -> list[str]:
  """Lines of a text file without line ends (CRLF or LF); line i is [i - 1]."""
  if not path.is_file():
    raise LsattnError(f"{path}: {what} not found")
  try:
    text = path.read_text(encoding="utf-8-sig")
  except UnicodeDecodeError as error:
    raise LsattnError(f"{path}: not a UTF-8 text file ({error})") from None
  lines = text.split("\n")
  return lines[:-1] if lines[-1] == "" else lines


def _numbers(fields: Sequence[str], path, lineno, text: str) -> np.ndarray:
  try:
    values = np.array([float(field) for field in fields], dtype=np.float64)
  except ValueError:
    raise _located(path, lineno, "expected numbers", text) from None
  if not np.all(np.isfinite(values)):
    raise _located(path, lineno, "non-finite number", text)
  return values


def _unit_quaternion(q: np.ndarray, where: str, text: str | None) -> np.ndarray:
  norm = float(np.linalg.norm(q))
  if norm < _MIN_QUATERNION_NORM:
    message = f"{where}: quaternion has norm {norm:.3g}, expected a rotation (norm 1)"
    raise LsattnError(message + ("" if text is None else f": {text!r}"))
  return q / norm


def _image_name(text: str, path, lineno) -> str:
  name = pathlib.PurePosixPath(text)
  if not text or name.is_absolute() or ".." in name.parts:
    raise _located(path, lineno, "expected an image path relative to the dataset folder", text)
  return name.as_posix()


def _existing_image(root: pathlib.Path, name: str, path, lineno, text: str) -> pathlib.Path:
  image_path = root / name
  if not image_path.is_file():
    folder = image_path.parent
    missing = f"image {image_path}" if folder.is_dir() else f"folder {folder}"
    raise _located(path, lineno, f"{missing} not found", text)
  return image_path


def _nonempty(records: list, path, what: str = "no images listed (empty split)") -> list:
  if not records:
    raise LsattnError(f"{path}: {what}")
  return records


def _first_folder(name: str) -> str:
  parts = name.split("/")
  return parts[0] if len(parts) > 1 else DEFAULT_SEQUENCE


def _read_wpqr(path: pathlib.Path, root: pathlib.Path, lines: list[str], first: int,
               sequence_fn: Callable[[str], str]) -> list[PoseRecord]:
  """Parses `ImageFile X Y Z W P Q R` lines from index `first` on."""
  records = []
  for lineno, text in enumerate(lines[first:], start=first + 1):
    fields = text.split()
    if not fields or fields[0].startswith("#"):
      continue
    if len(fields) != 8:
      raise _located(path, lineno, _WPQR_FORMAT, text)
    name = _image_name(fields[0], path, lineno)
    values = _numbers(fields[1:], path, lineno, text)
    q_world_to_camera = _unit_quaternion(values[3:], f"{path}:{lineno}", text)
    records.append(PoseRecord(
        image_path=_existing_image(root, name, path, lineno, text),
        image_name=name,
        sequence=sequence_fn(name),
        position=values[:3],
        orientation=geometry.canonical_quaternion(
            geometry.quaternion_conjugate(q_world_to_camera))))
  return _nonempty(records, path)


# ---------------------------------------------------------------- Cambridge


def read_cambridge(scene_dir: PathLike, split: str) -> list[PoseRecord]:
  """Reads a Cambridge Landmarks scene's `dataset_{train,test}.txt`.

  The file has three header lines (the third blank; the second starts with
  'ImageFile'), then one line per image:
  ``seq13/frame00158.png X Y Z W P Q R``. XYZ is the camera centre in world
  coordinates; WPQR is the (w, x, y, z) quaternion of the SfM rotation R_wc,
  which takes world to camera coordinates (the VisualSFM / NVM convention).
  lsattn's orientation is its inverse: orientation = canonical(conjugate(q)),
  position = XYZ.

  Args:
    scene_dir: the scene folder, e.g. `.../KingsCollege`.
    split: 'train' or 'test'.

  Returns:
    Records in file order; sequence = the first path component ('seq13').

  Raises:
    LsattnError: a file without the header (no 'ImageFile' line among its
      first three), naming the file: skipping three lines unseen dropped the
      first images of a headerless file.
  """
  _check_split(split, ("train", "test"))
  scene_dir = pathlib.Path(scene_dir)
  path = scene_dir / f"dataset_{split}.txt"
  lines = _read_lines(path, "Cambridge index file")
  header = [i for i, line in enumerate(lines[:3]) if line.lstrip().startswith("ImageFile")]
  if not header:
    raise _located(path, 1, "expected the Cambridge header (a line 'ImageFile, Camera Position "
                   "[X Y Z W P Q R]' among the first three; the images follow it)",
                   lines[0] if lines else "")
  return _read_wpqr(path, scene_dir, lines, header[0] + 1, _first_folder)


# ---------------------------------------------------------------- 7-Scenes

_SEVEN_SCENES_SPLIT_FILES = {"train": "TrainSplit.txt", "test": "TestSplit.txt"}
_SEQUENCE_LINE = re.compile(r"sequence(\d+)")


def _read_pose_matrix(path: pathlib.Path, image: str) -> np.ndarray:
  """A rigid 4x4 matrix, whitespace separated, one row per line -> [4, 4]."""
  rows, linenos, texts = [], [], []
  for lineno, text in enumerate(_read_lines(path, f"pose file of {image}"), start=1):
    fields = text.split()
    if not fields:
      continue
    if len(fields) != 4 or len(rows) == 4:
      raise _located(path, lineno, "expected 4 rows of 4 numbers (a 4x4 matrix)", text)
    rows.append(_numbers(fields, path, lineno, text))
    linenos.append(lineno)
    texts.append(text)
  if len(rows) != 4:
    raise LsattnError(f"{path}: expected 4 rows of 4 numbers (a 4x4 matrix), found {len(rows)}")
  matrix = np.stack(rows)
  rotation = matrix[:3, :3]
  deviation = np.abs(rotation.T @ rotation - np.eye(3)).max()
  if deviation > _ORTHONORMAL_TOLERANCE or np.linalg.det(rotation) < 0:
    raise _located(path, f"{linenos[0]}-{linenos[2]}",
                   f"not a rotation (max |R^T R - I| = {deviation:.3g}, "
                   f"det = {np.linalg.det(rotation):.3g})", " | ".join(texts[:3]))
  if np.abs(matrix[3] - [0, 0, 0, 1]).max() > 1e-6:
    raise _located(path, linenos[3], "expected last row '0 0 0 1'", texts[3])
  return matrix


@dataclasses.dataclass(frozen=True)
class Frame:
  """One 7-Scenes frame: its colour image, its name relative to the scene folder
  ('seq-01/frame-000000.color.png'), its sequence ('seq-01') and where the split file
  lists that sequence (`listed`: 'TrainSplit.txt:2', for messages)."""
  image_path: pathlib.Path
  image_name: str
  sequence: str
  listed: str


def _seven_scenes_sequence(scene_dir, sequence, split_path, lineno, text) -> list[Frame]:
  folder = scene_dir / sequence
  if not folder.is_dir():
    zipped = folder.with_name(f"{sequence}.zip")
    hint = f" (unzip {zipped} first)" if zipped.is_file() else ""
    raise _located(split_path, lineno, f"sequence folder {folder} not found{hint}", text)
  images = sorted(folder.glob("frame-*.color.png"))
  if not images:
    raise _located(split_path, lineno, f"no frame-XXXXXX.color.png images in {folder}", text)
  return [Frame(image_path, f"{sequence}/{image_path.name}", sequence, f"{split_path}:{lineno}")
          for image_path in images]


def seven_scenes_frames(scene_dir: PathLike, split: str) -> list[Frame]:
  """The frames of a 7-Scenes split: its split file's sequences, every colour image of each.

  `TrainSplit.txt` / `TestSplit.txt` list sequences as `sequence1` (or
  `sequence01`); blank and '#' lines are skipped. Sequence N is the folder
  `seq-0N/` with `frame-XXXXXX.color.png` images.

  Returns:
    Frames sorted by sequence, then frame.
  """
  _check_split(split, _SEVEN_SCENES_SPLIT_FILES)
  scene_dir = pathlib.Path(scene_dir)
  split_path = scene_dir / _SEVEN_SCENES_SPLIT_FILES[split]
  by_sequence = {}
  for lineno, text in enumerate(_read_lines(split_path, "7-Scenes split file"), start=1):
    line = text.strip()
    if not line or line.startswith("#"):
      continue
    match = _SEQUENCE_LINE.fullmatch(line)
    if match is None:
      raise _located(split_path, lineno, "expected a line like 'sequence1'", text)
    sequence = f"seq-{int(match.group(1)):02d}"
    if sequence not in by_sequence:
      by_sequence[sequence] = _seven_scenes_sequence(scene_dir, sequence, split_path, lineno,
                                                     text)
  return _nonempty([f for s in sorted(by_sequence) for f in by_sequence[s]], split_path)


def read_seven_scenes(scene_dir: PathLike, split: str) -> list[PoseRecord]:
  """Reads a 7-Scenes scene with its original (D-SLAM) poses.

  The frames are `seven_scenes_frames`'; each `frame-XXXXXX.color.png` has a
  `frame-XXXXXX.pose.txt` 4x4 camera-to-world matrix (last row `0 0 0 1`).
  position = its translation column, orientation = the quaternion of its
  rotation block (orthonormal within 1e-3, refused otherwise, as are
  non-finite entries). The SfM pseudo ground truth instead:
  `lsattn.data.pseudo_gt.read_seven_scenes_pgt`.

  Args:
    scene_dir: the scene folder, e.g. `.../chess`.
    split: 'train' or 'test'.

  Returns:
    Records sorted by sequence, then frame; sequence = 'seq-01' etc.
  """
  records = []
  for frame in seven_scenes_frames(scene_dir, split):
    stem = frame.image_path.name[:-len(".color.png")]
    matrix = _read_pose_matrix(frame.image_path.with_name(f"{stem}.pose.txt"),
                               frame.image_path.name)
    records.append(PoseRecord(
        image_path=frame.image_path,
        image_name=frame.image_name,
        sequence=frame.sequence,
        position=matrix[:3, 3],
        orientation=geometry.matrix_to_quaternion(matrix[:3, :3])))
  return records


# ---------------------------------------------------------------- TUM-LSI


def _xml_numbers(pose: ElementTree.Element, tag: str, keys: str, where: str) -> np.ndarray:
  children = pose.findall(tag)
  if len(children) != 1:
    raise LsattnError(f"{where}: expected one <{tag}/> child, found {len(children)}")
  values = []
  for key in keys:
    text = children[0].get(key)
    try:
      value = float(text)
    except (TypeError, ValueError):
      raise LsattnError(f"{where}: <{tag}> attribute {key}={text!r} is not a number") from None
    if not np.isfinite(value):
      raise LsattnError(f"{where}: <{tag}> attribute {key}={text!r} is not finite")
    values.append(value)
  return np.array(values)


def _read_tum_lsi_poses(path: pathlib.Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Maps image name -> (position [3], orientation [4]) from one scan's XML."""
  try:
    root = ElementTree.parse(path).getroot()
  except ElementTree.ParseError as error:
    raise LsattnError(f"{path}:{error.position[0]}: malformed XML ({error})") from None
  if root.tag != "poses":
    raise LsattnError(f"{path}: expected root element <poses>, found <{root.tag}>")
  poses = {}
  for index, pose in enumerate(root, start=1):
    image = pose.get("image")
    where = f"{path}: <{pose.tag} image={image!r}> (element {index} of <poses>)"
    if pose.tag != "pose" or image is None:
      raise LsattnError(f"{where}: expected <pose image=\"images/<scan>/<file>\">")
    position = _xml_numbers(pose, "position", "xyz", where)
    quaternion = _unit_quaternion(_xml_numbers(pose, "quaternion", "wxyz", where), where, None)
    name = pathlib.PurePosixPath(image).as_posix()
    if name in poses:
      raise LsattnError(f"{where}: second <pose> for the same image")
    poses[name] = (position, geometry.canonical_quaternion(quaternion))
  return _nonempty(poses, path, "no <pose> elements")


def read_tum_lsi(root: PathLike, split: str) -> list[PoseRecord]:
  """Reads TUM-LSI (the NavVis indoor dataset of Walch et al.) in lsattn's layout.

  The XML schema of the public release is not documented, so lsattn defines
  the layout it expects:

      <root>/train.txt, test.txt        one image path per line, relative to
                                        <root>: images/<scan>/00000-cam0.jpg
      <root>/images/<scan>/*.jpg        the images
      <root>/poses/<scan>_poses.xml     the poses of one scan:

      <poses>
        <pose image="images/2015-08-16_15.34.11/00000-cam0.jpg">
          <position x="1.0" y="2.0" z="0.5"/>
          <quaternion w="1.0" x="0.0" y="0.0" z="0.0"/>
        </pose>
        ...
      </poses>

  `position` is the camera centre in world coordinates (metres) and
  `quaternion` the (w, x, y, z) camera-to-world rotation, i.e. already lsattn's
  convention (it is only normalised and given the canonical sign). Blank and
  '#' lines of the split lists are skipped. A release structured differently
  must be converted to this layout, or to the own-scene CSV
  (`lsattn.data.own_formats.read_pose_csv`).

  Args:
    root: the dataset folder.
    split: 'train' or 'test'.

  Returns:
    Records in split-list order; sequence = the scan folder name.
  """
  _check_split(split, ("train", "test"))
  root = pathlib.Path(root)
  split_path = root / f"{split}.txt"
  poses_by_scan = {}
  records = []
  for lineno, text in enumerate(_read_lines(split_path, "TUM-LSI split list"), start=1):
    line = text.strip()
    if not line or line.startswith("#"):
      continue
    name = _image_name(line, split_path, lineno)
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "images":
      raise _located(split_path, lineno, "expected 'images/<scan>/<file>'", text)
    scan = parts[1]
    xml_path = root / "poses" / f"{scan}_poses.xml"
    if scan not in poses_by_scan:
      if not (root / "images" / scan).is_dir():
        raise _located(split_path, lineno, f"scan folder {root / 'images' / scan} not found", text)
      if not xml_path.is_file():
        raise _located(split_path, lineno, f"pose file {xml_path} not found", text)
      poses_by_scan[scan] = _read_tum_lsi_poses(xml_path)
    if name not in poses_by_scan[scan]:
      raise _located(split_path, lineno, f"image has no <pose> in {xml_path}", text)
    position, orientation = poses_by_scan[scan][name]
    records.append(PoseRecord(
        image_path=_existing_image(root, name, split_path, lineno, text),
        image_name=name, sequence=scan, position=position, orientation=orientation))
  return _nonempty(records, split_path)


# ---------------------------------------------------------------- MIT-67


def mit67_classes(root: PathLike) -> list[str]:
  """Sorted class names: the folders under `<root>/Images/`."""
  images = pathlib.Path(root) / "Images"
  if not images.is_dir():
    raise LsattnError(f"{images}: MIT-67 image folder not found (extract indoorCVPR_09.tar)")
  return _nonempty(sorted(p.name for p in images.iterdir() if p.is_dir()), images,
                   "no class folders")


def read_mit67(root: PathLike, split: str) -> list[ClassRecord]:
  """Reads MIT-67 `TrainImages.txt` / `TestImages.txt` (LF or CRLF).

  Each line is `class/file.jpg`, relative to `<root>/Images/`; the label is the
  first path component and must be one of `mit67_classes(root)`.

  Args:
    root: the folder holding `Images/` and the two lists.
    split: 'train' or 'test'.

  Returns:
    Records in list order; image_name is relative to `Images/`.
  """
  _check_split(split, ("train", "test"))
  root = pathlib.Path(root)
  images = root / "Images"
  classes = set(mit67_classes(root))
  path = root / ("TrainImages.txt" if split == "train" else "TestImages.txt")
  records = []
  for lineno, text in enumerate(_read_lines(path, "MIT-67 image list"), start=1):
    line = text.strip()
    if not line:
      continue
    name = _image_name(line, path, lineno)
    parts = name.split("/")
    if len(parts) != 2:
      raise _located(path, lineno, "expected 'class/file.jpg'", text)
    if parts[0] not in classes:
      raise _located(path, lineno, f"unknown class {parts[0]!r} (no folder in {images})", text)
    records.append(ClassRecord(_existing_image(images, name, path, lineno, text), name, parts[0]))
  return _nonempty(records, path)
