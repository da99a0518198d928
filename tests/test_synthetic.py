"""Synthetic 7-Scenes and MIT-67 writers: layout, determinism, poses vs pixels."""

from __future__ import annotations

import pathlib
import socket

import numpy as np
from PIL import Image
import pytest

from lsattn import LsattnError
from lsattn.data.synthetic import room as synthetic
from written_files import assert_mit67_layout, assert_seeded, file_bytes, pixels  # tests/written_files.py

SMALL_SCENE = dict(image_size=(60, 80), train_sequences=(1, 2), test_sequences=(3,),
                   frames_per_sequence=16)
SMALL_MIT = dict(num_classes=4, train_per_class=6, test_per_class=3, image_size=(40, 40))


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory) -> pathlib.Path:
  return synthetic.write_synthetic_seven_scenes(tmp_path_factory.mktemp("7s"), **SMALL_SCENE)


@pytest.fixture(scope="module")
def mit_dir(tmp_path_factory) -> pathlib.Path:
  return synthetic.write_synthetic_mit67(tmp_path_factory.mktemp("mit"), **SMALL_MIT)


def _read_pose(path: pathlib.Path) -> np.ndarray:
  return np.array([[float(v) for v in line.split()]
                   for line in path.read_text().splitlines()])


def _sequence_poses(scene_dir: pathlib.Path, sequence: int) -> list[np.ndarray]:
  files = sorted((scene_dir / f"seq-{sequence:02d}").glob("frame-*.pose.txt"))
  return [_read_pose(f) for f in files]


def _chroma(rgb) -> np.ndarray:
  rgb = np.asarray(rgb, float)
  return rgb / max(rgb.sum(), 1.0)


def _marker_hits(scene_dir: pathlib.Path, yaw_error_deg: float = 0.0) -> tuple[int, int]:
  """(frames where a plaque centre projects into the image, of which match colour).

  `yaw_error_deg` turns every stored pose about the world vertical first: a
  control showing that the check notices wrong poses.
  """
  matrix = synthetic.intrinsics(SMALL_SCENE["image_size"])
  height, width = SMALL_SCENE["image_size"]
  angle = np.radians(yaw_error_deg)
  turn = np.eye(4)
  turn[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
  visible = matching = 0
  for png in sorted(scene_dir.glob("seq-*/frame-*.color.png")):
    image = pixels(png)
    pose = _read_pose(png.with_name(png.name.replace(".color.png", ".pose.txt")))
    pose[:3, :3] = turn[:3, :3] @ pose[:3, :3]
    for marker in synthetic.markers():
      (u, v), depth = synthetic.project_point(pose, matrix, marker.centre)
      facing = np.dot(marker.normal, pose[:3, 3] - np.asarray(marker.centre)) > 0
      column, row = int(round(u)), int(round(v))
      if depth <= 0.1 or not facing or not (0 <= row < height and 0 <= column < width):
        continue
      visible += 1
      distance = np.abs(_chroma(image[row, column]) - _chroma(marker.colour)).max()
      matching += distance < 0.06
  return visible, matching


def test_seven_scenes_layout_and_rigid_poses(scene_dir):
  assert scene_dir.name == "synthetic_room"
  for split, expected in (("TrainSplit.txt", [1, 2]), ("TestSplit.txt", [3])):
    lines = (scene_dir / split).read_text().split()
    assert lines == [f"sequence{s}" for s in expected]
    for sequence in expected:
      assert len(list((scene_dir / f"seq-{sequence:02d}").glob("*.color.png"))) == 16
  with Image.open(scene_dir / "seq-01" / "frame-000000.color.png") as image:
    assert image.format == "PNG" and image.mode == "RGB" and image.size == (80, 60)
  for sequence in (1, 2, 3):
    for pose in _sequence_poses(scene_dir, sequence):
      assert pose.shape == (4, 4)
      np.testing.assert_array_equal(pose[3], [0, 0, 0, 1])
      rotation = pose[:3, :3]
      np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-6)
      assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-6)
  text = (scene_dir / "seq-03" / "frame-000005.pose.txt").read_text()
  assert all(len(value.split("e")[0].split(".")[1]) >= 6 for value in text.split())


def test_seven_scenes_same_seed_same_bytes_other_seed_differs(tmp_path, scene_dir):
  assert_seeded(
      lambda folder, **seed: synthetic.write_synthetic_seven_scenes(folder, **SMALL_SCENE, **seed),
      scene_dir, tmp_path, ("seq-01/frame-000000.color.png", "seq-01/frame-000000.pose.txt"))


