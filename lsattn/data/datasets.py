"""From a config's ``dataset`` name to a built, readable tfds dataset.

``prepare('seven_scenes/chess', data_dir, manual_dir)`` builds the dataset
once (later calls reuse it). ``own_scene/<name>`` is a user's scene under any
name (letters, digits, '_', '-', '.'); its ``manual_dir`` is the scene folder
(`builders.OwnScene`). For the synthetic configs the source files are
first written by `lsattn.data.synthetic.room` (``seven_scenes/synthetic_walks``:
`lsattn.data.synthetic.walks`; ``mit67/synthetic_texture`` and
``mit67/synthetic_layout``: `lsattn.data.synthetic.cue_scale`) into ``manual_dir``
(default ``<data_dir>/manual/<builder>_<config>``), so they run with no
download; ``seven_scenes/synthetic_study``, ``synthetic_hall`` and
``synthetic_gallery`` (`lsattn.data.synthetic.rooms`) are three such rooms for
one model over several scenes (`lsattn.data.scenes`).

``ground_truth`` chooses the poses of a 7-Scenes scene: 'dslam' (default, the
original poses, the paper's) or 'sfm' (the SfM pseudo ground truth,
`lsattn.data.pseudo_gt`), built as the tfds config ``<scene>_sfm``: a build of
its own, in a folder of its own, so the two are never mixed up. The scene is
always named as ``seven_scenes/<scene>``; other datasets have one ground truth.

A build records what it was built from (`sources`: a fingerprint of its
folder of source files); a later run whose source files changed is refused
with one line saying how to rebuild, and a build into a data_dir that cannot
be written is refused before any file is read.

A failed build raises `LsattnError` and leaves data_dir as it was: every
file and folder the build made there (tfds' ``<builder>/<config>/``,
``<builder>/.config/``, ``downloads/``; an interrupted build's
``incomplete.*`` folder) is removed, nothing that existed before is touched.
A full disk is one line naming data_dir and the space. A build holds a lock
(``<builder>/<config>/.lsattn-lock``, `run_lock`), so the ``incomplete.*``
folders of this dataset that a killed build left (tfds' naming:
``incomplete.<6 characters>_<version>``) are removed by the next build, and
never one still being written. The build's own files are in its record
(`sources`): a damaged shard is refused, naming how to rebuild, before use.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import re
import shutil
import sys
import tempfile
import time

import tensorflow_datasets as tfds

from lsattn.data import builders, pseudo_gt, sources
from lsattn.data.synthetic import cue_scale, rooms
from lsattn.errors import LsattnError
from lsattn.runs import run_lock

BUILDER_NAMES = ("seven_scenes", "cambridge_landmarks", "tum_lsi", "mit67", "own_scene")
_OWN_SCENE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# The mit67 configs written by lsattn.data.synthetic.cue_scale, and the cue of each.
_CUE_SCALE_CUES = {"synthetic_texture": "texture", "synthetic_layout": "layout"}


def split_name(dataset: str) -> tuple[str, str]:
  """'seven_scenes/chess' -> ('seven_scenes', 'chess')."""
  parts = dataset.split("/")
  if len(parts) != 2 or not all(parts):
    raise LsattnError(f"dataset must be '<builder>/<config>' (e.g. 'seven_scenes/chess'), "
                      f"got {dataset!r}")
  return parts[0], parts[1]


def builder_class(name: str) -> type[tfds.core.GeneratorBasedBuilder]:
  if name == "seven_scenes":
    return builders.SevenScenes
  elif name == "cambridge_landmarks":
    return builders.CambridgeLandmarks
  elif name == "tum_lsi":
    return builders.TumLsi
  elif name == "mit67":
    return builders.Mit67
  elif name == "own_scene":
    return builders.OwnScene
  else:
    raise LsattnError(f"dataset builder must be one of {BUILDER_NAMES} (own scenes: "
                      f"'own_scene/<name>'), got {name!r}")


def is_synthetic(dataset: str) -> bool:
  name, config = split_name(dataset)
  return ((name, config) in (("seven_scenes", "synthetic_room"),
                             ("seven_scenes", "synthetic_walks"), ("mit67", "synthetic"))
          or (name == "mit67" and config in _CUE_SCALE_CUES)
          or (name == "seven_scenes" and config in rooms.NAMES))


def task_of(dataset: str) -> str:
  return "classification" if split_name(dataset)[0] == "mit67" else "pose"


def _write_synthetic(dataset: str, manual_dir: pathlib.Path, seed: int) -> None:
  """Writes the synthetic source files atomically (a temporary folder renamed)."""
  from lsattn.data.synthetic import room, walks  # rendering code, only needed here
  name, config = split_name(dataset)
  staging = manual_dir.with_name(manual_dir.name + ".incomplete")
  shutil.rmtree(staging, ignore_errors=True)
  staging.mkdir(parents=True)
  if name == "seven_scenes" and config == "synthetic_walks":
    walks.write_synthetic_walks(staging, seed=seed)
  elif name == "seven_scenes" and config in rooms.NAMES:
    rooms.write_synthetic_room(staging, config, seed=seed)
  elif name == "seven_scenes":
    room.write_synthetic_seven_scenes(staging, seed=seed)
  elif config in _CUE_SCALE_CUES:
    cue_scale.write_cue_scale_mit67(staging, cue=_CUE_SCALE_CUES[config], seed=seed)
  else:
    room.write_synthetic_mit67(staging, seed=seed)
  staging.rename(manual_dir)


@contextlib.contextmanager
def _temporary_folders_removed():
  """Temporary folders made inside the block are removed after it.

  A tfds builder whose dataset is not built yet makes an empty temporary
  folder and never removes it (``DatasetInfo.initialize_from_bucket``), one
  more in the system's temporary folder per run.
  """
  with tempfile.TemporaryDirectory(prefix="lsattn-tfds-") as folder:
    previous, tempfile.tempdir = tempfile.tempdir, folder
    try:
      yield
    finally:
      tempfile.tempdir = previous


def has_two_ground_truths(dataset: str) -> bool:
  """Whether `dataset` is one of the seven 7-Scenes scenes (D-SLAM and SfM poses)."""
  name, config = split_name(dataset)
  return name == "seven_scenes" and config in builders.SEVEN_SCENES


def check_ground_truth(dataset: str, ground_truth: str) -> None:
  """Refuses a ground truth the dataset does not have (one line naming key and value)."""
  if ground_truth not in pseudo_gt.GROUND_TRUTHS:
    raise LsattnError(f"config.ground_truth = {ground_truth!r}: expected one of "
                      f"{pseudo_gt.GROUND_TRUTHS}")
  if ground_truth != "dslam" and not has_two_ground_truths(dataset):
    raise LsattnError(f"config.ground_truth = {ground_truth!r}: the SfM pseudo ground truth "
                      f"exists for the 7-Scenes scenes (seven_scenes/"
                      f"{{{','.join(builders.SEVEN_SCENES)}}}), not for dataset {dataset!r}; "
                      f"use 'dslam' (the dataset's own poses)")


def get_builder(dataset: str, data_dir: str | pathlib.Path,
                ground_truth: str = "dslam") -> tfds.core.DatasetBuilder:
  """The builder of `dataset` under `ground_truth` (built or not)."""
  with _temporary_folders_removed():
    return _builder(dataset, data_dir, ground_truth)


def class_names(builder: tfds.core.DatasetBuilder, dataset: str,
                num_classes: int) -> tuple[str, ...]:
  """A classification dataset's class names; LsattnError unless there are `num_classes`."""
  names = tuple(builder.info.features["label"].names)
  if len(names) != num_classes:
    raise LsattnError(f"config.num_classes = {num_classes} but dataset {dataset!r} has "
                      f"{len(names)} classes")
  return names


