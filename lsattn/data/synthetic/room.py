"""Synthetic datasets written in the official on-disk layouts.

* :func:`write_synthetic_seven_scenes`: a textured box room (4 m x 3 m x 2.5 m)
  ray cast with numpy from smooth hand-held-like trajectories, written like a
  7-Scenes scene (``seq-XX/frame-XXXXXX.color.png`` + ``.pose.txt``,
  ``TrainSplit.txt`` / ``TestSplit.txt``). As ``seven_scenes/synthetic_room``
  it tests interpolation between training views; the same room along
  independent walks (``synthetic_walks``, `lsattn.data.synthetic.walks`) tests
  generalisation to a new walk.
* :func:`write_synthetic_mit67`: the room re-dressed with a class-specific
  texture set and furniture layout per class, photographed from random
  viewpoints, written like MIT-67 (``Images/<class>/<file>.jpg``,
  ``TrainImages.txt`` / ``TestImages.txt``).

World frame: x east (0..4 m), y north (0..3 m), z up (0..2.5 m). Camera frame
(OpenCV, as in 7-Scenes): x right, y down, z forward; pixel (row i, column j)
has its centre at image coordinates (u, v) = (j, i). Poses are 4x4
camera-to-world matrices, ``p_world = R @ p_cam + t``.

Every surface has its own texture (photographs bundled with scikit-image,
which load without network, and procedural patterns), and each wall carries a
small, uniquely coloured plaque at eye height (:func:`markers`), so position
and orientation can be told from one image. Output is a deterministic function
of the arguments: the same seed gives byte-identical files.
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools
import pathlib
from typing import Callable, Sequence

import numpy as np
from PIL import Image
import skimage.data

from lsattn.errors import LsattnError

ROOM_SIZE = (4.0, 3.0, 2.5)
# Kinect intrinsics of 7-Scenes at 640x480; scaled to the requested size.
_FOCAL_640 = 585.0
# Camera centres stay in this box (>= 0.9 m from walls, above all furniture),
# so every wall plaque seen from it is unoccluded.
_CAMERA_LOW = np.array([1.1, 0.95, 1.25])
_CAMERA_HIGH = np.array([2.9, 2.05, 1.55])
MIT67_CLASS_NAMES = ("bookstore", "kitchen", "library", "bedroom", "corridor",
                     "gameroom", "bakery", "classroom", "office", "restaurant")
DEFAULT_NUM_CLASSES = 6
FACING_YAW = np.pi / 2  # trajectories look towards the +y wall ...
YAW_SWEEP = 0.8  # ... sweeping by up to this many radians either way


@dataclasses.dataclass(frozen=True, eq=False)
class Material:
  """A texture on a face: `texture` float32 [h, w, 3] in [0, 1].

  `tile_metres` None stretches the texture once over the face; otherwise it
  repeats every `tile_metres` metres.
  """
  texture: np.ndarray
  tile_metres: float | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Box:
  """An axis-aligned box `lo` [3] .. `hi` [3] (metres).

  `materials` holds one Material per face, ordered ``2 * axis + side`` with
  side 0 the face at `lo`, side 1 the face at `hi`.
  """
  lo: np.ndarray
  hi: np.ndarray
  materials: tuple[Material, ...]


@dataclasses.dataclass(frozen=True, eq=False)
class Scene:
  """The room (seen from inside) and the furniture in it (seen from outside)."""
  room: Box
  objects: tuple[Box, ...]


@dataclasses.dataclass(frozen=True)
class Marker:
  """A uniquely coloured plaque face on a wall of :func:`room_scene`.

  Attributes:
    name: which wall it hangs on.
    centre: [3] world coordinates of the centre of its visible face.
    normal: [3] unit normal of that face (pointing into the room).
    colour: RGB uint8 colour of the face (before shading).
  """
  name: str
  centre: tuple[float, float, float]
  normal: tuple[float, float, float]
  colour: tuple[int, int, int]


_MARKERS = (
    Marker("north", (3.05, 2.97, 1.4), (0.0, -1.0, 0.0), (220, 30, 30)),
    Marker("south", (0.95, 0.03, 1.4), (0.0, 1.0, 0.0), (30, 190, 50)),
    Marker("west", (0.03, 2.05, 1.4), (1.0, 0.0, 0.0), (40, 70, 230)),
    Marker("east", (3.97, 0.75, 1.4), (-1.0, 0.0, 0.0), (235, 200, 20)),
)
_MARKER_HALF_SIZE = 0.15
_MARKER_DEPTH = 0.03

# ---------------------------------------------------------------- textures

PHOTO_TEXTURES = ("astronaut", "coffee", "chelsea", "rocket", "brick", "grass",
                  "gravel", "camera", "page", "hubble_deep_field",
                  "immunohistochemistry")


@functools.cache
def _photo(name: str) -> np.ndarray:
  """A scikit-image sample photograph as float32 [h, w, 3] in [0, 1]."""
  image = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  step = max(1, max(image.shape[:2]) // 512)
  return np.ascontiguousarray(image[::step, ::step, :3])


@functools.cache
def _procedural(name: str) -> np.ndarray:
  """Procedural patterns 'planks', 'tiles', 'stripes': float32 [128, 128, 3]."""
  y, x = np.mgrid[0:128, 0:128].astype(np.float32) / 128.0
  if name == "planks":
    plank = np.floor(y * 4)
    shade = np.array([1.0, 0.8, 0.92, 0.7], np.float32)[plank.astype(int)]
    grain = 0.08 * np.sin(60 * x + 4 * np.sin(9 * y + plank))
    value = (shade + grain) * (np.abs(y * 4 - np.round(y * 4)) > 0.03)
    colour = value[..., None] * np.array([0.62, 0.4, 0.22], np.float32)
  elif name == "tiles":
    edge = (np.minimum(x % 0.5, y % 0.5) < 0.02)
    value = np.where(edge, 0.55, 0.93 + 0.03 * np.sin(40 * x) * np.sin(40 * y))
    colour = value[..., None] * np.ones(3, np.float32)
  elif name == "stripes":
    band = ((x + y) * 4) % 1.0 < 0.5
    colour = np.where(band[..., None], np.array([0.95, 0.55, 0.1], np.float32),
                      np.array([0.95, 0.9, 0.8], np.float32))
  else:
    raise ValueError(f"Unsupported procedural texture: {name!r}")
  return np.clip(colour, 0, 1).astype(np.float32)


def _material(name: str, tile_metres: float | None = None,
              tint: Sequence[float] = (1.0, 1.0, 1.0)) -> Material:
  """A named photo or procedural texture times an RGB `tint` [3]."""
  texture = _photo(name) if name in PHOTO_TEXTURES else _procedural(name)
  texture = texture * np.asarray(tint, np.float32)
  return Material(np.clip(texture, 0, 1).astype(np.float32), tile_metres)


def _solid(colour: Sequence[int]) -> Material:
  """A single RGB uint8 colour [3] as a 1x1 texture."""
  return Material(np.asarray(colour, np.float32).reshape(1, 1, 3) / 255.0, 1.0)


def _box(lo, hi, material: Material) -> Box:
  """A box `lo` [3] .. `hi` [3] with one material on all faces."""
  return Box(np.asarray(lo, float), np.asarray(hi, float), (material,) * 6)


def _room(west, east, south, north, floor, ceiling, size: Sequence[float] = ROOM_SIZE) -> Box:
  """The room box (0..`size` [3] metres) with one material per wall, floor and ceiling."""
  return Box(np.zeros(3), np.asarray(size, float),
             (west, east, south, north, floor, ceiling))


def _marker_box(marker: Marker) -> Box:
  """The thin plaque box whose inward face is `marker`."""
  centre, normal = np.asarray(marker.centre), np.asarray(marker.normal)
  extent = np.full(3, _MARKER_HALF_SIZE)
  extent[np.argmax(np.abs(normal))] = _MARKER_DEPTH / 2
  middle = centre - normal * _MARKER_DEPTH / 2
  return _box(middle - extent, middle + extent, _solid(marker.colour))


# ------------------------------------------------------------------ scenes


@functools.cache
def room_scene() -> Scene:
  """The 7-Scenes-like room: four photo walls, furniture and wall plaques."""
  room = _room(west=_material("chelsea"), east=_material("rocket"),
               south=_material("coffee"), north=_material("astronaut"),
               floor=_material("planks", 1.0), ceiling=_material("tiles", 1.2))
  furniture = (
      _box((0.2, 2.4, 0.0), (1.0, 2.9, 1.0),
           _material("brick", 0.5, (0.85, 0.5, 0.4))),      # cabinet
      _box((2.5, 0.25, 0.0), (3.5, 0.95, 0.75),
           _material("gravel", 0.4, (0.55, 0.6, 0.8))),     # table
      _box((3.3, 2.3, 0.0), (3.8, 2.8, 0.5),
           _material("grass", 0.5, (0.45, 0.8, 0.4))),      # crate
      _box((0.3, 0.35, 0.0), (0.7, 0.75, 0.6),
           _material("stripes", 0.3)),                      # stool
  )
  return Scene(room, furniture + tuple(_marker_box(m) for m in _MARKERS))


def markers() -> tuple[Marker, ...]:
  """The wall plaques of :func:`room_scene`, visible from every camera centre."""
  return _MARKERS


@functools.cache
def class_scene(class_index: int) -> Scene:
  """The room re-dressed for MIT-67 class `class_index`.

  Each class gets its own wall and floor textures, colour cast and furniture
  layout (a fixed function of the class index).
  """
  rng = np.random.default_rng([67, class_index])
  names = list(PHOTO_TEXTURES) + ["planks", "tiles", "stripes"]
  pool = [names[i] for i in rng.permutation(len(names))]
  # Hues a golden-ratio step apart give every class its own colour cast.
  cast = np.array(colorsys.hsv_to_rgb((0.618 * class_index) % 1.0, 0.45, 1.0))
  walls = [_material(name, None, cast) for name in pool[:4]]
  floor = _material(pool[4], 0.8, cast * 0.8)
  ceiling = _material("tiles", 1.0 + 0.5 * rng.random(), cast)
  furniture = []
  for name in pool[5:5 + rng.integers(2, 5)]:
    size = rng.uniform([0.4, 0.4, 0.4], [1.2, 1.2, 1.0])
    lo = rng.uniform(0.05, 1.0, 3) * (np.asarray(ROOM_SIZE) - size) * [1, 1, 0]
    furniture.append(_box(lo, lo + size, _material(name, 0.5, rng.uniform(0.4, 1.0, 3))))
  return Scene(_room(*walls, floor, ceiling), tuple(furniture))


# --------------------------------------------------------- camera geometry


def intrinsics(image_size: tuple[int, int]) -> np.ndarray:
  """7-Scenes-like pinhole intrinsics [3, 3] for `image_size` (H, W).

  Focal 585 px at 640 wide, scaled with the width; principal point at the
  image centre.
  """
  height, width = image_size
  focal = _FOCAL_640 * width / 640.0
  return np.array([[focal, 0.0, width / 2.0],
                   [0.0, focal, height / 2.0],
                   [0.0, 0.0, 1.0]])


def project_point(pose_c2w: np.ndarray, intrinsics: np.ndarray,
                  point_world: np.ndarray) -> tuple[np.ndarray, float]:
  """Projects a world point into a camera.

  Args:
    pose_c2w: [4, 4] camera-to-world pose.
    intrinsics: [3, 3] pinhole matrix.
    point_world: [3] point in world coordinates.

  Returns:
    `(uv, depth)`: uv [2] image coordinates (column, row; pixel centres at
    integers) and the depth along the optical axis (negative: behind).
  """
  rotation, centre = pose_c2w[:3, :3], pose_c2w[:3, 3]
  point_camera = rotation.T @ (np.asarray(point_world, float) - centre)
  depth = float(point_camera[2])
  uv = (intrinsics @ point_camera)[:2] / depth
  return uv, depth


def pose_matrix(position: np.ndarray, yaw: float, pitch: float,
                roll: float) -> np.ndarray:
  """Camera-to-world [4, 4] of a camera at `position` [3].

  yaw turns left about world z (0: looking along +x), pitch > 0 looks up,
  roll turns about the optical axis (radians).
  """
  level = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
  cy, sy = np.cos(yaw), np.sin(yaw)
  cp, sp = np.cos(pitch), np.sin(pitch)
  cr, sr = np.cos(roll), np.sin(roll)
  yaw_world = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
  # Turning about camera x by +pitch moves the optical axis towards -y (up).
  pitch_camera = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
  roll_camera = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
  pose = np.eye(4)
  pose[:3, :3] = yaw_world @ level @ pitch_camera @ roll_camera
  pose[:3, 3] = position
  return pose


def _smooth(rng: np.random.Generator, phase: np.ndarray, amplitude: float) -> np.ndarray:
  """A closed smooth curve [F] in [-amplitude, amplitude]: 3 random harmonics."""
  weights = rng.uniform(0.2, 1.0, 3)
  weights *= amplitude / weights.sum()
  offsets = rng.uniform(0, 2 * np.pi, 3)
  harmonics = np.arange(1, 4)[:, None]
  return np.sum(weights[:, None] * np.sin(harmonics * phase + offsets[:, None]), axis=0)


def trajectory(seed: int, sequence: int, num_frames: int, *,
               camera_box: tuple[Sequence[float], Sequence[float]] | None = None) -> np.ndarray:
  """A hand-held-like sweep: camera-to-world poses [num_frames, 4, 4].

  Like a 7-Scenes recording, each sequence wanders through the camera box
  while looking towards one part of the room (the +y wall, yaw pi/2) and
  sweeping left and right by up to about 50 degrees, with small pitch and
  roll. Sequences take different paths over the same region, so test views
  lie between training views (a model can generalise; with full turns, 1000
  frames leave nearby test views 0.2 m from any similar training view).
  `camera_box` (low [3], high [3]) is the box the centres stay in (None: the
  room's, :func:`room_scene`; another room's: `MultiRoom.camera_box`).
  """
  rng = np.random.default_rng([seed, sequence])
  phase = 2 * np.pi * np.arange(num_frames) / num_frames
  low, high = ((_CAMERA_LOW, _CAMERA_HIGH) if camera_box is None
               else (np.asarray(camera_box[0], float), np.asarray(camera_box[1], float)))
  middle = (low + high) / 2
  half = (high - low) / 2
  position = np.stack([middle[a] + _smooth(rng, phase, half[a]) for a in range(3)], -1)
  yaw = FACING_YAW + _smooth(rng, phase, YAW_SWEEP)
  # Hand-held cameras tend to look slightly down, which shows the furniture.
  pitch = -0.1 + _smooth(rng, phase, 0.12)
  roll = _smooth(rng, phase, 0.06)
  return np.stack([pose_matrix(position[f], yaw[f], pitch[f], roll[f])
                   for f in range(num_frames)])


# ---------------------------------------------------------------- rendering


@functools.cache
def _camera_rays(image_size: tuple[int, int]) -> np.ndarray:
  """Ray directions [3, H * W] in camera coordinates with z = 1."""
  height, width = image_size
  matrix = intrinsics(image_size)
  rows, columns = np.mgrid[0:height, 0:width].astype(np.float64)
  x = (columns - matrix[0, 2]) / matrix[0, 0]
  y = (rows - matrix[1, 2]) / matrix[1, 1]
  return np.stack([x.ravel(), y.ravel(), np.ones(x.size)])


def _argbest(values: np.ndarray, best: np.ndarray) -> np.ndarray:
  """Which row of values [3, N] equals best [N] (the first): int [N]."""
  return np.where(values[0] == best, 0, np.where(values[1] == best, 1, 2))


def _intersect(scene: Scene, origin: np.ndarray, directions: np.ndarray):
  """Nearest hit of each ray: `(t [N], face [N])`, face = 6 * box + 2 * axis + side.

  Box 0 is the room (rays leave it), boxes 1.. are the objects (rays enter).
  Directions are [3, N] (one row per axis: elementwise minima over rows are
  much faster in numpy than reductions over a short last axis).
  """
  column = origin[:, None]
  with np.errstate(divide="ignore", invalid="ignore"):
    inverse = 1.0 / directions
    room = scene.room
    exits = (np.where(directions > 0, room.hi[:, None], room.lo[:, None]) - column) * inverse
    t = np.minimum(np.minimum(exits[0], exits[1]), exits[2])
    axis = _argbest(exits, t)
    face = 2 * axis + (np.take_along_axis(directions, axis[None], 0)[0] > 0)
    for index, box in enumerate(scene.objects, start=1):
      t_lo = (box.lo[:, None] - column) * inverse
      t_hi = (box.hi[:, None] - column) * inverse
      entries = np.minimum(t_lo, t_hi)
      exits = np.maximum(t_lo, t_hi)
      near = np.maximum(np.maximum(entries[0], entries[1]), entries[2])
      far = np.minimum(np.minimum(exits[0], exits[1]), exits[2])
      hit = (near <= far) & (near > 0) & (near < t)
      if not hit.any():
        continue
      axis = _argbest(entries[:, hit], near[hit])
      side = np.take_along_axis(directions[:, hit], axis[None], 0)[0] < 0
      t[hit] = near[hit]
      face[hit] = 6 * index + 2 * axis + side
  return t, face


def _face_coordinates(box: Box, axis: int, side: int, inward: bool,
                      points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Texture coordinates (metres) of points [M, 3] on one face.

  Returns `(u, v, size)`: u grows to the viewer's right, v downwards
  (vertical faces) or along y (floor, ceiling); size [2] is the face extent.
  """
  if axis == 2:
    return points[:, 0] - box.lo[0], points[:, 1] - box.lo[1], (box.hi - box.lo)[:2]
  normal_sign = (1 if side == 0 else -1) * (1 if inward else -1)
  across = 1 - axis
  # Viewer's right on a face with normal +x is +y, with +y it is -x.
  right_positive = normal_sign > 0 if axis == 0 else normal_sign < 0
  if right_positive:
    u = points[:, across] - box.lo[across]
  else:
    u = box.hi[across] - points[:, across]
  v = box.hi[2] - points[:, 2]
  return u, v, np.array([box.hi[across] - box.lo[across], box.hi[2] - box.lo[2]])


