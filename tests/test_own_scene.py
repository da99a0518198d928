"""Own scenes: each pose file format built end to end, splits, and clear errors.

A fixture scene of tiny solid-colour images gets known camera-to-world poses,
written in each supported convention (CSV: camera centre and camera-to-world
quaternion; Cambridge text: centre and world-to-camera quaternion; COLMAP:
world-to-camera quaternion and translation t = -R_w2c c). Built through
tfds and read back through `pipeline.Split`, every pose must come back in
lsattn's convention.
"""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image
import pytest

from configs import own_scene as own_scene_config
from lsattn import LsattnError, config_checks, geometry
from lsattn.data import builders, datasets, pipeline, splits

IMAGE_SIZE = (24, 32)  # (H, W) of the fixture images
STORED_SIZE = (256, 455)
COLOUR_TOLERANCE = 4.0


def _rotation(axis, angle: float) -> np.ndarray:
  """Rodrigues' formula: the rotation by `angle` radians about `axis`."""
  axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
  k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
  return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _cameras(names):
  """Known poses: {name: (colour, centre [3], R_c2w [3, 3])}, varied but seeded."""
  rng = np.random.default_rng(7)
  cameras = {}
  for i, name in enumerate(names):
    colour = (int(40 + 20 * i) % 256, int(200 - 15 * i) % 256, int(90 + 35 * i) % 256)
    # Angles up to pi exercise both quaternion hemispheres.
    rotation = _rotation(rng.normal(size=3), rng.uniform(0.1, np.pi))
    cameras[name] = (colour, rng.uniform(-5, 5, size=3), rotation)
  return cameras


def _images(scene: pathlib.Path, cameras) -> None:
  for name, (colour, _, _) in cameras.items():
    path = scene / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (IMAGE_SIZE[1], IMAGE_SIZE[0]), colour).save(path)


def _numbers(values) -> str:
  return " ".join(repr(float(v)) for v in values)


def _quaternion(rotation: np.ndarray, flip_sign: bool) -> np.ndarray:
  """The rotation's quaternion, with the non-canonical sign if asked (readers canonicalise)."""
  q = geometry.matrix_to_quaternion(rotation)
  return -q if flip_sign else q


def write_csv(scene: pathlib.Path, cameras, split_of=None) -> None:
  header = "image,x,y,z,qw,qx,qy,qz" + (",split" if split_of else "")
  rows = [header]
  for i, (name, (_, centre, rotation)) in enumerate(cameras.items()):
    row = [name, *centre, *_quaternion(rotation, i % 2 == 1)]
    rows.append(",".join(repr(float(v)) if not isinstance(v, str) else v for v in row)
                + (f",{split_of[name]}" if split_of else ""))
  (scene / "poses.csv").write_text("\n".join(rows) + "\n")


def write_cambridge(scene: pathlib.Path, cameras, split_of) -> None:
  header = "Visual Landmark Dataset V1\nImageFile, Camera Position [X Y Z W P Q R]\n\n"
  for split in ("train", "test"):
    lines = [f"{name} {_numbers(centre)} {_numbers(_quaternion(rotation.T, i % 2 == 0))}"
             for i, (name, (_, centre, rotation)) in enumerate(cameras.items())
             if split_of[name] == split]
    (scene / f"dataset_{split}.txt").write_text(header + "\n".join(lines) + "\n")