def _builder(dataset: str, data_dir: str | pathlib.Path,
             ground_truth: str = "dslam") -> tfds.core.DatasetBuilder:
  name, config = split_name(dataset)
  cls = builder_class(name)
  check_ground_truth(dataset, ground_truth)
  data_dir = str(pathlib.Path(data_dir).expanduser())
  if cls is builders.SevenScenes:
    tfds_config = _seven_scenes_config(dataset, config, ground_truth)
    if tfds_config is None:
      configs = [c.name for c in cls.BUILDER_CONFIGS if c.ground_truth == "dslam"]
      raise LsattnError(f"dataset {dataset!r}: config must be one of {configs}, "
                        f"got {config!r}")
    return cls(config=tfds_config, data_dir=data_dir, file_format="array_record")
  if cls is builders.OwnScene:
    if not _OWN_SCENE_NAME.fullmatch(config):
      raise LsattnError(f"dataset {dataset!r}: an own scene's name must be letters, digits, "
                        f"'_', '-' or '.' (not starting with one of the last three), "
                        f"got {config!r}")
    return cls(config=builders.own_scene_config(config), data_dir=data_dir,
               file_format="array_record")
  configs = [c.name for c in cls.BUILDER_CONFIGS]
  if config not in configs:
    raise LsattnError(f"dataset {dataset!r}: config must be one of {configs}, got {config!r}")
  return cls(config=config, data_dir=data_dir, file_format="array_record")


