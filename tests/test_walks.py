"""The walks scene (lsattn.data.synthetic.walks): layout, poses, the documented distances, the build."""

from __future__ import annotations

import functools
import pathlib
import re
import socket

import numpy as np
from PIL import Image
import pytest

from lsattn import geometry
from lsattn.data import datasets, formats, pipeline
from lsattn.data.synthetic import room as synthetic, walks
from written_files import assert_seeded  # tests/written_files.py

SMALL = dict(image_size=(24, 32), frames_per_sequence=5)


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory) -> pathlib.Path:
  return walks.write_synthetic_walks(tmp_path_factory.mktemp("walks"), **SMALL)


@pytest.fixture(scope="module")
def full_poses() -> dict[int, np.ndarray]:
  """Every sequence's poses [200, 4, 4] at the default settings (nothing rendered)."""
  sequences = walks.TRAIN_SEQUENCES + walks.TEST_SEQUENCES
  return {s: walks.walk(0, s, walks.FRAMES_PER_SEQUENCE) for s in sequences}


def _yaw(poses: np.ndarray) -> np.ndarray:
  forward = poses[:, :3, 2]  # the optical axis in world coordinates
  return np.arctan2(forward[:, 1], forward[:, 0])


def test_official_seven_scenes_layout(scene_dir):
  assert scene_dir.name == "synthetic_walks"
  assert (scene_dir / "TrainSplit.txt").read_text() == "sequence1\nsequence2\nsequence3\nsequence4\n"
  assert (scene_dir / "TestSplit.txt").read_text() == "sequence5\n"
  for sequence in range(1, 6):
    folder = scene_dir / f"seq-{sequence:02d}"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([f"frame-{f:06d}.color.png" for f in range(5)]
                           + [f"frame-{f:06d}.pose.txt" for f in range(5)])
    with Image.open(folder / "frame-000003.color.png") as image:
      assert image.format == "PNG" and image.mode == "RGB" and image.size == (32, 24)
  # The official reader takes it: poses rigid, quaternions unit and canonical.
  train = formats.read_seven_scenes(scene_dir, "train")
  test = formats.read_seven_scenes(scene_dir, "test")
  assert len(train) == 20 and len(test) == 5
  assert {r.sequence for r in test} == {"seq-05"}
  for record in train + test:
    quaternion = np.asarray(record.orientation)
    assert np.linalg.norm(quaternion) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(quaternion, geometry.canonical_quaternion(quaternion))


def test_written_poses_are_the_walks(scene_dir):
  for record in formats.read_seven_scenes(scene_dir, "test"):
    frame = int(record.image_name.split("frame-")[1][:6])
    pose = walks.walk(0, 5, SMALL["frames_per_sequence"])[frame]
    np.testing.assert_allclose(record.position, pose[:3, 3], atol=1e-6)
    np.testing.assert_allclose(geometry.quaternion_to_matrix(np.asarray(record.orientation)),
                               pose[:3, :3], atol=1e-6)


def test_walks_stay_at_head_height_inside_the_room_and_move_smoothly(full_poses):
  for poses in full_poses.values():
    centres = poses[:, :3, 3]
    assert np.all(centres[:, :2] >= walks.WALK_LOW - 1e-9)
    assert np.all(centres[:, :2] <= walks.WALK_HIGH + 1e-9)
    assert np.all((centres[:, 2] > 1.25) & (centres[:, 2] < 1.75))  # above all furniture
    assert np.ptp(centres[:, 2]) > 0.03  # head height jitters
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert steps.max() < 0.1 and np.sum(steps) > 3.0  # a walk of metres, no jumps
    turns = np.degrees(np.abs(np.angle(np.exp(1j * np.diff(_yaw(poses))))))
    assert turns.max() < 15.0
    rotations = poses[:, :3, :3]
    np.testing.assert_allclose(np.einsum("fji,fjk->fik", rotations, rotations),
                               np.broadcast_to(np.eye(3), rotations.shape), atol=1e-9)


def test_cameras_turn_freely_and_walks_take_their_own_paths(full_poses):
  train_yaw = np.concatenate([_yaw(full_poses[s]) for s in walks.TRAIN_SEQUENCES])
  counts, _ = np.histogram(train_yaw, bins=8, range=(-np.pi, np.pi))
  assert np.all(counts > 0)  # every compass direction is looked at
  # The room's sweeps face one wall: most directions are never looked at.
  room_yaw = np.concatenate([_yaw(synthetic.trajectory(0, s, 200)) for s in range(1, 5)])
  assert np.sum(np.histogram(room_yaw, bins=8, range=(-np.pi, np.pi))[0] == 0) >= 3
  for a in full_poses:
    for b in full_poses:
      if a < b:
        gap = np.linalg.norm(full_poses[a][:, :3, 3] - full_poses[b][:, :3, 3], axis=1)
        assert np.median(gap) > 0.3


