r"""Per-frame pose files of the pseudo-ground-truth community: read, and written back.

Brachmann, Humenberger, Rother and Sattler, "On the Limits of Pseudo Ground
Truth in Visual Camera Re-Localization" (ICCV 2021; the repository
tsattler/visloc_pseudo_gt_limitations) publish, for every 7-Scenes frame, an
SfM pseudo ground truth (pGT) in one line per image::

    rgb_file qw qx qy qz tx ty tz f

`rgb_file` is the image relative to the scene folder
(``seq-03/frame-000844.color.png``); `q` (w, x, y, z) and `t` map world to
camera coordinates, ``p_cam = R(q) p_world + t`` (COLMAP's convention); `f` is
the focal length in pixels. A method's estimates are the same line without
`f`; that repository's ``evaluate_estimates.py`` compares the two.

lsattn's convention (`lsattn.geometry`) is the camera centre and the
camera-to-world quaternion, so reading converts
``position = -R(q)^T t``, ``orientation = canonical(conjugate(q))``, and
writing converts back (`world_to_camera`).

* `read_pose_lines`: one such file -> `PoseLine` per frame, checked (field count,
  finite numbers, a unit quaternion, a positive `f`, each frame once), every
  problem naming file and line.
* `read_seven_scenes_pgt`: a 7-Scenes split's frames (`formats.seven_scenes_frames`)
  with their poses from the pGT file: every frame must have a line, and every
  line must name a frame of the split (a file of another scene or split is
  refused).
* `estimate_lines` / `write_estimates`: lsattn's poses as estimate lines.

Where the pGT files sit in the manual folder: `pgt_path`.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Sequence

import numpy as np

from lsattn import geometry
from lsattn.data.formats import (PathLike, PoseRecord, _image_name, _located, _numbers,
                                 _read_lines, seven_scenes_frames)
from lsattn.errors import LsattnError
from lsattn.runs import atomic

GROUND_TRUTHS = ("dslam", "sfm")
# Quaternions are printed to about six digits (norms within 1e-6 of one in the
# published files); further off, the line does not hold a rotation.
UNIT_TOLERANCE = 1e-3
_PGT_FORMAT = "expected 9 fields 'rgb_file qw qx qy qz tx ty tz f'"
_ESTIMATE_FORMAT = "expected 8 fields 'rgb_file qw qx qy qz tx ty tz'"


@dataclasses.dataclass(frozen=True, eq=False)
class PoseLine:
  """One line of a pGT or estimates file, in lsattn's convention.

  Attributes:
    lineno: its 1-based line.
    position: [3] camera centre in world coordinates.
    orientation: [4] camera-to-world unit quaternion (w, x, y, z), canonical sign.
    focal_length: `f` (pGT files), or None (estimates).
  """
  lineno: int
  position: np.ndarray
  orientation: np.ndarray
  focal_length: float | None


def pgt_path(manual_dir: PathLike, scene: str, split: str, ground_truth: str = "sfm"
             ) -> pathlib.Path:
  """`<manual_dir>/pgt/<ground_truth>/7scenes/<scene>_<split>.txt`: the repository's own
  `pgt/` folder copied into the manual folder beside the scene folders."""
  return pathlib.Path(manual_dir) / "pgt" / ground_truth / "7scenes" / f"{scene}_{split}.txt"


def read_pose_lines(path: PathLike, *, focal_length: bool) -> dict[str, PoseLine]:
  """Reads a pGT file (`focal_length=True`: 9 fields) or an estimates file (8 fields).

  Blank lines are skipped. Refused, naming file and line: a wrong number of
  fields, a name that is not a relative path, a number that does not parse or
  is not finite, a quaternion whose norm is not 1 within `UNIT_TOLERANCE`, a
  focal length that is not positive, a frame listed twice.

  Returns:
    {rgb_file: PoseLine}, in file order.
  """
  path = pathlib.Path(path)
  expected, message = (9, _PGT_FORMAT) if focal_length else (8, _ESTIMATE_FORMAT)
  poses: dict[str, PoseLine] = {}
  for lineno, text in enumerate(_read_lines(path, "pose file"), start=1):
    fields = text.split()
    if not fields:
      continue
    if len(fields) != expected:
      raise _located(path, lineno, message, text)
    name = _image_name(fields[0], path, lineno)
    values = _numbers(fields[1:], path, lineno, text)
    norm = float(np.linalg.norm(values[:4]))
    if abs(norm - 1.0) > UNIT_TOLERANCE:
      raise _located(path, lineno, f"quaternion qw qx qy qz has norm {norm:.6g}, expected a "
                     f"unit quaternion (norm 1 within {UNIT_TOLERANCE:g})", text)
    if focal_length and values[7] <= 0:
      raise _located(path, lineno, f"focal length f = {fields[8]} is not positive", text)
    if name in poses:
      raise _located(path, lineno, f"second line for {name} (the first is line "
                     f"{poses[name].lineno})", text)
    position, orientation = geometry.invert_pose(values[4:7], values[:4] / norm)
    poses[name] = PoseLine(lineno, position, orientation,
                           float(values[7]) if focal_length else None)
  if not poses:
    raise LsattnError(f"{path}: no pose lines (empty file)")
  return poses


def read_seven_scenes_pgt(scene_dir: PathLike, split: str, pgt_file: PathLike
                          ) -> list[PoseRecord]:
  """A 7-Scenes split's frames with their poses and focal lengths from a pGT file.

  Args:
    scene_dir: the scene folder, e.g. `.../chess` (its split files and sequences
      give the frames, as for the D-SLAM poses).
    split: 'train' or 'test'.
    pgt_file: its pGT file (`pgt_path`).

  Returns:
    Records sorted by sequence, then frame, with `focal_length`.

  Raises:
    LsattnError: a problem of the file (`read_pose_lines`), a frame of the split
      without a line (naming the frame and the split file's line of its
      sequence), or a line naming a frame that is not in the split (a file of
      another scene or split).
  """
  scene_dir, pgt_file = pathlib.Path(scene_dir), pathlib.Path(pgt_file)
  frames = seven_scenes_frames(scene_dir, split)
  if not pgt_file.is_file():
    raise LsattnError(f"{pgt_file}: pGT file not found; copy the pgt/ folder of "
                      f"tsattler/visloc_pseudo_gt_limitations into the manual folder")
  poses = read_pose_lines(pgt_file, focal_length=True)
  names = {frame.image_name for frame in frames}
  strangers = [name for name in poses if name not in names]
  if strangers:
    sequences = ", ".join(sorted({frame.sequence for frame in frames}))
    more = f" (and {len(strangers) - 1} more lines like it)" if len(strangers) > 1 else ""
    raise _located(pgt_file, poses[strangers[0]].lineno,
                   f"{strangers[0]}{more} is not a frame of the {split} split of {scene_dir} "
                   f"(sequences {sequences}): is this the pGT file of another scene or split?")
  records = []
  for frame in frames:
    pose = poses.get(frame.image_name)
    if pose is None:
      raise LsattnError(f"{pgt_file}: no line for frame {frame.image_name} (its sequence is "
                        f"listed at {frame.listed}); the pGT file must hold every frame of "
                        f"the split")
    records.append(PoseRecord(image_path=frame.image_path, image_name=frame.image_name,
                              sequence=frame.sequence, position=pose.position,
                              orientation=pose.orientation, focal_length=pose.focal_length))
  return records


def world_to_camera(position, orientation) -> tuple[np.ndarray, np.ndarray]:
  """lsattn's poses -> (q [..., 4] (w, x, y, z), t [..., 3]) with p_cam = R(q) p_world + t.

  q is the conjugate of the camera-to-world quaternion (canonical sign), t = -R(q) c.
  """
  translation, rotation = geometry.invert_pose(np.asarray(position, np.float64),
                                               np.asarray(orientation, np.float64))
  return rotation, translation


def estimate_lines(names: Sequence[str], positions, orientations) -> list[str]:
  """One `rgb_file qw qx qy qz tx ty tz` line per frame (world to camera), as the
  pseudo-ground-truth repository's evaluate_estimates.py reads estimates.

  Args:
    names: [E] image names relative to the scene folder ('seq-03/frame-000000.color.png').
    positions: [E, 3] camera centres.
    orientations: [E, 4] camera-to-world quaternions (w, x, y, z).

  Raises:
    LsattnError: a name with white space (the format splits on it) or an empty one.
  """
  positions = np.asarray(positions, np.float64).reshape(-1, 3)
  orientations = np.asarray(orientations, np.float64).reshape(-1, 4)
  if not len(names) == len(positions) == len(orientations):
    raise LsattnError(f"estimates: {len(names)} names for {len(positions)} positions and "
                      f"{len(orientations)} orientations")
  rotations, translations = world_to_camera(positions, orientations)
  lines = []
  for name, q, t in zip(names, rotations, translations):
    name = str(name)
    if not name or len(name.split()) != 1 or name.strip() != name:
      raise LsattnError(f"estimates: image name {name!r} is empty or holds white space, which "
                        f"the format 'rgb_file qw qx qy qz tx ty tz' cannot hold")
    # repr: the shortest text that reads back as the same float64.
    lines.append(" ".join([name, *(repr(float(v)) for v in (*q, *t))]))
  return lines


def write_estimates(path: PathLike, names: Sequence[str], positions, orientations
                    ) -> pathlib.Path:
  """Writes `estimate_lines` to `path` (whole or not at all); returns the path."""
  return atomic.write_text(pathlib.Path(path),
                           "".join(f"{line}\n" for line in
                                   estimate_lines(names, positions, orientations)))