def _seven_scenes_config(dataset: str, scene: str, ground_truth: str) -> str | None:
  """The tfds config of 7-Scenes `scene` under `ground_truth`; None for an unknown scene."""
  known = {c.name: c for c in builders.SevenScenes.BUILDER_CONFIGS}
  if scene not in known:
    return None
  if known[scene].ground_truth != "dslam":
    raise LsattnError(f"dataset {dataset!r}: name the scene "
                      f"('seven_scenes/{known[scene].folder}') and choose its poses with "
                      f"config.ground_truth = {known[scene].ground_truth!r}")
  return builders.seven_scenes_config_name(scene, ground_truth)


def prepare(dataset: str, data_dir: str | pathlib.Path, manual_dir: str | pathlib.Path = "",
            *, synthetic_seed: int = 0, ground_truth: str = "dslam"
            ) -> tfds.core.DatasetBuilder:
  """A built dataset (building it first if needed).

  Args:
    dataset: '<builder>/<config>'.
    data_dir: where tfds keeps built datasets.
    manual_dir: the user's download (not needed once built; synthetic
      datasets default to a folder under data_dir).
    synthetic_seed: seed of the synthetic generators.
    ground_truth: a 7-Scenes scene's poses, 'dslam' or 'sfm' (`check_ground_truth`).

  Raises:
    LsattnError: unknown name, missing download, or bad files (the error
      names the file and line); nothing partial is left in data_dir.
  """
  builder = get_builder(dataset, data_dir, ground_truth)
  manual = _manual_folder(dataset, data_dir, manual_dir)
  if builder.is_prepared():
    return _reused(builder, dataset, manual)
  data_dir = pathlib.Path(data_dir).expanduser()
  _check_writable(data_dir)
  if not is_synthetic(dataset):
    if not manual_dir:
      raise LsattnError(f"dataset {dataset!r} is not built in {data_dir} and manual_dir is not "
                        f"set. {builder.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
    manual = pathlib.Path(manual_dir).expanduser()
    if not manual.is_dir():
      raise LsattnError(f"manual_dir {manual} does not exist. "
                        f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
  config_folder = pathlib.Path(builder.data_dir).parent
  with _restored_on_failure(data_dir), _building(config_folder, dataset):
    if builder.is_prepared():  # built by another process while we waited for its lock
      return _reused(get_builder(dataset, data_dir, ground_truth), dataset, manual)
    _clear_killed_builds(config_folder, str(builder.version))
    try:
      if is_synthetic(dataset) and not manual.is_dir():
        _write_synthetic(dataset, manual, synthetic_seed)
      source_folder = _source_folder(builder, manual)
      extra = builders.extra_source_files(builder, manual)
      source = sources.fingerprint(source_folder, extra)  # before the build: what it is built from
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=str(manual)))
      sources.record(pathlib.Path(builder.data_dir), source_folder, source, extra)
    except Exception as error:
      if _no_space(error):
        raise _full_disk(dataset, data_dir, manual) from None
      raise
  return builder


def _reused(builder, dataset: str, manual: pathlib.Path | None):
  """A built dataset, checked: its own files (always) and its source (when at hand)."""
  build_dir = pathlib.Path(builder.data_dir)
  sources.check_outputs(build_dir, dataset)
  if manual is not None and manual.is_dir():
    sources.check(build_dir, _source_folder(builder, manual), dataset,
                  builders.extra_source_files(builder, manual))
  return builder


@contextlib.contextmanager
def _building(config_folder: pathlib.Path, dataset: str):
  """The block is the only build of this dataset in this data_dir (`run_lock`); a build
  by another process (the other processes of a job on one host) is waited for."""
  entered = waited = False
  while True:
    try:
      with run_lock.holding(config_folder, f"the build of {dataset!r}"):
        entered = True
        yield
      return
    except run_lock.Busy as busy:
      if entered:  # not the lock's: the block's own
        raise
      if not waited:
        print(f"Waiting for another process's build of {dataset!r} in {config_folder} "
              f"({run_lock.describe_holder(json.dumps(busy.holder))}).", file=sys.stderr)
        waited = True
      time.sleep(1)