def write_colmap(scene: pathlib.Path, cameras) -> None:
  lines = ["# Image list with two lines of data per image:",
           "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
           "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
  for i, (name, (_, centre, rotation)) in enumerate(cameras.items(), start=1):
    world_to_camera = rotation.T
    translation = -world_to_camera @ centre
    lines.append(f"{i} {_numbers(_quaternion(world_to_camera, i % 3 == 0))} "
                 f"{_numbers(translation)} 1 {name}")
    lines.append("12.5 3.25 -1 4.0 5.0 17" if i % 2 else "")
  (scene / "images.txt").write_text("\n".join(lines) + "\n")


def _build(tmp_path, scene, name="fixture"):
  return datasets.prepare(f"own_scene/{name}", tmp_path / "data", scene)


def _check_split(builder, split: str, cameras, names) -> pipeline.Split:
  """Every example of `split` is one of `names`, with its pose and colour."""
  data = pipeline.Split(builder, split)
  assert sorted(data.labels["image_name"]) == sorted(names)
  for position, name in enumerate(data.labels["image_name"]):
    colour, centre, rotation = cameras[name]
    np.testing.assert_allclose(data.labels["position"][position], centre, atol=1e-5)
    orientation = data.labels["orientation"][position]
    np.testing.assert_allclose(orientation, geometry.matrix_to_quaternion(rotation), atol=1e-6)
    assert orientation[np.flatnonzero(np.abs(orientation) > 1e-6)[0]] > 0  # Canonical sign.
    np.testing.assert_allclose(geometry.quaternion_to_matrix(orientation), rotation, atol=1e-5)
    image = data.image(position)
    assert image.shape == (*STORED_SIZE, 3)
    np.testing.assert_allclose(image.reshape(-1, 3).mean(axis=0), colour, atol=COLOUR_TOLERANCE)
    assert data.labels["sequence"][position] == (pathlib.PurePosixPath(name).parent.name
                                                 or "seq0")
  return data


# ---------------------------------------------------------------- formats


def test_csv_with_split_column(tmp_path):
  names = ["a/img1.png", "a/img2.png", "a/img3.png", "b/img1.png", "b/img2.png", "c/x.jpg"]
  split_of = dict(zip(names, ["train", "train", "val", "test", "test", "train"]))
  cameras = _cameras(names)
  _images(tmp_path / "scene", cameras)
  write_csv(tmp_path / "scene", cameras, split_of)
  builder = _build(tmp_path, tmp_path / "scene")
  for split, tfds_split in (("train", "train"), ("test", "test"), ("val", "validation")):
    _check_split(builder, tfds_split, cameras, [n for n in names if split_of[n] == split])
  assert builder.info.metadata["pose_file"] == "poses.csv"
  assert "split" in builder.info.metadata["split_rule"]
  train_colours = [cameras[n][0] for n in names if split_of[n] == "train"]
  np.testing.assert_allclose(builder.info.metadata["channel_mean"],
                             np.mean(train_colours, axis=0), atol=COLOUR_TOLERANCE)

  reopened = datasets.get_builder("own_scene/fixture", tmp_path / "data")
  assert reopened.is_prepared()
  assert datasets.prepare("own_scene/fixture", tmp_path / "data", "").is_prepared()
  assert not datasets.get_builder("own_scene/other", tmp_path / "data").is_prepared()


def test_cambridge_pair(tmp_path):
  names = ["seq1/frame00001.png", "seq1/frame00002.png", "seq2/frame00001.png"]
  split_of = dict(zip(names, ["train", "train", "test"]))
  cameras = _cameras(names)
  _images(tmp_path / "scene", cameras)
  write_cambridge(tmp_path / "scene", cameras, split_of)
  builder = _build(tmp_path, tmp_path / "scene")
  _check_split(builder, "train", cameras, names[:2])
  _check_split(builder, "test", cameras, names[2:])
  assert set(builder.info.splits) == {"train", "test"}


def test_colmap_single_sequence_holds_out_a_separated_final_block(tmp_path):
  # Unpadded frame numbers: frame10 comes after frame9, not after frame1.
  names = [f"frame{i}.jpg" for i in range(1, 11)]
  cameras = _cameras(names)
  _images(tmp_path / "scene", cameras)
  write_colmap(tmp_path / "scene", cameras)
  builder = _build(tmp_path, tmp_path / "scene")
  _check_split(builder, "train", cameras, names[:7])
  _check_split(builder, "test", cameras, ["frame9.jpg", "frame10.jpg"])  # frame8: the gap
  assert builder.info.metadata["pose_file"] == "images.txt"
  assert "final 20%" in builder.info.metadata["split_rule"]


def test_csv_without_split_holds_out_the_last_sequence(tmp_path):
  names = ["hall/1.png", "hall/2.png", "kitchen/1.png", "kitchen/2.png", "stairs/1.png"]
  cameras = _cameras(names)
  _images(tmp_path / "scene", cameras)
  write_csv(tmp_path / "scene", cameras)
  builder = _build(tmp_path, tmp_path / "scene")
  _check_split(builder, "train", cameras, names[:4])
  _check_split(builder, "test", cameras, names[4:])
  assert "stairs" in builder.info.metadata["split_rule"]


# ---------------------------------------------------------------- honest splits


def _roles_in_frame_order(names, role_of):
  order = splits.frame_order(names)
  return [role_of[int(i)] for i in order]


@pytest.mark.parametrize("count", [5, 8, 10, 13, 40, 101])
def test_single_sequence_splits_never_touch(count):
  names = [f"img_{i}.png" for i in np.random.default_rng(count).permutation(count)]
  sequences = ["seq0"] * count
  train, test = splits.holdout_split(sequences, names)
  inner_train, validation = splits.validation_split(
      [sequences[i] for i in train], len(train), "auto", [names[i] for i in train])
  role_of = {int(i): "test" for i in test}
  role_of.update({int(train[i]): "train" for i in inner_train})
  role_of.update({int(train[i]): "validation" for i in validation})
  assert len(test) >= 1 and len(validation) >= 1 and len(inner_train) >= 1
  roles = _roles_in_frame_order(names, {i: role_of.get(i, "gap") for i in range(count)})
  # Time order: training frames, then validation, then test, separated by gaps.
  for before, after in zip(roles, roles[1:]):
    assert before == after or "gap" in (before, after), roles
  assert roles.index("train") < roles.index("validation") < roles.index("test")


def test_too_few_frames_for_a_separated_test_block():
  with pytest.raises(LsattnError, match="too few"):
    splits.holdout_split(["seq0"] * 2, ["a.png", "b.png"])


def test_multi_sequence_splits_hold_out_whole_sequences():
  sequences = ["s1"] * 4 + ["s3"] * 3 + ["s2"] * 5
  names = [f"{s}/{i}.png" for i, s in enumerate(sequences)]
  train, test = splits.holdout_split(sequences, names)
  assert {sequences[i] for i in test} == {"s3"}
  inner, validation = splits.validation_split([sequences[i] for i in train], len(train), "auto",
                                              [names[i] for i in train])
  train_sequences = {sequences[train[i]] for i in inner}
  validation_sequences = {sequences[train[i]] for i in validation}
  assert train_sequences == {"s1"} and validation_sequences == {"s2"}


def test_built_scene_validation_is_separated_from_training(tmp_path):
  names = [f"f{i}.png" for i in range(20)]
  cameras = _cameras(names)
  _images(tmp_path / "scene", cameras)
  write_csv(tmp_path / "scene", cameras)
  builder = _build(tmp_path, tmp_path / "scene")
  full_train = pipeline.Split(builder, "train")
  test_names = set(pipeline.Split(builder, "test").labels["image_name"])
  inner, validation = splits.validation_split(
      full_train.labels.get("sequence"), len(full_train), "auto",
      full_train.labels["image_name"])
  role = {name: "gap" for name in names}
  role.update({name: "test" for name in test_names})
  role.update({full_train.labels["image_name"][i]: "train" for i in inner})
  role.update({full_train.labels["image_name"][i]: "validation" for i in validation})
  roles = [role[names[i]] for i in splits.frame_order(names)]
  # 20 frames: test = the final 20% (4) after a 5% gap (1); validation = 15% of the
  # remaining 15 (2) after a gap (1).
  assert roles == ["train"] * 12 + ["gap", "validation", "validation", "gap"] + ["test"] * 4


# ---------------------------------------------------------------- errors


def _one_image(scene: pathlib.Path) -> dict:
  cameras = _cameras(["a.png", "b.png", "c.png", "d.png"])
  _images(scene, cameras)
  return cameras


def _no_pose_file(scene):
  _one_image(scene)
  return [str(scene), "poses.csv", "images.txt"]


def _several_pose_files(scene):
  cameras = _one_image(scene)
  write_csv(scene, cameras)
  write_colmap(scene, cameras)
  return ["several pose files", "poses.csv", "images.txt"]


def _half_cambridge_pair(scene):
  cameras = _one_image(scene)
  write_cambridge(scene, cameras, {name: "train" for name in cameras})
  (scene / "dataset_test.txt").unlink()
  return [str(scene / "dataset_test.txt")]


def _image_in_two_splits(scene):
  cameras = _one_image(scene)
  write_csv(scene, cameras, {"a.png": "train", "b.png": "train", "c.png": "test",
                             "d.png": "test"})
  path = scene / "poses.csv"
  path.write_text(path.read_text() + path.read_text().splitlines()[1].replace(",train", ",test")
                  + "\n")
  return [str(path), "a.png", "twice"]


def _bad_csv_line(scene):
  cameras = _one_image(scene)
  write_csv(scene, cameras)
  path = scene / "poses.csv"
  path.write_text(path.read_text() + "e.png,1,2\n")
  return [f"{path}:6"]


ERRORS = {"no-pose-file": _no_pose_file, "several-pose-files": _several_pose_files,
          "half-cambridge-pair": _half_cambridge_pair,
          "image-in-two-splits": _image_in_two_splits, "bad-csv-line": _bad_csv_line}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_bad_scene_is_named_and_nothing_is_built(tmp_path, case):
  scene = tmp_path / "scene"
  expected = ERRORS[case](scene)
  with pytest.raises(LsattnError) as error:
    _build(tmp_path, scene)
  for text in expected:
    assert text in str(error.value)
  assert not datasets.get_builder("own_scene/fixture", tmp_path / "data").is_prepared()
  assert not [p for p in (tmp_path / "data").rglob("*") if ".array_record" in p.name
              or p.name.startswith("incomplete")]


@pytest.mark.parametrize("name", ["", ".hidden", "a b", "x/y"])
def test_bad_scene_name(tmp_path, name):
  with pytest.raises(LsattnError, match="own_scene"):
    datasets.get_builder(f"own_scene/{name}", tmp_path)


def test_unbuilt_scene_without_manual_dir_explains_the_layout(tmp_path):
  with pytest.raises(LsattnError) as error:
    datasets.prepare("own_scene/kitchen", tmp_path / "data")
  assert builders.OwnScene.MANUAL_DOWNLOAD_INSTRUCTIONS.strip() in str(error.value)


def test_config():
  config = own_scene_config.get_config("my-room")
  assert config.dataset == "own_scene/my-room" and config.validation_split == "auto"
  assert config.task == datasets.task_of(config.dataset) == "pose"
  config_checks.check_config(config)
