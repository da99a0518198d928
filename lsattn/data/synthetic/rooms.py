"""Several synthetic rooms, each a 7-Scenes scene: the embedded multi-scene set.

``seven_scenes/synthetic_study``, ``seven_scenes/synthetic_hall`` and
``seven_scenes/synthetic_gallery`` are three rooms that differ in size
(`ROOMS`: 3.2 to 6 m wide), in the textures of their walls, floor and
ceiling, in their furniture (layout and materials) and in the colours of
their wall plaques. Each is written by `lsattn.data.synthetic.room`'s
7-Scenes writer (`room.write_synthetic_seven_scenes` with this room as its
``scene`` and its camera box in the trajectory), so each is an ordinary
7-Scenes scene folder; a config names several of them in ``config.scenes``
to train one model for all (configs/demo_multiscene.py).

The rooms' sizes, textures and layouts are ours; nothing in the paper or in
MS-Transformer prescribes them. Camera centres stay in a box that keeps the
same relative margins as `room.room_scene`'s (>= 0.9 m from the walls there)
and above all furniture (at most 1.0 m high; cameras from 1.25 m up).
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools
import pathlib

import numpy as np

from lsattn.data.synthetic import room
from lsattn.errors import LsattnError


@dataclasses.dataclass(frozen=True)
class RoomSpec:
  """One room of the set.

  Attributes:
    size: (x, y, z) extent in metres.
    walls: textures of the west, east, south and north walls (`room` names).
    floor, ceiling: textures (tiled every `floor_tile` / 1.2 m).
    tint: RGB cast of every surface.
    furniture: boxes as (lo, hi) in fractions of the room's floor and metres
      of height, and a texture name.
    plaque_hue: hue of the first of the four wall plaques (the others a
      quarter turn apart), so no two rooms share a plaque colour.
  """
  size: tuple[float, float, float]
  walls: tuple[str, str, str, str]
  floor: str
  ceiling: str
  tint: tuple[float, float, float]
  furniture: tuple[tuple[tuple[float, float, float], tuple[float, float, float], str], ...]
  plaque_hue: float


ROOMS: dict[str, RoomSpec] = {
    "synthetic_study": RoomSpec(
        size=(3.2, 2.6, 2.4), walls=("page", "camera", "brick", "coffee"), floor="planks",
        ceiling="tiles", tint=(1.0, 0.92, 0.8),
        furniture=(((0.05, 0.7, 0.0), (0.35, 0.95, 0.9), "gravel"),
                   ((0.6, 0.05, 0.0), (0.95, 0.3, 0.75), "stripes")),
        plaque_hue=0.05),
    "synthetic_hall": RoomSpec(
        size=(6.0, 4.0, 3.0), walls=("gravel", "grass", "hubble_deep_field",
                                     "immunohistochemistry"),
        floor="tiles", ceiling="planks", tint=(0.8, 0.9, 1.0),
        furniture=(((0.1, 0.1, 0.0), (0.25, 0.2, 1.0), "brick"),
                   ((0.75, 0.8, 0.0), (0.95, 0.95, 0.6), "coffee"),
                   ((0.4, 0.85, 0.0), (0.6, 0.97, 0.8), "page")),
        plaque_hue=0.3),
    "synthetic_gallery": RoomSpec(
        size=(5.0, 2.8, 2.6), walls=("rocket", "stripes", "chelsea", "astronaut"),
        floor="gravel", ceiling="tiles", tint=(0.95, 1.0, 0.85),
        furniture=(((0.45, 0.05, 0.0), (0.6, 0.2, 0.5), "camera"),
                   ((0.05, 0.05, 0.0), (0.2, 0.3, 0.9), "grass")),
        plaque_hue=0.55),
}
NAMES = tuple(ROOMS)

# room.room_scene's camera box as fractions of its room (x, y) and its heights (z).
_CAMERA_FRACTION_LOW = np.array([1.1 / 4.0, 0.95 / 3.0])
_CAMERA_FRACTION_HIGH = np.array([2.9 / 4.0, 2.05 / 3.0])
_CAMERA_HEIGHTS = (1.25, 1.55)


def _spec(name: str) -> RoomSpec:
  if name not in ROOMS:
    raise LsattnError(f"unknown synthetic room {name!r}; the rooms are {NAMES}")
  return ROOMS[name]


def camera_box(name: str) -> tuple[np.ndarray, np.ndarray]:
  """(low [3], high [3]): where the camera centres of room `name` stay."""
  size = np.asarray(_spec(name).size)
  low = np.array([*(_CAMERA_FRACTION_LOW * size[:2]), _CAMERA_HEIGHTS[0]])
  high = np.array([*(_CAMERA_FRACTION_HIGH * size[:2]), _CAMERA_HEIGHTS[1]])
  return low, high


def _plaques(spec: RoomSpec) -> tuple[room.Marker, ...]:
  """One plaque per wall at eye height, placed like `room.markers`' relative to the room."""
  x, y, _ = spec.size
  places = (("north", (0.76 * x, y - 0.03, 1.4), (0.0, -1.0, 0.0)),
            ("south", (0.24 * x, 0.03, 1.4), (0.0, 1.0, 0.0)),
            ("west", (0.03, 0.68 * y, 1.4), (1.0, 0.0, 0.0)),
            ("east", (x - 0.03, 0.25 * y, 1.4), (-1.0, 0.0, 0.0)))
  plaques = []
  for index, (wall, centre, normal) in enumerate(places):
    rgb = colorsys.hsv_to_rgb((spec.plaque_hue + 0.25 * index) % 1.0, 0.85, 0.9)
    plaques.append(room.Marker(wall, centre, normal, tuple(int(round(255 * c)) for c in rgb)))
  return tuple(plaques)


@functools.cache
def scene(name: str) -> room.Scene:
  """Room `name` as `room.render` draws it."""
  spec = _spec(name)
  tint = spec.tint
  walls = [room._material(texture, None, tint) for texture in spec.walls]
  shell = room._room(*walls, room._material(spec.floor, 1.0, tint),
                     room._material(spec.ceiling, 1.2, tint), size=spec.size)
  size = np.asarray(spec.size)
  furniture = tuple(
      room._box(np.asarray(lo) * [size[0], size[1], 1.0], np.asarray(hi) * [size[0], size[1], 1.0],
                room._material(texture, 0.5, tint))
      for lo, hi, texture in spec.furniture)
  return room.Scene(shell, furniture + tuple(room._marker_box(m) for m in _plaques(spec)))


def write_synthetic_room(root: str | pathlib.Path, name: str, *, seed: int = 0,
                         **writer_options) -> pathlib.Path:
  """Writes room `name` as the 7-Scenes scene ``root/name`` (`room.write_synthetic_seven_scenes`
  with `writer_options`: image_size, sequences, frames_per_sequence).

  Each room's camera paths are its own (the trajectory's sequence numbers are offset by
  the room's place in `NAMES`), inside its `camera_box`.
  """
  _spec(name)
  offset = 100 * (NAMES.index(name) + 1)
  box = camera_box(name)
  paths = lambda seed, sequence, frames: room.trajectory(seed, offset + sequence, frames,
                                                         camera_box=box)
  return room.write_synthetic_seven_scenes(root, seed=seed, scene_name=name,
                                           trajectory_fn=paths, scene=scene(name),
                                           **writer_options)
