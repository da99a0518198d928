"""The walks scene: generalisation to a new walk through the synthetic room.

``seven_scenes/synthetic_walks`` is the room of `lsattn.data.synthetic.room`
(same textures, furniture, plaques, renderer, intrinsics and 7-Scenes
writer) photographed along independent hand-held-like walks: each sequence
is a smooth random walk at head height over most of the floor
(:data:`WALK_LOW` .. :data:`WALK_HIGH`, >= 0.7 m from the walls) whose
camera turns freely in yaw (often through more than a full turn), with a
little pitch and roll. Sequences 1-4 are the training walks and sequence 5
the held-out test walk, 200 frames each at 240x320, as in
``seven_scenes/synthetic_room``; only the camera paths differ.

What the two pose scenes test:

* ``synthetic_room`` (`room.trajectory`): interpolation between
  training views. Every sequence sweeps the same central box while facing
  the +y wall, so each test view lies between training views.
* ``synthetic_walks`` (:func:`walk`): generalisation to a new walk. The test
  walk takes its own path and looks its own way; a view like it was seldom
  photographed from nearby.

Distance from each test pose to its nearest training pose
(:func:`distance_figures` of the default arguments, seed 0; median / 90th
percentile over the 200 test frames). `translation` is the nearest camera
centre, `rotation` the nearest orientation (each on its own), `joint` the
nearest by translation_m + rotation_deg / 30 (ours: 30 degrees count as
one metre), with that pose's translation and rotation:

  scene            translation m   rotation deg   joint m       joint deg
  synthetic_room   0.07 / 0.12     1.3 / 2.3      0.16 / 0.33   3.2 / 6.2
  synthetic_walks  0.12 / 0.20     2.2 / 3.2      0.45 / 0.66   4.6 / 7.0

So, for a test view of the walks, the nearest training view looking the
same way was taken about 0.45 m away (0.16 m in the room), and 10% of them
are more than 0.66 m away. Seeds 1 and 2 give joint medians of 0.42 and
0.63 m. A test (tests/test_walks.py) checks the table against the
generator.
"""

from __future__ import annotations

import pathlib
from typing import Callable, Sequence

import numpy as np

from lsattn.data.synthetic import room

# Camera centres (x, y) stay in this rectangle (the room is 4 m x 3 m); all
# furniture is below 1.0 m and every camera above 1.25 m, so no camera is
# inside an object and every wall plaque seen is unoccluded.
WALK_LOW = np.array([0.7, 0.7])
WALK_HIGH = np.array([3.3, 2.3])
HEAD_HEIGHT = 1.5
TRAIN_SEQUENCES = (1, 2, 3, 4)
TEST_SEQUENCES = (5,)
FRAMES_PER_SEQUENCE = 200
# The joint nearest pose: translation_m + rotation_deg / DEGREES_PER_METRE.
DEGREES_PER_METRE = 30.0
# Mean step between frames (m) and the spread of the turning rate (rad/frame).
_STEP_METRES = 0.03
_YAW_RATE = 0.06
# The walks' random streams are [seed, sequence, _STREAM]; the room's
# trajectories use [seed, sequence], so the two never share numbers.
_STREAM = 7


def _smooth_noise(rng: np.random.Generator, count: int, sigma: float) -> np.ndarray:
  """Gaussian-filtered white noise [count] with unit variance (correlation ~sigma frames)."""
  pad = int(4 * sigma)
  offsets = np.arange(-pad, pad + 1)
  kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
  kernel /= np.sqrt(np.sum(kernel**2))
  return np.convolve(rng.standard_normal(count + 2 * pad), kernel, mode="valid")


def _fold(values: np.ndarray, low: float, high: float) -> np.ndarray:
  """Reflects values [F] into [low, high] (a walker turning back at a wall)."""
  span = high - low
  wrapped = np.mod(values - low, 2 * span)
  return low + np.where(wrapped > span, 2 * span - wrapped, wrapped)


