"""Dataset index/pose readers: hand-computed conversions and located errors."""

import numpy as np
import pytest

from lsattn import LsattnError, geometry
from lsattn.data import formats, own_formats

# One camera, by hand: a quarter turn about the world z axis, centre (1, 2, 3).
R_C2W = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
CENTRE = np.array([1.0, 2.0, 3.0])
S = float(np.sqrt(0.5))
Q_C2W = np.array([S, 0.0, 0.0, S])
# World-to-camera: R_w2c = R_C2W.T, t = -R_w2c @ CENTRE = -(2, -1, 3).
Q_W2C = np.array([S, 0.0, 0.0, -S])
T_W2C = np.array([-2.0, 1.0, -3.0])
CAMBRIDGE_HEADER = "Visual Landmark Dataset V1\nImageFile, Camera Position [X Y Z W P Q R]\n\n"
SCAN = "2015-08-16_15.34.11"
TUM_IMAGE = f"images/{SCAN}/00000-cam0.jpg"


def _numbers(values):
  return " ".join(repr(float(v)) for v in values)


def _write(path, text):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  return path


def _touch(root, *names):
  for name in names:
    _write(root / name, "placeholder, never decoded")


def _assert_camera(record):
  np.testing.assert_allclose(record.position, CENTRE, atol=1e-12)
  np.testing.assert_allclose(record.orientation, Q_C2W, atol=1e-12)
  assert record.position.dtype == record.orientation.dtype == np.float64


def _cambridge(root, line=None, images=("seq13/frame00158.png",)):
  # The quaternion written with the opposite sign: reading must canonicalise.
  line = line or f"seq13/frame00158.png {_numbers(CENTRE)} {_numbers(-Q_W2C)}"
  _touch(root, *images)
  _write(root / "dataset_train.txt", f"{CAMBRIDGE_HEADER}{line}\n")
  return root


def _seven_scenes(root, split="sequence1\n", pose="0 -1 0 1\n1 0 0 2\n0 0 1 3\n0 0 0 1\n"):
  _write(root / "TrainSplit.txt", split)
  _touch(root, "seq-01/frame-000000.color.png")
  _write(root / "seq-01/frame-000000.pose.txt", pose)
  return root


def _tum_pose(image=TUM_IMAGE, position='x="1" y="2" z="3"', quaternion=None):
  quaternion = quaternion or f'w="{S!r}" x="0" y="0" z="{S!r}"'
  return f'<pose image="{image}"><position {position}/><quaternion {quaternion}/></pose>'


def _tum(root, split=TUM_IMAGE + "\n", xml=None):
  _touch(root, TUM_IMAGE)
  _write(root / "train.txt", split)
  _write(root / f"poses/{SCAN}_poses.xml", xml or f"<poses>\n  {_tum_pose()}\n</poses>\n")
  return root


def _mit67(root, listing="kitchen/a.jpg\r\nbar/b b.jpg\r\n"):
  _touch(root / "Images", "kitchen/a.jpg", "bar/b b.jpg")
  _write(root / "TrainImages.txt", listing)
  return root


def _csv(root, row=None):
  row = row or f"a.png,{_numbers(CENTRE).replace(' ', ',')},1,0,0,0,train"
  _touch(root, "a.png")
  return _write(root / "poses.csv", f"image,x,y,z,qw,qx,qy,qz,split\n{row}\n")


COLMAP_LINE = f"7 {_numbers(Q_W2C)} {_numbers(T_W2C)} 1 seq/a.png"


def _colmap(root, lines=COLMAP_LINE + "\n"):
  _touch(root, "seq/a.png")
  return _write(root / "images.txt", f"# COLMAP\n# two lines per image\n{lines}\n")


def test_cambridge_conjugates_world_to_camera_quaternion(tmp_path):
  (record,) = formats.read_cambridge(_cambridge(tmp_path), "train")
  _assert_camera(record)
  np.testing.assert_allclose(geometry.quaternion_to_matrix(record.orientation), R_C2W, atol=1e-12)
  assert (record.image_name, record.sequence) == ("seq13/frame00158.png", "seq13")
  assert record.image_path == tmp_path / "seq13/frame00158.png"


