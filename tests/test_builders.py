"""tfds builders end to end: tiny fixtures in the official layouts -> records.

Each fixture writes a few 32x48 solid-colour images, so the stored image, the
train split's channel mean and every pose can be checked against values
computed by hand. Bad inputs must raise `LsattnError` naming the file and
leave nothing half-built in data_dir.
"""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image
import pytest

from lsattn import LsattnError
from lsattn.data import builders, datasets, pipeline

SOURCE_SIZE = (32, 48)  # (H, W) of the fixture images
POSE_SIZE = (256, 455)
CLASS_SIZE = (256, 256)
# JPEG (quality 95) of a solid colour, possibly after a JPEG source.
COLOUR_TOLERANCE = 4.0
S = float(np.sqrt(0.5))

CAMBRIDGE_HEADER = "Visual Landmark Dataset V1\nImageFile, Camera Position [X Y Z W P Q R]\n\n"
SCAN = "2015-08-16_15.34.11"

# 7-Scenes camera-to-world rotations and their quaternions (w, x, y, z), by hand.
ROT_Z90 = "0 -1 0\n1 0 0\n0 0 1"
ROT_X180 = "1 0 0\n0 -1 0\n0 0 -1"
ROT_X90 = "1 0 0\n0 0 -1\n0 1 0"
ROTATIONS = {ROT_Z90: (S, 0, 0, S), ROT_X180: (0, 1, 0, 0), ROT_X90: (S, S, 0, 0)}


def _write(path: pathlib.Path, text: str) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  return path


def _image(path: pathlib.Path, colour, size=SOURCE_SIZE) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.new("RGB", (size[1], size[0]), tuple(colour)).save(path)
  return path


def _pose_text(rotation: str, position) -> str:
  rows = [f"{row} {t!r}" for row, t in zip(rotation.split("\n"), position)]
  return "\n".join(rows) + "\n0 0 0 1\n"


# Each fixture returns {split: {image_name: expected fields}}.


def _seven_scenes(manual: pathlib.Path) -> dict:
  scene = manual / "chess"
  frames = {  # (sequence, frame): (colour, rotation, position)
      (1, 0): ((200, 30, 30), ROT_Z90, (1.0, 2.0, 3.0)),
      (1, 1): ((30, 200, 30), ROT_X180, (-0.5, 0.25, 1.5)),
      (2, 0): ((30, 30, 200), ROT_X90, (0.0, 0.0, 0.0)),
      (3, 0): ((250, 250, 20), ROT_Z90, (4.0, 5.0, 6.0)),
  }
  expected = {"train": {}, "test": {}}
  for (sequence, frame), (colour, rotation, position) in frames.items():
    stem = scene / f"seq-{sequence:02d}" / f"frame-{frame:06d}"
    _image(pathlib.Path(f"{stem}.color.png"), colour)
    _write(pathlib.Path(f"{stem}.pose.txt"), _pose_text(rotation, position))
    split = "test" if sequence == 3 else "train"
    expected[split][f"seq-{sequence:02d}/frame-{frame:06d}.color.png"] = dict(
        colour=colour, position=position, orientation=ROTATIONS[rotation],
        sequence=f"seq-{sequence:02d}")
  _write(scene / "TrainSplit.txt", "# official split\nsequence1\nsequence2\n")
  _write(scene / "TestSplit.txt", "sequence3\n")
  return expected


def _cambridge(manual: pathlib.Path) -> dict:
  scene = manual / "KingsCollege"
  r30 = float(np.sqrt(30.0))
  # (name, colour, XYZ, WPQR as written, expected orientation = canonical(conj(WPQR))).
  lines = {
      "train": [("seq1/frame00001.png", (220, 40, 40), (1.5, -2.0, 3.25), "1 2 3 4",
                 (1 / r30, -2 / r30, -3 / r30, -4 / r30)),
                ("seq1/frame00002.png", (40, 220, 40), (10.0, 20.0, -1.0), "-0.5 0.5 0.5 0.5",
                 (0.5, 0.5, 0.5, 0.5))],
      "test": [("seq7/frame00003.png", (40, 40, 220), (0.0, 0.5, 0.0), "0 0 0 -1",
                (0, 0, 0, 1))],
  }
  expected = {}
  for split, rows in lines.items():
    text = CAMBRIDGE_HEADER
    expected[split] = {}
    for name, colour, xyz, wpqr, orientation in rows:
      _image(scene / name, colour)
      text += f"{name} {' '.join(repr(v) for v in xyz)} {wpqr}\n"
      expected[split][name] = dict(colour=colour, position=xyz, orientation=orientation,
                                   sequence=name.split("/")[0])
    _write(scene / f"dataset_{split}.txt", text)
  return expected


