"""7-Scenes' SfM pseudo ground truth and the community's per-frame pose lines.

The pGT files are written here in the published format (`rgb_file qw qx qy qz
tx ty tz f`, world to camera) from the synthetic room's own camera paths, put
in another world frame than the D-SLAM `.pose.txt` files, so a build that read
the wrong poses, or converted them wrongly, fails. Images are tiny solid
colours; each build takes about a second.
"""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image
import pytest

from lsattn import LsattnError, config_checks, config_schema, geometry
from lsattn.data import builders, datasets, pipeline, pseudo_gt
from lsattn.data.synthetic import room

SCENE = "chess"
FOCAL = 526.22
FRAMES = 4  # per sequence: sequence 1 trains, sequence 2 tests
# The SfM world differs from the D-SLAM one by a rotation about z and a shift.
WORLD_ROTATION = geometry.quaternion_to_matrix(np.array([np.cos(0.3), 0.0, 0.0, np.sin(0.3)]))
WORLD_SHIFT = np.array([0.5, -1.25, 2.0])


def _world_to_camera_line(name: str, camera_to_world: np.ndarray, focal=FOCAL) -> str:
  """A pGT line written from the matrix, without lsattn's conversion code."""
  rotation = camera_to_world[:3, :3].T  # world to camera
  translation = -rotation @ camera_to_world[:3, 3]
  q = geometry.matrix_to_quaternion(rotation)
  numbers = [*q, *translation] + ([] if focal is None else [focal])
  return " ".join([name, *(f"{v:.9f}" for v in numbers)])


def _scene(manual: pathlib.Path) -> dict:
  """A 7-Scenes-layout scene with D-SLAM poses and SfM pGT files; returns
  {split: {image_name: (sfm camera-to-world [4, 4], dslam camera-to-world [4, 4])}}."""
  folder = manual / SCENE
  expected = {"train": {}, "test": {}}
  for sequence, split in ((1, "train"), (2, "test")):
    lines = []
    for frame, dslam in enumerate(room.trajectory(7, sequence, FRAMES)):
      stem = folder / f"seq-{sequence:02d}" / f"frame-{frame:06d}"
      stem.parent.mkdir(parents=True, exist_ok=True)
      Image.new("RGB", (48, 32), (40 * frame, 90, 60 * sequence)).save(f"{stem}.color.png")
      np.savetxt(f"{stem}.pose.txt", dslam)
      sfm = np.eye(4)
      sfm[:3, :3] = WORLD_ROTATION @ dslam[:3, :3]
      sfm[:3, 3] = WORLD_ROTATION @ dslam[:3, 3] + WORLD_SHIFT
      name = f"seq-{sequence:02d}/frame-{frame:06d}.color.png"
      expected[split][name] = (sfm, dslam)
      lines.append(_world_to_camera_line(name, sfm))
    path = pseudo_gt.pgt_path(manual, SCENE, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines[::-1]) + "\n")  # any order
  (folder / "TrainSplit.txt").write_text("sequence1\n")
  (folder / "TestSplit.txt").write_text("sequence2\n")
  return expected


def _assert_poses(builder, split: str, expected: dict, which: int) -> None:
  labels = pipeline.Split(builder, split).labels
  assert sorted(labels["image_name"]) == sorted(expected)
  for name, position, orientation in zip(labels["image_name"], labels["position"],
                                         labels["orientation"]):
    pose = expected[name][which]
    np.testing.assert_allclose(position, pose[:3, 3], atol=1e-6)
    np.testing.assert_allclose(orientation, geometry.matrix_to_quaternion(pose[:3, :3]),
                               atol=1e-6)
    assert orientation[np.flatnonzero(np.abs(orientation) > 1e-6)[0]] > 0  # canonical sign


def test_both_ground_truths_are_separate_builds_with_their_own_poses(tmp_path):
  manual, data_dir = tmp_path / "manual", tmp_path / "data"
  expected = _scene(manual)
  sfm = datasets.prepare(f"seven_scenes/{SCENE}", data_dir, manual, ground_truth="sfm")
  dslam = datasets.prepare(f"seven_scenes/{SCENE}", data_dir, manual)
  assert (sfm.builder_config.name, dslam.builder_config.name) == ("chess_sfm", "chess")
  assert pathlib.Path(sfm.data_dir) != pathlib.Path(dslam.data_dir)
  for split in ("train", "test"):
    _assert_poses(sfm, split, expected[split], 0)
    _assert_poses(dslam, split, expected[split], 1)
  # f is kept with the SfM poses; the D-SLAM build's records are as before.
  assert set(sfm.as_data_source("test")[0]) - set(dslam.as_data_source("test")[0]) == {
      "focal_length"}
  np.testing.assert_allclose(pipeline.Split(sfm, "test").labels["focal_length"], FOCAL,
                             rtol=1e-6)
  assert sfm.info.metadata["ground_truth"] == "sfm"
  assert "ground_truth" not in dslam.info.metadata

  # The pGT files are part of the SfM build's source, not of the D-SLAM one's.
  path = pseudo_gt.pgt_path(manual, SCENE, "test")
  path.write_text(path.read_text().replace(" 526.22", " 526.23", 1))
  assert datasets.prepare(f"seven_scenes/{SCENE}", data_dir, manual).is_prepared()
  with pytest.raises(LsattnError, match=f"built from other files.*{path.name}"):
    datasets.prepare(f"seven_scenes/{SCENE}", data_dir, manual, ground_truth="sfm")