def test_projection_of_optical_axis_point_is_principal_point():
  pose = synthetic.pose_matrix(np.array([2.0, 1.5, 1.4]), yaw=0.7, pitch=0.1, roll=0.05)
  matrix = synthetic.intrinsics((240, 320))
  assert matrix[0, 0] == pytest.approx(292.5)
  point = pose[:3, :3] @ np.array([0.0, 0.0, 2.0]) + pose[:3, 3]
  uv, depth = synthetic.project_point(pose, matrix, point)
  np.testing.assert_allclose(uv, [160.0, 120.0], atol=1e-9)
  assert depth == pytest.approx(2.0)
  forward = pose[:3, 2]
  assert forward[2] == pytest.approx(np.sin(0.1))  # positive pitch looks up


def test_poses_agree_with_images_at_marker_plaques(scene_dir):
  visible, matching = _marker_hits(scene_dir)
  assert visible >= 15
  assert matching >= 0.9 * visible
  visible, matching = _marker_hits(scene_dir, yaw_error_deg=25.0)
  assert matching < 0.5 * visible


def test_train_and_test_trajectories_differ_but_share_the_room(scene_dir):
  centres = {s: np.array([p[:3, 3] for p in _sequence_poses(scene_dir, s)]) for s in (1, 2, 3)}
  for a, b in ((1, 2), (1, 3), (2, 3)):
    assert np.abs(centres[a] - centres[b]).max() > 0.2
  everything = np.concatenate(list(centres.values()))
  room = np.asarray(synthetic.ROOM_SIZE)
  assert np.all(everything[:, :2] >= 0.8) and np.all(everything[:, :2] <= room[:2] - 0.8)
  assert np.all((everything[:, 2] > 1.0) & (everything[:, 2] < 1.8))  # above the furniture
  for sequence in (1, 2, 3):
    forward = np.array([p[:3, 2] for p in _sequence_poses(scene_dir, sequence)])
    yaw = np.unwrap(np.arctan2(forward[:, 1], forward[:, 0]))
    # Each sequence sweeps across the +y side of the room, as in a 7-Scenes recording.
    assert 0.5 < np.ptp(yaw) < 2 * synthetic.YAW_SWEEP + 0.3
    assert np.all(np.abs(yaw - synthetic.FACING_YAW) < synthetic.YAW_SWEEP + 0.3)


def test_seven_scenes_rejects_overlapping_splits(tmp_path):
  with pytest.raises(LsattnError, match="disjoint"):
    synthetic.write_synthetic_seven_scenes(tmp_path, train_sequences=(1, 2),
                                           test_sequences=(2,), frames_per_sequence=1)


def test_textures_load_without_network(monkeypatch):
  def refuse(*args, **kwargs):
    raise OSError("network disabled in this test")
  monkeypatch.setattr(socket.socket, "connect", refuse)
  synthetic._photo.cache_clear()
  for name in synthetic.PHOTO_TEXTURES:
    texture = synthetic._photo(name)
    assert texture.ndim == 3 and texture.shape[2] == 3 and texture.dtype == np.float32
    assert texture.std() > 0.02


def test_mit67_layout_and_lists(mit_dir):
  classes = sorted(p.name for p in (mit_dir / "Images").iterdir())
  assert classes == sorted(synthetic.MIT67_CLASS_NAMES[:4])
  train = (mit_dir / "TrainImages.txt").read_text().split()
  test = (mit_dir / "TestImages.txt").read_text().split()
  assert len(train) == 4 * 6 and len(test) == 4 * 3 and not set(train) & set(test)
  assert_mit67_layout(mit_dir, train, test, classes, (40, 40))


def test_mit67_deterministic(tmp_path, mit_dir):
  again = synthetic.write_synthetic_mit67(tmp_path / "again", **SMALL_MIT)
  assert file_bytes(again) == file_bytes(mit_dir)
  other = synthetic.write_synthetic_mit67(tmp_path / "other", seed=3, **SMALL_MIT)
  assert file_bytes(other) != file_bytes(mit_dir)


def test_mit67_classes_differ_by_content_and_images_vary(mit_dir):
  def mean_colour(relative):
    return pixels(mit_dir / "Images" / relative).mean(axis=(0, 1))
  train = (mit_dir / "TrainImages.txt").read_text().split()
  test = (mit_dir / "TestImages.txt").read_text().split()
  classes = sorted({line.split("/")[0] for line in train})
  class_means = np.array([np.mean([mean_colour(r) for r in train if r.startswith(c + "/")],
                                  axis=0) for c in classes])
  predictions = [classes[np.argmin(np.linalg.norm(class_means - mean_colour(r), axis=1))]
                 for r in test]
  accuracy = np.mean([p == r.split("/")[0] for p, r in zip(predictions, test)])
  assert accuracy >= 0.6  # chance is 0.25
  first = pixels(mit_dir / "Images" / train[0]).astype(float)
  second = pixels(mit_dir / "Images" / train[1]).astype(float)
  assert first.std() > 10 and np.abs(first - second).mean() > 5


def test_mit67_rejects_too_many_classes(tmp_path):
  with pytest.raises(LsattnError, match="num_classes"):
    synthetic.write_synthetic_mit67(tmp_path, num_classes=68)