def _tum_pose(name: str, position, quaternion: str) -> str:
  x, y, z = position
  return (f'  <pose image="{name}">\n    <position x="{x}" y="{y}" z="{z}"/>\n'
          f'    <quaternion {quaternion}/>\n  </pose>\n')


def _tum_lsi(manual: pathlib.Path, zero_quaternion: bool = False) -> dict:
  # (name, split, colour, position, quaternion as written, expected orientation).
  images = [
      (f"images/{SCAN}/00000-cam0.jpg", "train", (180, 60, 20), (1.0, 2.0, 0.5),
       'w="-0.5" x="-0.5" y="-0.5" z="-0.5"', (0.5, 0.5, 0.5, 0.5)),
      (f"images/{SCAN}/00000-cam1.jpg", "train", (20, 180, 60), (-3.0, 0.0, 1.25),
       'w="0" x="0" y="-2" z="0"', (0, 0, 1, 0)),
      (f"images/{SCAN}/00001-cam0.jpg", "test", (60, 20, 180), (7.0, 8.0, 9.0),
       'w="0.6" x="0" y="0.8" z="0"', (0.6, 0, 0.8, 0)),
  ]
  expected = {"train": {}, "test": {}}
  xml = "<poses>\n"
  for name, split, colour, position, quaternion, orientation in images:
    _image(manual / name, colour)
    if zero_quaternion and split == "test":
      quaternion = 'w="0" x="0" y="0" z="0"'
    xml += _tum_pose(name, position, quaternion)
    expected[split][name] = dict(colour=colour, position=position, orientation=orientation,
                                 sequence=SCAN)
  _write(manual / "poses" / f"{SCAN}_poses.xml", xml + "</poses>\n")
  for split in ("train", "test"):
    _write(manual / f"{split}.txt", "".join(f"{name}\n" for name in expected[split]))
  return expected


def _mit67(manual: pathlib.Path) -> dict:
  images = [("bar/IMG_0001.jpg", "train", (200, 120, 40)),
            ("bar/bar 17.jpg", "test", (150, 90, 30)),
            ("kitchen/int42.jpg", "train", (40, 120, 200)),
            ("kitchen/kitc_05_a.jpg", "train", (60, 200, 160)),
            ("kitchen/IMG_9.jpg", "test", (90, 90, 90))]
  labels = {"bar": 4, "kitchen": 37}  # Indices in the 67 sorted MIT-67 class names.
  expected = {"train": {}, "test": {}}
  for name, split, colour in images:
    _image(manual / "Images" / name, colour)
    expected[split][name] = dict(colour=colour, label=labels[name.split("/")[0]])
  _write(manual / "TrainImages.txt", "".join(f"{n}\r\n" for n in expected["train"]))
  _write(manual / "TestImages.txt", "".join(f"{n}\r\n" for n in expected["test"]))
  return expected


FIXTURES = {
    "seven_scenes/chess": _seven_scenes,
    "cambridge_landmarks/kings_college": _cambridge,
    "tum_lsi/default": _tum_lsi,
    "mit67/full": _mit67,
}


def _channel_means(image: np.ndarray) -> np.ndarray:
  return image.reshape(-1, 3).mean(axis=0)