def _drop_a_line(manual):
  path = pseudo_gt.pgt_path(manual, SCENE, "test")
  lines = path.read_text().splitlines()
  path.write_text("\n".join(line for line in lines
                            if not line.startswith("seq-02/frame-000001")) + "\n")
  return path, ["no line for frame seq-02/frame-000001.color.png",
                f"{manual / SCENE / 'TestSplit.txt'}:1"]


def _replace_line(manual, split, index, change):
  path = pseudo_gt.pgt_path(manual, SCENE, split)
  lines = path.read_text().splitlines()
  lines[index] = change(lines[index])
  path.write_text("\n".join(lines) + "\n")
  return path, f"{path}:{index + 1}:"


def _malformed(manual):
  path, where = _replace_line(manual, "train", 1, lambda line: line.rsplit(" ", 1)[0])
  return path, [where, "expected 9 fields"]


def _non_unit(manual):
  def scaled(line):
    fields = line.split()
    return " ".join([fields[0], *(str(1.1 * float(v)) for v in fields[1:5]), *fields[5:]])
  path, where = _replace_line(manual, "test", 2, scaled)
  return path, [where, "norm 1.1", "unit quaternion"]


def _another_scene(manual):
  """fire's test split (sequences 3 and 4) copied over chess's."""
  path = pseudo_gt.pgt_path(manual, SCENE, "test")
  path.write_text(path.read_text().replace("seq-02/", "seq-04/"))
  return path, [f"{path}:1:", f"seq-04/frame-{FRAMES - 1:06d}.color.png", "another scene",
                "seq-02"]


def _twice(manual):
  path, where = _replace_line(manual, "train", 0, lambda line: line)
  path.write_text(path.read_text() + path.read_text().splitlines()[0] + "\n")
  return path, [f"{path}:{FRAMES + 1}:", "second line", "is line 1"]


def _missing_file(manual):
  path = pseudo_gt.pgt_path(manual, SCENE, "train")
  path.unlink()
  return path, [str(path), "not found", "pgt/"]


BAD_PGT = {"missing-frame": _drop_a_line, "malformed-line": _malformed,
           "non-unit-quaternion": _non_unit, "another-scene": _another_scene,
           "frame-twice": _twice, "missing-file": _missing_file}


@pytest.mark.parametrize("case", sorted(BAD_PGT))
def test_bad_pgt_names_file_and_line_and_leaves_nothing(tmp_path, case):
  manual, data_dir = tmp_path / "manual", tmp_path / "data"
  _scene(manual)
  _, named = BAD_PGT[case](manual)
  with pytest.raises(LsattnError) as error:
    datasets.prepare(f"seven_scenes/{SCENE}", data_dir, manual, ground_truth="sfm")
  message = str(error.value)
  assert "\n" not in message
  for part in named:
    assert part in message
  assert not data_dir.exists()  # made by the failed build, so removed whole


def test_ground_truth_is_a_run_key_checked_against_the_dataset(tmp_path):
  assert "ground_truth" in config_schema.run_keys()
  assert config_schema.get_config().ground_truth == "dslam"  # the paper's poses
  config = config_schema.get_config()
  config.dataset, config.ground_truth = "cambridge_landmarks/kings_college", "sfm"
  with pytest.raises(LsattnError, match="config.ground_truth = 'sfm'.*kings_college"):
    config_checks.check_config(config)
  config.ground_truth = "colmap"
  with pytest.raises(LsattnError, match="config.ground_truth = 'colmap'"):
    config_checks.check_config(config)
  with pytest.raises(LsattnError, match="'seven_scenes/synthetic_room'"):
    datasets.prepare("seven_scenes/synthetic_room", tmp_path, ground_truth="sfm")
  # The SfM build is chosen by the key, never named as a dataset of its own.
  with pytest.raises(LsattnError, match="name the scene .'seven_scenes/chess'. .*'sfm'"):
    datasets.prepare("seven_scenes/chess_sfm", tmp_path, tmp_path)
  with pytest.raises(LsattnError, match="'seven_scenes/kitchen'"):
    datasets.prepare("seven_scenes/kitchen", tmp_path, tmp_path, ground_truth="sfm")
  with pytest.raises(LsattnError, match="'kitchen'") as error:
    datasets.prepare("seven_scenes/kitchen", tmp_path, tmp_path)
  assert "'chess'" in str(error.value) and "chess_sfm" not in str(error.value)
  assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- estimates