def _sample(material: Material, u: np.ndarray, v: np.ndarray, size: np.ndarray) -> np.ndarray:
  """Bilinear texture lookup at face coordinates u, v [M] (metres) -> [M, 3]."""
  texture = material.texture
  height, width = texture.shape[:2]
  scale = size if material.tile_metres is None else np.full(2, material.tile_metres)
  x = u / scale[0] * width - 0.5
  y = v / scale[1] * height - 0.5
  x0, y0 = np.floor(x), np.floor(y)
  fx, fy = (x - x0)[:, None], (y - y0)[:, None]
  x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
  if material.tile_metres is None:
    wrap_fn = lambda index, size: np.clip(index, 0, size - 1)
  else:
    wrap_fn = np.mod
  xa, xb = wrap_fn(x0, width), wrap_fn(x0 + 1, width)
  ya, yb = wrap_fn(y0, height), wrap_fn(y0 + 1, height)
  top = texture[ya, xa] * (1 - fx) + texture[ya, xb] * fx
  bottom = texture[yb, xa] * (1 - fx) + texture[yb, xb] * fx
  return top * (1 - fy) + bottom * fy


# Brightness of faces by the axis of their normal (x, y, z): a soft key light.
_FACE_LIGHT = np.array([0.95, 0.8, 0.75])