def _check_split(builder, split_name: str, expected: dict, stored_size) -> list[np.ndarray]:
  """Checks every example of a split; returns its decoded images."""
  split = pipeline.Split(builder, split_name)
  source = builder.as_data_source(split_name)
  assert len(split) == len(source) == len(expected)
  names = list(split.labels["image_name"])
  assert sorted(names) == sorted(expected)
  images = []
  for position, name in enumerate(names):
    want = expected[name]
    example = source[position]
    image = example["image"]
    assert image.shape == (*stored_size, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(split.image(position), image)
    np.testing.assert_allclose(_channel_means(image), want["colour"], atol=COLOUR_TOLERANCE)
    assert np.abs(image.astype(float) - want["colour"]).max() <= 3 * COLOUR_TOLERANCE
    if "label" in want:
      assert int(split.labels["label"][position]) == int(example["label"]) == want["label"]
    else:
      np.testing.assert_allclose(split.labels["position"][position], want["position"], atol=1e-6)
      np.testing.assert_allclose(split.labels["orientation"][position], want["orientation"],
                                 atol=1e-6)
      np.testing.assert_allclose(example["orientation"], want["orientation"], atol=1e-6)
      assert split.labels["position"].dtype == np.float32
      assert split.labels["sequence"][position] == want["sequence"]
    images.append(image)
  return images


@pytest.mark.parametrize("dataset", sorted(FIXTURES))
def test_builder_reads_back_sizes_content_poses_and_mean(tmp_path, dataset):
  manual, data_dir = tmp_path / "manual", tmp_path / "data"
  expected = FIXTURES[dataset](manual)
  builder = datasets.prepare(dataset, data_dir=data_dir, manual_dir=manual)
  stored_size = CLASS_SIZE if dataset.startswith("mit67") else POSE_SIZE
  train_images = _check_split(builder, "train", expected["train"], stored_size)
  _check_split(builder, "test", expected["test"], stored_size)

  # The mean of the train split only, read back from disk by a fresh builder.
  reloaded = datasets.get_builder(dataset, data_dir)
  assert reloaded.is_prepared()
  channel_mean = np.asarray(reloaded.info.metadata["channel_mean"])
  source_mean = np.mean([want["colour"] for want in expected["train"].values()], axis=0)
  stored_mean = np.mean([_channel_means(image) for image in train_images], axis=0)
  np.testing.assert_allclose(channel_mean, source_mean, atol=COLOUR_TOLERANCE)
  np.testing.assert_allclose(channel_mean, stored_mean, atol=1.0)
  test_mean = np.mean([want["colour"] for want in expected["test"].values()], axis=0)
  assert np.abs(channel_mean - test_mean).max() > 20  # Not the test split's mean.

  # Built once: a second prepare reuses it without reading manual_dir.
  assert datasets.prepare(dataset, data_dir=data_dir, manual_dir="").is_prepared()


def test_mit67_full_has_the_67_official_classes(tmp_path):
  _mit67(tmp_path / "manual")
  builder = datasets.prepare("mit67/full", data_dir=tmp_path / "data",
                             manual_dir=tmp_path / "manual")
  names = builder.info.features["label"].names
  assert len(names) == 67 and names == sorted(names)
  assert names[4] == "bar" and names[37] == "kitchen"


# ---------------------------------------------------------------- bad input
# Each case breaks one file of a valid fixture and returns (dataset, the text
# the error must contain, a function that repairs the file).


def _corrupt_image(manual):
  _seven_scenes(manual)
  path = manual / "chess/seq-03/frame-000000.color.png"  # Test split: train is written first.
  good = path.read_bytes()
  path.write_bytes(good[:len(good) // 2])
  return "seven_scenes/chess", str(path), lambda: path.write_bytes(good)


def _missing_image(manual):
  _cambridge(manual)
  path = manual / "KingsCollege/seq1/frame00002.png"
  good = path.read_bytes()
  path.unlink()
  index = manual / "KingsCollege/dataset_train.txt"
  return "cambridge_landmarks/kings_college", f"{index}:5", lambda: path.write_bytes(good)


def _malformed_pose_line(manual):
  _seven_scenes(manual)
  path = manual / "chess/seq-01/frame-000001.pose.txt"
  good = path.read_text()
  assert good.startswith("1 0 0 -0.5\n")
  path.write_text(good.replace("1 0 0 -0.5", "1 0 0", 1))
  return "seven_scenes/chess", f"{path}:1", lambda: path.write_text(good)


def _non_finite(manual):
  _cambridge(manual)
  path = manual / "KingsCollege/dataset_test.txt"
  good = path.read_text()
  path.write_text(good.replace("0.0 0.5 0.0", "0.0 inf 0.0"))
  return "cambridge_landmarks/kings_college", f"{path}:4", lambda: path.write_text(good)


def _zero_quaternion(manual):
  _tum_lsi(manual, zero_quaternion=True)
  path = manual / "poses" / f"{SCAN}_poses.xml"
  return "tum_lsi/default", str(path), lambda: _tum_lsi(manual)


def _absent_sequence(manual):
  _seven_scenes(manual)
  path = manual / "chess/TrainSplit.txt"
  good = path.read_text()
  path.write_text(good + "sequence9\n")
  return "seven_scenes/chess", f"{path}:4", lambda: path.write_text(good)


def _unknown_class(manual):
  _mit67(manual)
  _image(manual / "Images/spaceship/a.jpg", (1, 2, 3))
  path = manual / "TestImages.txt"
  good = path.read_text()
  path.write_text(good + "spaceship/a.jpg\r\n")
  return "mit67/full", str(path), lambda: path.write_text(good)


BAD_INPUTS = {
    "corrupt-image": _corrupt_image,
    "missing-image": _missing_image,
    "malformed-pose-line": _malformed_pose_line,
    "non-finite-number": _non_finite,
    "zero-quaternion": _zero_quaternion,
    "absent-sequence": _absent_sequence,
    "unknown-class": _unknown_class,
}


def _assert_nothing_built(dataset: str, data_dir: pathlib.Path) -> None:
  assert not datasets.get_builder(dataset, data_dir).is_prepared()
  leftovers = [p for p in data_dir.rglob("*")
               if p.name.startswith("incomplete") or p.name == "dataset_info.json"
               or ".array_record" in p.name]
  assert leftovers == []
  assert not data_dir.exists()  # made by the failed build, so removed whole


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_file_and_leaves_nothing(tmp_path, case):
  manual, data_dir = tmp_path / "manual", tmp_path / "data"
  dataset, named, repair_fn = BAD_INPUTS[case](manual)
  with pytest.raises(LsattnError) as error:
    datasets.prepare(dataset, data_dir=data_dir, manual_dir=manual)
  assert named in str(error.value)
  _assert_nothing_built(dataset, data_dir)

  repair_fn()
  builder = datasets.prepare(dataset, data_dir=data_dir, manual_dir=manual)
  assert builder.is_prepared()
  assert len(builder.as_data_source("test")) >= 1


# ---------------------------------------------------------------- prepare


def test_prepare_unknown_builder(tmp_path):
  with pytest.raises(LsattnError, match="'imagenet'"):
    datasets.prepare("imagenet/full", data_dir=tmp_path)
  with pytest.raises(LsattnError, match="<builder>/<config>"):
    datasets.prepare("seven_scenes", data_dir=tmp_path)


def test_prepare_unknown_config(tmp_path):
  with pytest.raises(LsattnError, match="'kitchen'") as error:
    datasets.prepare("seven_scenes/kitchen", data_dir=tmp_path, manual_dir=tmp_path)
  assert "chess" in str(error.value)


def test_prepare_without_manual_dir_explains_the_download(tmp_path):
  with pytest.raises(LsattnError) as error:
    datasets.prepare("cambridge_landmarks/kings_college", data_dir=tmp_path / "data")
  message = str(error.value)
  assert "manual_dir" in message
  assert builders.CambridgeLandmarks.MANUAL_DOWNLOAD_INSTRUCTIONS.strip() in message
  _assert_nothing_built("cambridge_landmarks/kings_college", tmp_path / "data")


def test_prepare_nonexistent_manual_dir(tmp_path):
  missing = tmp_path / "no_such_folder"
  with pytest.raises(LsattnError) as error:
    datasets.prepare("tum_lsi/default", data_dir=tmp_path / "data", manual_dir=missing)
  assert str(missing) in str(error.value) and "read_tum_lsi" in str(error.value)
  _assert_nothing_built("tum_lsi/default", tmp_path / "data")


def test_prepare_manual_dir_without_the_scene_folder(tmp_path):
  _seven_scenes(tmp_path / "manual")
  with pytest.raises(LsattnError) as error:
    datasets.prepare("seven_scenes/fire", data_dir=tmp_path / "data",
                     manual_dir=tmp_path / "manual")
  assert str(tmp_path / "manual" / "fire") in str(error.value)
  _assert_nothing_built("seven_scenes/fire", tmp_path / "data")


def test_a_builder_leaves_no_temporary_folder(tmp_path, monkeypatch):
  """tfds makes an empty temporary folder for a builder whose dataset is not built;
  lsattn removes it (a test suite run used to leave dozens in /tmp)."""
  system_temp = tmp_path / "system_temp"
  system_temp.mkdir()
  monkeypatch.setattr("tempfile.tempdir", str(system_temp))
  builder = datasets.get_builder("mit67/synthetic_texture", tmp_path / "data")
  assert not builder.is_prepared()
  assert list(system_temp.iterdir()) == []
  import tempfile
  assert tempfile.tempdir == str(system_temp)  # restored after the builder is made


def test_tfds_finds_the_builders_and_builds_without_tensorflow(tmp_path):
  """`import lsattn.data` registers the builders; tfds' own API builds one with no
  file_format given (array_record: tfds' default, tfrecord, would need TensorFlow)."""
  import tensorflow_datasets as tfds
  import lsattn.data  # noqa: F401
  from lsattn.data.synthetic import cue_scale
  cue_scale.write_cue_scale_mit67(tmp_path / "manual", cue="layout", train_per_class=1,
                                  test_per_class=1, image_size=(48, 48))
  builder = tfds.builder("mit67/synthetic_layout", data_dir=str(tmp_path / "data"))
  assert isinstance(builder, builders.Mit67)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(tmp_path / "manual")))
  assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
  source = builder.as_data_source(split="test")
  assert len(source) == len(cue_scale.LAYOUTS)
