"""A failed dataset build leaves data_dir as it was, and claims no download.

tfds makes ``<builder>/<config>/``, ``<builder>/.config/`` and ``downloads/``
before it reads a file and leaves them when the build fails; it also prints
"Downloading and preparing dataset ..." though lsattn's builders download
nothing. The recursive listing of data_dir (paths; files' sizes and mtimes)
must be the same before and after a failed build.
"""

from __future__ import annotations

import os
import pathlib

from PIL import Image
import pytest

from lsattn import LsattnError
from lsattn.data import datasets

TFDS_DOWNLOAD_LINE = "Downloading and preparing"


def _listing(folder: pathlib.Path) -> dict:
  """{relative path: "folder" or a file's (size, mtime)} of everything under folder.

  (A folder's own mtime changes whenever an entry is added or removed.)
  """
  listing = {}
  for path in folder.rglob("*"):
    status = path.lstat()
    listing[str(path.relative_to(folder))] = (
        "folder" if path.is_dir() else (status.st_size, status.st_mtime_ns))
  return listing


def _scene(folder: pathlib.Path, pose_rows: list[str]) -> pathlib.Path:
  folder.mkdir(parents=True)
  for name, colour in (("a.png", (200, 10, 10)), ("b.png", (10, 200, 10)),
                       ("c.png", (10, 10, 200))):
    Image.new("RGB", (16, 12), colour).save(folder / name)
  (folder / "poses.csv").write_text("image,x,y,z,qw,qx,qy,qz,split\n" + "".join(
      f"{row}\n" for row in pose_rows))
  return folder


GOOD_ROWS = ["a.png,0,0,0,1,0,0,0,train", "b.png,1,0,0,1,0,0,0,train",
             "c.png,2,0,0,1,0,0,0,test"]
# The second row lacks its quaternion: found while reading, after tfds made its folders.
BAD_ROWS = ["a.png,0,0,0,1,0,0,0,train", "b.png,1,0,0,train", "c.png,2,0,0,1,0,0,0,test"]


def _failed_build(capfd, dataset: str, data_dir: pathlib.Path, manual: pathlib.Path,
                  named: str) -> None:
  capfd.readouterr()
  with pytest.raises(LsattnError) as error:
    datasets.prepare(dataset, data_dir, manual)
  assert named in str(error.value)
  out, err = capfd.readouterr()
  assert TFDS_DOWNLOAD_LINE not in out + err


def test_failed_own_scene_build_into_a_new_data_dir_leaves_nothing(tmp_path, capfd):
  scene = _scene(tmp_path / "scene", BAD_ROWS)
  data_dir = tmp_path / "new" / "data"
  before = _listing(tmp_path)
  _failed_build(capfd, "own_scene/broken", data_dir, scene, f"{scene / 'poses.csv'}:3")
  assert _listing(tmp_path) == before
  assert not (tmp_path / "new").exists()


def test_failed_build_keeps_what_data_dir_held(tmp_path, capfd):
  data_dir = tmp_path / "data"
  good = datasets.prepare("own_scene/good", data_dir, _scene(tmp_path / "good", GOOD_ROWS))
  (data_dir / "notes.txt").write_text("the user's own file\n")
  (data_dir / "empty_folder").mkdir()
  before = _listing(data_dir)
  assert any(name.startswith("own_scene/good/") for name in before)
  assert ".config" not in str(before) and "own_scene/broken" not in str(before)

  broken = _scene(tmp_path / "broken", BAD_ROWS)
  _failed_build(capfd, "own_scene/broken", data_dir, broken, f"{broken / 'poses.csv'}:3")
  assert _listing(data_dir) == before

  # A builder with configs also writes <builder>/.config/: removed too.
  seven_scenes = tmp_path / "seven_scenes"
  (seven_scenes / "chess").mkdir(parents=True)  # no TrainSplit.txt
  _failed_build(capfd, "seven_scenes/chess", data_dir, seven_scenes, "TrainSplit.txt")
  assert _listing(data_dir) == before

  reopened = datasets.get_builder("own_scene/good", data_dir)
  assert reopened.is_prepared() and len(reopened.as_data_source("train")) == 2
  assert len(good.as_data_source("test")) == 1


def test_successful_build_says_it_builds_not_downloads(tmp_path, capfd):
  capfd.readouterr()
  datasets.prepare("own_scene/good", tmp_path / "data", _scene(tmp_path / "good", GOOD_ROWS))
  out, err = capfd.readouterr()
  assert TFDS_DOWNLOAD_LINE not in out + err and "downloaded and prepared" not in out + err
  assert "Building dataset own_scene/good" in out
  assert "Built dataset own_scene/good" in out


def test_interrupted_build_is_removed_like_a_failed_one(tmp_path, monkeypatch):
  data_dir = tmp_path / "data"
  datasets.prepare("own_scene/good", data_dir, _scene(tmp_path / "good", GOOD_ROWS))
  before = _listing(data_dir)

  def interrupted(*args, **kwargs):
    os.makedirs(data_dir / "own_scene" / "other" / "1.0.0" / "incomplete.x")
    raise KeyboardInterrupt

  monkeypatch.setattr(datasets.builders.OwnScene, "_split_generators", interrupted)
  with pytest.raises(KeyboardInterrupt):
    datasets.prepare("own_scene/other", data_dir, tmp_path / "good")
  assert _listing(data_dir) == before