def walk(seed: int, sequence: int, num_frames: int) -> np.ndarray:
  """A hand-held walk through the room: camera-to-world poses [num_frames, 4, 4].

  The walker starts at a random point of the walk rectangle, heading a
  random way; heading and speed drift smoothly (about 0.03 m per frame) and
  the path reflects off the rectangle's edges. Height is 1.5 m with a few
  centimetres of smooth jitter. The camera's yaw is a smooth random walk of
  its own (not tied to the heading; about 3.4 degrees per frame), pitch is
  -0.1 rad (looking slightly down) plus jitter of about 3 degrees, roll
  jitter about 2 degrees. A fixed function of (seed, sequence, num_frames).
  """
  rng = np.random.default_rng([seed, sequence, _STREAM])
  start = rng.uniform(WALK_LOW, WALK_HIGH)
  heading = rng.uniform(0, 2 * np.pi) + np.cumsum(0.06 * _smooth_noise(rng, num_frames, 12))
  speed = _STEP_METRES * (1 + 0.3 * _smooth_noise(rng, num_frames, 12))
  steps = np.stack([np.cos(heading), np.sin(heading)], -1) * speed[:, None]
  free = start + np.cumsum(steps, axis=0)
  xy = np.stack([_fold(free[:, a], WALK_LOW[a], WALK_HIGH[a]) for a in range(2)], -1)
  height = HEAD_HEIGHT + 0.06 * _smooth_noise(rng, num_frames, 15)
  yaw = rng.uniform(0, 2 * np.pi) + np.cumsum(_YAW_RATE * _smooth_noise(rng, num_frames, 10))
  pitch = -0.1 + 0.06 * _smooth_noise(rng, num_frames, 15)
  roll = 0.03 * _smooth_noise(rng, num_frames, 15)
  return np.stack([room.pose_matrix(np.array([*xy[f], height[f]]), yaw[f], pitch[f],
                                         roll[f]) for f in range(num_frames)])


def write_synthetic_walks(
    root: str | pathlib.Path, *, seed: int = 0, image_size: tuple[int, int] = (240, 320),
    train_sequences: Sequence[int] = TRAIN_SEQUENCES,
    test_sequences: Sequence[int] = TEST_SEQUENCES,
    frames_per_sequence: int = FRAMES_PER_SEQUENCE) -> pathlib.Path:
  """Writes the walks scene as a 7-Scenes scene under ``root/synthetic_walks``.

  The files of `room.write_synthetic_seven_scenes`, one :func:`walk`
  per sequence. Returns the scene folder.
  """
  return room.write_synthetic_seven_scenes(
      root, seed=seed, image_size=image_size, train_sequences=train_sequences,
      test_sequences=test_sequences, frames_per_sequence=frames_per_sequence,
      scene_name="synthetic_walks", trajectory_fn=walk)


def sequence_poses(trajectory_fn: Callable[[int, int, int], np.ndarray], seed: int,
                   sequences: Sequence[int],
                   frames_per_sequence: int = FRAMES_PER_SEQUENCE) -> np.ndarray:
  """The camera-to-world poses [len(sequences) * F, 4, 4] of those sequences, in order."""
  return np.concatenate([trajectory_fn(seed, s, frames_per_sequence) for s in sequences])


def nearest_training_distances(train_poses: np.ndarray,
                               test_poses: np.ndarray) -> dict[str, np.ndarray]:
  """Distances from each test pose to the nearest training pose.

  Args:
    train_poses: [N, 4, 4] camera-to-world.
    test_poses: [T, 4, 4] camera-to-world.

  Returns:
    [T] arrays: 'translation_m' (nearest camera centre), 'rotation_deg'
    (nearest orientation: the angle of R_test^T R_train), and
    'joint_translation_m', 'joint_rotation_deg' of the training pose
    nearest by translation_m + rotation_deg / DEGREES_PER_METRE.
  """
  train_poses, test_poses = np.asarray(train_poses, float), np.asarray(test_poses, float)
  translation = np.linalg.norm(test_poses[:, None, :3, 3] - train_poses[None, :, :3, 3],
                               axis=-1)  # [T, N]
  trace = np.einsum("tij,nij->tn", test_poses[:, :3, :3], train_poses[:, :3, :3])
  rotation = np.degrees(np.arccos(np.clip((trace - 1) / 2, -1.0, 1.0)))  # [T, N]
  joint = np.argmin(translation + rotation / DEGREES_PER_METRE, axis=1)
  rows = np.arange(len(test_poses))
  return {"translation_m": translation.min(axis=1), "rotation_deg": rotation.min(axis=1),
          "joint_translation_m": translation[rows, joint],
          "joint_rotation_deg": rotation[rows, joint]}


def distance_figures(trajectory_fn: Callable[[int, int, int], np.ndarray] = walk, *,
                     seed: int = 0, train_sequences: Sequence[int] = TRAIN_SEQUENCES,
                     test_sequences: Sequence[int] = TEST_SEQUENCES,
                     frames_per_sequence: int = FRAMES_PER_SEQUENCE
                     ) -> dict[str, tuple[float, float]]:
  """(median, 90th percentile) of each of :func:`nearest_training_distances`.

  `trajectory_fn` is :func:`walk` (this scene) or `room.trajectory`
  (the room); the defaults are those the datasets are written with. Only
  poses are computed (nothing is rendered).
  """
  distances = nearest_training_distances(
      sequence_poses(trajectory_fn, seed, train_sequences, frames_per_sequence),
      sequence_poses(trajectory_fn, seed, test_sequences, frames_per_sequence))
  return {name: (float(np.median(values)), float(np.percentile(values, 90)))
          for name, values in distances.items()}