def test_nearest_training_distances_on_a_hand_made_case():
  train = np.stack([synthetic.pose_matrix(np.array([0.0, 0.0, 1.5]), 0.0, 0.0, 0.0),
                    synthetic.pose_matrix(np.array([1.0, 0.0, 1.5]), np.radians(90), 0.0, 0.0)])
  test = synthetic.pose_matrix(np.array([0.1, 0.0, 1.5]), np.radians(80), 0.0, 0.0)[None]
  distances = walks.nearest_training_distances(train, test)
  assert distances["translation_m"] == pytest.approx([0.1])
  assert distances["rotation_deg"] == pytest.approx([10.0])
  # Joint cost: 0.1 + 80 / 30 to the first, 0.9 + 10 / 30 to the second.
  assert distances["joint_translation_m"] == pytest.approx([0.9])
  assert distances["joint_rotation_deg"] == pytest.approx([10.0])


def _documented_figures() -> dict[str, dict[str, tuple[float, float]]]:
  """The table of lsattn/data/synthetic/walks.py's docstring: scene -> name -> (median, p90)."""
  names = ("translation_m", "rotation_deg", "joint_translation_m", "joint_rotation_deg")
  table = {}
  for line in walks.__doc__.splitlines():
    match = re.fullmatch(r"\s*(synthetic_\w+)((?:\s+[\d.]+ / [\d.]+){4})\s*", line)
    if match:
      pairs = re.findall(r"([\d.]+) / ([\d.]+)", match.group(2))
      table[match.group(1)] = {n: (float(a), float(b)) for n, (a, b) in zip(names, pairs)}
  return table


def test_docstring_distance_figures_are_what_the_generators_give():
  documented = _documented_figures()
  assert set(documented) == {"synthetic_room", "synthetic_walks"}
  measured = {"synthetic_room": walks.distance_figures(synthetic.trajectory),
              "synthetic_walks": walks.distance_figures(walks.walk)}
  for scene, figures in documented.items():
    for name, (median, p90) in figures.items():
      places = 2 if name.endswith("_m") else 1  # as the table is rounded
      tolerance = 0.5 * 10.0**-places + 1e-9
      assert abs(measured[scene][name][0] - median) <= tolerance, (scene, name)
      assert abs(measured[scene][name][1] - p90) <= tolerance, (scene, name)
  # The point of the scene: a similar training view is much further away.
  assert (measured["synthetic_walks"]["joint_translation_m"][0]
          > 2 * measured["synthetic_room"]["joint_translation_m"][0])


def test_same_seed_same_bytes_other_seed_differs(tmp_path, scene_dir):
  assert_seeded(lambda folder, **seed: walks.write_synthetic_walks(folder, **SMALL, **seed),
                scene_dir, tmp_path,
                ("seq-01/frame-000000.color.png", "seq-05/frame-000000.pose.txt"))


def test_builds_offline_through_datasets_prepare(tmp_path, monkeypatch):
  def refuse(*args, **kwargs):
    raise OSError("network disabled in this test")
  monkeypatch.setattr(socket.socket, "connect", refuse)
  # prepare writes the scene itself (at the test's tiny size) and builds it.
  monkeypatch.setattr(walks, "write_synthetic_walks",
                      functools.partial(walks.write_synthetic_walks, **SMALL))
  builder = datasets.prepare("seven_scenes/synthetic_walks", tmp_path / "data")
  assert (tmp_path / "data" / "manual" / "seven_scenes_synthetic_walks" / "synthetic_walks"
          / "TestSplit.txt").is_file()
  train, test = pipeline.Split(builder, "train"), pipeline.Split(builder, "test")
  assert len(train) == 20 and len(test) == 5
  assert set(test.labels["sequence"]) == {"seq-05"}
  expected = walks.walk(0, 5, SMALL["frames_per_sequence"])[:, :3, 3]
  order = np.argsort(test.labels["image_name"])
  np.testing.assert_allclose(test.labels["position"][order], expected, atol=1e-5)