def render(scene: Scene, pose_c2w: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
  """Ray casts `scene` from a camera-to-world pose [4, 4] -> uint8 [H, W, 3].

  Intrinsics are :func:`intrinsics` (image_size). Colour is the bilinear
  texture value times a per-axis face brightness and a distance fall-off.
  """
  image_size = tuple(int(s) for s in image_size)
  origin = pose_c2w[:3, 3]
  directions = pose_c2w[:3, :3] @ _camera_rays(image_size)
  t, face = _intersect(scene, origin, directions)
  points = (origin[:, None] + t * directions).T
  distance = t * np.sqrt(np.sum(directions**2, axis=0))
  colour = np.zeros_like(points)
  boxes = (scene.room,) + scene.objects
  for face_id in np.flatnonzero(np.bincount(face, minlength=6 * len(boxes))):
    box_index, face_index = divmod(int(face_id), 6)
    axis, side = divmod(face_index, 2)
    box = boxes[box_index]
    mask = face == face_id
    u, v, size = _face_coordinates(box, axis, side, box_index == 0, points[mask])
    colour[mask] = _sample(box.materials[face_index], u, v, size) * _FACE_LIGHT[axis]
  colour *= (1.0 / (1.0 + 0.02 * distance**2))[:, None]
  image = np.clip(np.round(colour * 255.0), 0, 255).astype(np.uint8)
  return image.reshape(*image_size, 3)


# ----------------------------------------------------------------- writers


def _format_pose(pose: np.ndarray) -> str:
  """A 4x4 matrix as 7-Scenes text: four lines, tab separated, 8 decimals."""
  return "".join("\t".join(f"{value: .8e}" for value in row) + "\n" for row in pose)


def _check_sizes(image_size: Sequence[int], **counts: int) -> None:
  """Raises LsattnError unless image_size is (H, W) >= 8 and counts >= 1."""
  if len(image_size) != 2 or min(image_size) < 8:
    raise LsattnError(f"image_size must be (height, width), each >= 8; got {image_size!r}")
  for name, value in counts.items():
    if value < 1:
      raise LsattnError(f"{name} must be >= 1; got {value!r}")


def write_synthetic_seven_scenes(
    root: str | pathlib.Path, *, seed: int = 0,
    image_size: tuple[int, int] = (240, 320),
    train_sequences: Sequence[int] = (1, 2, 3, 4), test_sequences: Sequence[int] = (5,),
    frames_per_sequence: int = 200, scene_name: str = "synthetic_room",
    trajectory_fn: Callable[[int, int, int], np.ndarray] = trajectory,
    scene: Scene | None = None) -> pathlib.Path:
  """Writes the synthetic room as a 7-Scenes scene under `root/scene_name`.

  Files: ``seq-XX/frame-XXXXXX.color.png`` (RGB uint8 [H, W, 3]),
  ``seq-XX/frame-XXXXXX.pose.txt`` (4x4 camera-to-world), ``TrainSplit.txt``
  and ``TestSplit.txt`` (lines ``sequenceN``). Each sequence is its own
  camera path, ``trajectory_fn(seed, sequence, frames_per_sequence)`` ->
  [F, 4, 4] camera-to-world (default :func:`trajectory`, sweeps through the
  same part of the room; `lsattn.data.synthetic.walks.walk` for the walks scene).
  `scene` is what is rendered (None: :func:`room_scene`; the rooms of one
  multi-scene set: :func:`write_synthetic_multi_room`).

  Returns:
    The scene folder.
  """
  _check_sizes(image_size, frames_per_sequence=frames_per_sequence)
  shared = set(train_sequences) & set(test_sequences)
  if shared or not train_sequences or not test_sequences:
    raise LsattnError(f"train_sequences {tuple(train_sequences)} and test_sequences "
                      f"{tuple(test_sequences)} must be non-empty and disjoint")
  scene_dir = pathlib.Path(root) / scene_name
  scene = room_scene() if scene is None else scene
  for sequence in sorted(set(train_sequences) | set(test_sequences)):
    sequence_dir = scene_dir / f"seq-{sequence:02d}"
    sequence_dir.mkdir(parents=True, exist_ok=True)
    for frame, pose in enumerate(trajectory_fn(seed, sequence, frames_per_sequence)):
      stem = sequence_dir / f"frame-{frame:06d}"
      # Level 3 encodes about 3x faster than the default 6 for ~7% more bytes.
      Image.fromarray(render(scene, pose, image_size)).save(f"{stem}.color.png",
                                                            compress_level=3)
      pathlib.Path(f"{stem}.pose.txt").write_text(_format_pose(pose))
  for split, sequences in (("TrainSplit.txt", train_sequences),
                           ("TestSplit.txt", test_sequences)):
    (scene_dir / split).write_text("".join(f"sequence{s}\n" for s in sequences))
  return scene_dir


def _irregular_names(rng: np.random.Generator, class_name: str, count: int) -> list[str]:
  """`count` distinct file names in the mixed styles of MIT-67."""
  names: set[str] = set()
  while len(names) < count:
    number = int(rng.integers(1, 10000))
    style = int(rng.integers(4))
    if style == 0:
      names.add(f"IMG_{number:04d}.jpg")
    elif style == 1:
      names.add(f"{class_name}_{number}.jpg")
    elif style == 2:
      names.add(f"int{number}.jpg")
    else:
      names.add(f"{class_name[:4]}_{number % 97:02d}_{'abcdefgh'[number % 8]}.jpg")
  return sorted(names)


def _photograph(scene: Scene, rng: np.random.Generator,
                image_size: tuple[int, int]) -> np.ndarray:
  """A random view of `scene`, randomly cropped and lit: uint8 [H, W, 3]."""
  height, width = image_size
  margin = (int(rng.integers(0, height // 4 + 1)), int(rng.integers(0, width // 4 + 1)))
  full = (height + height // 4, width + width // 4)
  position = rng.uniform(_CAMERA_LOW - [0.3, 0.3, 0.2], _CAMERA_HIGH + [0.3, 0.3, 0.2])
  pose = pose_matrix(position, rng.uniform(0, 2 * np.pi),
                     rng.uniform(-0.25, 0.25), rng.uniform(-0.08, 0.08))
  image = render(scene, pose, full)[margin[0]:margin[0] + height,
                                    margin[1]:margin[1] + width]
  brightness = rng.uniform(0.75, 1.25)
  return np.clip(np.round(image * brightness), 0, 255).astype(np.uint8)


def write_synthetic_mit67(
    root: str | pathlib.Path, *, seed: int = 0, num_classes: int = DEFAULT_NUM_CLASSES,
    train_per_class: int = 30, test_per_class: int = 10,
    image_size: tuple[int, int] = (96, 96)) -> pathlib.Path:
  """Writes a small indoor-scene classification set in the MIT-67 layout.

  Class k is :func:`class_scene` (k) seen from random viewpoints with random
  crops and brightness. Files: ``Images/<class>/<name>.jpg`` (JPEG quality
  90, [H, W, 3]) and ``TrainImages.txt`` / ``TestImages.txt`` listing
  ``<class>/<name>.jpg``.

  Returns:
    The dataset folder `root`.
  """
  _check_sizes(image_size, train_per_class=train_per_class, test_per_class=test_per_class)
  if not 2 <= num_classes <= len(MIT67_CLASS_NAMES):
    raise LsattnError(f"num_classes must be in [2, {len(MIT67_CLASS_NAMES)}]; "
                      f"got {num_classes!r}")
  root = pathlib.Path(root)
  lists: dict[str, list[str]] = {"TrainImages.txt": [], "TestImages.txt": []}
  for class_index, class_name in enumerate(MIT67_CLASS_NAMES[:num_classes]):
    rng = np.random.default_rng([seed, class_index])
    class_dir = root / "Images" / class_name
    class_dir.mkdir(parents=True, exist_ok=True)
    names = _irregular_names(rng, class_name, train_per_class + test_per_class)
    names = [names[i] for i in rng.permutation(len(names))]
    for index, name in enumerate(names):
      image = _photograph(class_scene(class_index), rng, tuple(image_size))
      Image.fromarray(image).save(class_dir / name, quality=90)
      split = "TrainImages.txt" if index < train_per_class else "TestImages.txt"
      lists[split].append(f"{class_name}/{name}")
  for split, lines in lists.items():
    (root / split).write_text("".join(line + "\n" for line in lines))
  return root