def _clear_killed_builds(config_folder: pathlib.Path, version: str) -> None:
  """Removes the incomplete builds of this dataset's version that killed builds left
  (tfds' ``incomplete.<6 characters>_<version>``); the caller holds the build lock."""
  pattern = re.compile(r"incomplete\.[A-Z0-9]{6}_" + re.escape(version))
  for entry in sorted(config_folder.iterdir()):
    if pattern.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
      shutil.rmtree(entry)
      print(f"Removed {entry}, an incomplete build that an earlier, killed build left.",
            file=sys.stderr)


def _no_space(error: BaseException) -> bool:
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or (
        "No space left on device" in str(error)):
      return True
    error = error.__cause__ or error.__context__
  return False


def _full_disk(dataset: str, data_dir: pathlib.Path, manual: pathlib.Path) -> LsattnError:
  """The one line for a build that filled the disk (tfds has removed its partial build)."""
  source = sum(path.stat().st_size for path in manual.rglob("*")
               if path.is_file() and not path.is_symlink()) if manual.is_dir() else 0
  free = shutil.disk_usage(data_dir).free
  return LsattnError(f"could not build dataset {dataset!r} in {data_dir}: no space left on "
                     f"device ({free / 2**20:.1f} MiB free; the build stores the images of "
                     f"its source again, re-encoded, and the source holds "
                     f"{source / 2**20:.1f} MiB). Free disk space or use another "
                     f"--config.data_dir, then run again; nothing of the build was left there.")


def _manual_folder(dataset: str, data_dir, manual_dir) -> pathlib.Path | None:
  """The folder a dataset is built from: manual_dir, for synthetic datasets by default
  a folder under data_dir; None when not given."""
  if manual_dir:
    return pathlib.Path(manual_dir).expanduser()
  if is_synthetic(dataset):
    name, config = split_name(dataset)
    return pathlib.Path(data_dir).expanduser() / "manual" / f"{name}_{config}"
  return None


def _source_folder(builder, manual: pathlib.Path) -> pathlib.Path:
  """The part of `manual` the builder reads (a 7-Scenes scene's folder, not all seven)."""
  folder = getattr(builder.builder_config, "folder", "")
  return manual / folder if folder else manual


def _check_writable(data_dir: pathlib.Path) -> None:
  """Refuses a build into a data_dir (or, when new, its nearest existing parent) that
  cannot be written, before anything is read or decoded."""
  existing = data_dir
  while not existing.exists() and existing.parent != existing:
    existing = existing.parent
  if not os.access(existing, os.W_OK | os.X_OK):
    raise LsattnError(f"config.data_dir = {str(data_dir)!r}: cannot write in {existing} "
                      f"(permission denied or read-only) to build the dataset there. Use a "
                      f"writable --config.data_dir.")


def _tree(folder: pathlib.Path) -> set[str]:
  """Every path under `folder` (itself included); symlinks are listed, not followed."""
  paths = {str(folder)}
  for parent, folders, files in os.walk(folder):
    paths.update(os.path.join(parent, name) for name in folders + files)
  return paths


@contextlib.contextmanager
def _restored_on_failure(data_dir: pathlib.Path):
  """If the block fails, removes every file and folder it made in data_dir.

  A failed tfds build leaves ``<builder>/<config>/``, ``<builder>/.config/``
  and ``downloads/`` behind; what existed before the block is never touched.
  A data_dir the block created (and any of its parents it created) is
  removed whole.
  """
  data_dir = data_dir.absolute()
  top = data_dir  # the outermost folder that did not exist before, if any
  while not top.parent.exists() and top.parent != top:
    top = top.parent
  before = _tree(data_dir) if data_dir.exists() else None
  try:
    yield
  except BaseException:
    if before is None:
      shutil.rmtree(top, ignore_errors=True)
    else:
      _remove_new(data_dir, before)
    raise


def _remove_new(folder: pathlib.Path, before: set[str]) -> None:
  """Removes the paths under `folder` not in `before` (a new folder whole)."""
  for parent, folders, files in os.walk(folder):
    for name in files + folders:
      path = os.path.join(parent, name)
      if path in before:
        continue
      if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
      else:
        with contextlib.suppress(FileNotFoundError):
          os.unlink(path)
    folders[:] = [name for name in folders if os.path.join(parent, name) in before]