def _room_poses(count: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Camera-to-world matrices of the synthetic room, with half the quaternions
  negated (the same rotations), as lsattn's positions and orientations."""
  matrices = np.concatenate([room.trajectory(3, sequence, count // 2) for sequence in (1, 2)])
  orientations = geometry.matrix_to_quaternion(matrices[:, :3, :3])
  orientations[::2] *= -1
  return matrices, matrices[:, :3, 3], orientations


def test_estimates_round_trip_in_the_community_convention(tmp_path):
  matrices, positions, orientations = _room_poses()
  names = [f"seq-{1 + i // 20:02d}/frame-{i % 20:06d}.color.png" for i in range(len(matrices))]
  path = pseudo_gt.write_estimates(tmp_path / "chess_lsattn.txt", names, positions,
                                   orientations)
  lines = path.read_text().splitlines()
  assert len(lines) == len(names) and all(len(line.split()) == 8 for line in lines)
  for line, matrix in zip(lines, matrices):
    # What evaluate_estimates.py assumes: p_cam = R(q) p_world + t.
    values = np.array(line.split()[1:], np.float64)
    rotation = geometry.quaternion_to_matrix(values[:4])
    np.testing.assert_allclose(rotation, matrix[:3, :3].T, atol=1e-9)
    np.testing.assert_allclose(rotation @ matrix[:3, 3] + values[4:], 0, atol=1e-9)
    world_point = matrix[:3, :3] @ np.array([0.1, -0.2, 1.5]) + matrix[:3, 3]
    np.testing.assert_allclose(rotation @ world_point + values[4:], [0.1, -0.2, 1.5],
                               atol=1e-9)

  read = pseudo_gt.read_pose_lines(path, focal_length=False)
  assert list(read) == names
  for name, position, orientation in zip(names, positions, orientations):
    np.testing.assert_allclose(read[name].position, position, atol=1e-6)
    np.testing.assert_allclose(read[name].orientation,
                               geometry.canonical_quaternion(orientation), atol=1e-6)
    assert read[name].focal_length is None
  # A pGT reader wants the focal length: an estimates file is not a pGT file.
  with pytest.raises(LsattnError, match=f"{path}:1: expected 9 fields"):
    pseudo_gt.read_pose_lines(path, focal_length=True)


def test_estimate_names_must_fit_the_format(tmp_path):
  _, positions, orientations = _room_poses(2)
  with pytest.raises(LsattnError, match="'seq 1/a.png'.*white space"):
    pseudo_gt.write_estimates(tmp_path / "e.txt", ["seq 1/a.png", "b.png"], positions,
                              orientations)
  assert not (tmp_path / "e.txt").exists()


def test_a_run_on_the_sfm_pgt_evaluates_against_it(tmp_path):
  """Trained on the SfM build (2 steps of configs/test.py): metrics.json and the
  checkpoint name the ground truth; eval's estimates, compared with the pGT test file as
  evaluate_estimates.py compares them, give predictions.csv's errors; a config with the
  other ground truth is another run."""
  import csv
  import json

  from lsattn import experiment
  from lsattn.runs import checkpoint
  import trained_runs

  manual = tmp_path / "manual"
  _scene(manual)
  data = {"data_dir": str(tmp_path / "data"), "manual_dir": str(manual)}
  config = trained_runs.config(data, dataset=f"seven_scenes/{SCENE}", ground_truth="sfm")
  experiment.train_and_evaluate(config, tmp_path / "run")
  written = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
  assert written["ground_truth"] == "sfm" and written["dataset"] == "seven_scenes/chess"
  assert written["num_examples"] == FRAMES and "within_0.1m_5deg" in written
  manager = checkpoint.create_manager(tmp_path / "run", save_every=1, keep=1)
  assert checkpoint.read_meta(manager, manager.latest_step())["ground_truth"] == "sfm"

  truth = pseudo_gt.read_pose_lines(pseudo_gt.pgt_path(manual, SCENE, "test"),
                                    focal_length=True)
  estimates = pseudo_gt.read_pose_lines(tmp_path / "run" / "eval" / "estimates_chess.txt",
                                        focal_length=False)
  with open(tmp_path / "run" / "eval" / "predictions.csv", newline="") as file:
    rows = {row["image"]: row for row in csv.DictReader(file)}
  assert set(estimates) == set(truth) == set(rows)
  for name, row in rows.items():
    assert row["scene"] == SCENE
    translation = np.linalg.norm(estimates[name].position - truth[name].position)
    rotation = geometry.quaternion_angle_deg(estimates[name].orientation,
                                             truth[name].orientation)
    assert translation == pytest.approx(float(row["translation_error_m"]), abs=1e-5)
    assert rotation == pytest.approx(float(row["rotation_error_deg"]), abs=1e-3)

  other = trained_runs.config(data, dataset=f"seven_scenes/{SCENE}")
  with pytest.raises(LsattnError, match="ground_truth"):
    experiment.evaluate(other, tmp_path / "run")