def test_seven_scenes_matrix_sorted_by_sequence_and_frame(tmp_path):
  _seven_scenes(tmp_path, split="# comment\nsequence02\n\nsequence1\n")
  for frame in ("000001", "000000"):
    _touch(tmp_path, f"seq-02/frame-{frame}.color.png")
    _write(tmp_path / f"seq-02/frame-{frame}.pose.txt", "1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
  records = formats.read_seven_scenes(tmp_path, "train")
  assert [r.image_name for r in records] == [
      "seq-01/frame-000000.color.png", "seq-02/frame-000000.color.png",
      "seq-02/frame-000001.color.png"]
  assert [r.sequence for r in records] == ["seq-01", "seq-02", "seq-02"]
  _assert_camera(records[0])


def test_tum_lsi_xml(tmp_path):
  (record,) = formats.read_tum_lsi(_tum(tmp_path), "train")
  _assert_camera(record)
  assert (record.image_name, record.sequence) == (TUM_IMAGE, SCAN)


def test_colmap_centre_is_minus_rotated_translation(tmp_path):
  # Second image: identity rotation, a non-empty points line, no folder.
  lines = f"{COLMAP_LINE}\n\n8 1 0 0 0 {_numbers(-CENTRE)} 1 a.png\n1.5 2.5 -1\n"
  _touch(tmp_path, "a.png")
  records = own_formats.read_colmap_images(_colmap(tmp_path, lines), tmp_path)
  assert [(r.image_name, r.sequence) for r in records] == [("a.png", "seq0"), ("seq/a.png", "seq")]
  np.testing.assert_allclose(records[0].position, CENTRE, atol=1e-12)
  np.testing.assert_allclose(records[0].orientation, [1, 0, 0, 0])
  _assert_camera(records[1])


@pytest.mark.parametrize("header", [CAMBRIDGE_HEADER, ""], ids=["cambridge-header", "no-header"])
def test_pose_text_of_own_scene(tmp_path, header):
  _touch(tmp_path, "images/a.png")
  path = _write(tmp_path / "poses.txt",
                f"{header}# own scene\nimages/a.png {_numbers(CENTRE)} {_numbers(Q_W2C)}\n")
  (record,) = own_formats.read_pose_text(path, tmp_path)
  _assert_camera(record)
  assert record.sequence == "images"


def test_mit67_labels_and_classes(tmp_path):
  records = formats.read_mit67(_mit67(tmp_path), "train")
  assert formats.mit67_classes(tmp_path) == ["bar", "kitchen"]
  assert [(r.image_name, r.label) for r in records] == [("kitchen/a.jpg", "kitchen"),
                                                        ("bar/b b.jpg", "bar")]
  assert records[1].image_path == tmp_path / "Images/bar/b b.jpg"


def test_csv_round_trip(tmp_path):
  train = formats.read_cambridge(_cambridge(tmp_path), "train")
  _write(tmp_path / "dataset_test.txt", f"{CAMBRIDGE_HEADER}seq13/frame00158.png 0 0 0 1 2 3 4\n")
  test = formats.read_cambridge(tmp_path, "test")
  own_formats.write_pose_csv(tmp_path / "scene.csv", {"train": train, "test": test})
  for split, expected in (("train", train), ("test", test), (None, train + test)):
    back = own_formats.read_pose_csv(tmp_path / "scene.csv", tmp_path, split)
    assert len(back) == len(expected)
    for got, want in zip(back, expected):
      assert (got.image_path, got.image_name, got.sequence) == (
          want.image_path, want.image_name, want.sequence)
      np.testing.assert_array_equal(got.position, want.position)
      np.testing.assert_allclose(got.orientation, want.orientation, rtol=0, atol=1e-15)


def _seven_scenes_without_pose_file(root):
  _touch(_seven_scenes(root), "seq-01/frame-000001.color.png")
  return root


TUM_SECOND_IMAGE = f"images/{SCAN}/00001-cam0.jpg"
TUM_WITHOUT_SECOND_IMAGE = f"<poses>{_tum_pose()}{_tum_pose(TUM_SECOND_IMAGE)}</poses>"
TUM_NON_NUMERIC = "<poses>" + _tum_pose(position='x="1" y="two" z="3"') + "</poses>"
TUM_ZERO_QUATERNION = "<poses>" + _tum_pose(quaternion='w="0" x="0" y="0" z="0"') + "</poses>"

BAD_INPUTS = {
    # name: (build fixture and read it, substrings the message must contain)
    "cambridge-missing-file": (lambda p: formats.read_cambridge(p, "test"), ["dataset_test.txt"]),
    "cambridge-field-count": (
        lambda p: formats.read_cambridge(_cambridge(p, "seq13/frame00158.png 1 2 3"), "train"),
        ["dataset_train.txt:4", "1 2 3"]),
    "cambridge-non-numeric": (
        lambda p: formats.read_cambridge(_cambridge(p, "seq13/frame00158.png 1 2 x 1 0 0 0"),
                                         "train"), ["dataset_train.txt:4", "2 x 1"]),
    "cambridge-nan": (
        lambda p: formats.read_cambridge(_cambridge(p, "seq13/frame00158.png 1 2 nan 1 0 0 0"),
                                         "train"), ["dataset_train.txt:4", "non-finite"]),
    "cambridge-zero-quaternion": (
        lambda p: formats.read_cambridge(_cambridge(p, "seq13/frame00158.png 1 2 3 0 0 0 1e-9"),
                                         "train"), ["dataset_train.txt:4", "norm"]),
    "cambridge-absent-sequence": (
        lambda p: formats.read_cambridge(_cambridge(p, "seq9/frame00001.png 1 2 3 1 0 0 0"),
                                         "train"), ["dataset_train.txt:4", "seq9"]),
    "cambridge-missing-image": (
        lambda p: formats.read_cambridge(_cambridge(p, "seq13/frame00001.png 1 2 3 1 0 0 0"),
                                         "train"), ["dataset_train.txt:4", "frame00001.png"]),
    "cambridge-empty-split": (
        lambda p: formats.read_cambridge(_cambridge(p, " "), "train"),
        ["dataset_train.txt", "empty split"]),
    "seven-scenes-missing-split-file": (
        lambda p: formats.read_seven_scenes(p, "test"), ["TestSplit.txt"]),
    "seven-scenes-bad-split-line": (
        lambda p: formats.read_seven_scenes(_seven_scenes(p, "sequence1\nseq 2\n"), "train"),
        ["TrainSplit.txt:2", "seq 2"]),
    "seven-scenes-absent-sequence": (
        lambda p: formats.read_seven_scenes(_seven_scenes(p, "sequence1\nsequence03\n"), "train"),
        ["TrainSplit.txt:2", "seq-03"]),
    "seven-scenes-empty-split": (
        lambda p: formats.read_seven_scenes(_seven_scenes(p, "# nothing\n"), "train"),
        ["TrainSplit.txt", "empty split"]),
    "seven-scenes-missing-pose-file": (
        lambda p: formats.read_seven_scenes(_seven_scenes_without_pose_file(p), "train"),
        ["frame-000001.pose.txt"]),
    "seven-scenes-row-length": (
        lambda p: formats.read_seven_scenes(
            _seven_scenes(p, pose="0 -1 0 1\n1 0 0\n0 0 1 3\n0 0 0 1\n"), "train"),
        ["frame-000000.pose.txt:2", "1 0 0"]),
    "seven-scenes-inf": (
        lambda p: formats.read_seven_scenes(
            _seven_scenes(p, pose="0 -1 0 1\n1 0 0 2\n0 0 1 -inf\n0 0 0 1\n"), "train"),
        ["frame-000000.pose.txt:3", "-inf"]),
    "seven-scenes-not-orthonormal": (
        lambda p: formats.read_seven_scenes(
            _seven_scenes(p, pose="0 -1.01 0 1\n1 0 0 2\n0 0 1 3\n0 0 0 1\n"), "train"),
        ["frame-000000.pose.txt:1-3", "-1.01"]),
    "seven-scenes-reflection": (
        lambda p: formats.read_seven_scenes(
            _seven_scenes(p, pose="0 -1 0 1\n1 0 0 2\n0 0 -1 3\n0 0 0 1\n"), "train"),
        ["frame-000000.pose.txt:1-3", "det"]),
    "seven-scenes-last-row": (
        lambda p: formats.read_seven_scenes(
            _seven_scenes(p, pose="0 -1 0 1\n1 0 0 2\n0 0 1 3\n0 0 1 1\n"), "train"),
        ["frame-000000.pose.txt:4", "0 0 1 1"]),
    "tum-missing-split-file": (lambda p: formats.read_tum_lsi(p, "test"), ["test.txt"]),
    "tum-absent-scan": (
        lambda p: formats.read_tum_lsi(_tum(p, f"{TUM_IMAGE}\nimages/2016/00000-cam0.jpg\n"),
                                       "train"), ["train.txt:2", "images/2016"]),
    "tum-image-without-pose": (
        lambda p: formats.read_tum_lsi(_tum(p, TUM_SECOND_IMAGE + "\n"), "train"),
        ["train.txt:1", "_poses.xml"]),
    "tum-missing-image": (
        lambda p: formats.read_tum_lsi(
            _tum(p, TUM_SECOND_IMAGE + "\n", TUM_WITHOUT_SECOND_IMAGE), "train"),
        ["train.txt:1", "00001-cam0.jpg"]),
    "tum-malformed-xml": (
        lambda p: formats.read_tum_lsi(_tum(p, xml="<poses>\n<pose>\n</poses>"), "train"),
        ["_poses.xml:3", "malformed XML"]),
    "tum-non-numeric-attribute": (
        lambda p: formats.read_tum_lsi(_tum(p, xml=TUM_NON_NUMERIC), "train"),
        ["_poses.xml", f"<pose image='{TUM_IMAGE}'>", "'two'"]),
    "tum-zero-quaternion": (
        lambda p: formats.read_tum_lsi(_tum(p, xml=TUM_ZERO_QUATERNION), "train"),
        ["_poses.xml", TUM_IMAGE, "norm"]),
    "mit67-missing-list": (
        lambda p: formats.read_mit67(_mit67(p), "test"), ["TestImages.txt"]),
    "mit67-unknown-class": (
        lambda p: formats.read_mit67(_mit67(p, "kitchen/a.jpg\nattic/c.jpg\n"), "train"),
        ["TrainImages.txt:2", "unknown class 'attic'"]),
    "mit67-missing-image": (
        lambda p: formats.read_mit67(_mit67(p, "kitchen/a.jpg\r\nkitchen/z.jpg\r\n"), "train"),
        ["TrainImages.txt:2", "kitchen/z.jpg"]),
    "mit67-empty-split": (
        lambda p: formats.read_mit67(_mit67(p, "\r\n"), "train"),
        ["TrainImages.txt", "empty split"]),
    "csv-bad-header": (
        lambda p: own_formats.read_pose_csv(_write(p / "poses.csv", "image,x,y,z,w,x,y,z\n"), p),
        ["poses.csv:1", "image,x,y,z,w"]),
    "csv-field-count": (
        lambda p: own_formats.read_pose_csv(_csv(p, "a.png,1,2,3"), p),
        ["poses.csv:2", "a.png,1,2,3"]),
    "csv-non-numeric": (
        lambda p: own_formats.read_pose_csv(_csv(p, "a.png,1,2,x,1,0,0,0,test"), p),
        ["poses.csv:2", "2,x,1"]),
    "csv-bad-split": (
        lambda p: own_formats.read_pose_csv(_csv(p, "a.png,1,2,3,1,0,0,0,dev"), p),
        ["poses.csv:2", "dev"]),
    "csv-zero-quaternion": (
        lambda p: own_formats.read_pose_csv(_csv(p, "a.png,1,2,3,0,0,0,0,train"), p),
        ["poses.csv:2", "norm"]),
    "csv-missing-image": (
        lambda p: own_formats.read_pose_csv(_csv(p, "b.png,1,2,3,1,0,0,0,train"), p),
        ["poses.csv:2", "b.png"]),
    "csv-empty-split": (
        lambda p: own_formats.read_pose_csv(_csv(p), p, "val"), ["poses.csv", "split 'val'"]),
    "text-missing-file": (
        lambda p: own_formats.read_pose_text(p / "poses.txt", p), ["poses.txt"]),
    "colmap-field-count": (
        lambda p: own_formats.read_colmap_images(_colmap(p, "7 1 0 0 0 1 2 3 seq/a.png\n"), p),
        ["images.txt:3", "seq/a.png"]),
    "colmap-zero-quaternion": (
        lambda p: own_formats.read_colmap_images(_colmap(p, "7 0 0 0 0 1 2 3 1 seq/a.png\n"), p),
        ["images.txt:3", "norm"]),
    "colmap-inf": (
        lambda p: own_formats.read_colmap_images(_colmap(p, "7 1 0 0 0 1 inf 3 1 seq/a.png\n"), p),
        ["images.txt:3", "non-finite"]),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_names_file_line_and_text(tmp_path, name):
  read, expected = BAD_INPUTS[name]
  with pytest.raises(LsattnError) as error:
    read(tmp_path)
  for fragment in expected:
    assert fragment in str(error.value)
