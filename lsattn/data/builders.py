"""tensorflow-datasets builders for the paper's datasets (manual download).

Each builder reads the user's download (or lsattn's synthetic data) in the
official on-disk layout through `lsattn.data.formats` (own scenes:
`lsattn.data.own_scene`), validates every index and pose file before
writing anything, decodes each image once (`lsattn.data.images`), stores it
resized to the size the paper's pipeline uses (pose 256x455, classification
256x256; JPEG quality 95) and records the per-channel RGB mean of the train
split in ``info.metadata['channel_mean']``. Records follow ARCHITECTURE.md.

Storage is ``array_record``, read back with ``builder.as_data_source()``
(random access, numpy): no TensorFlow needed.

Builders and configs (``--config.dataset=<builder>/<config>``):

* ``seven_scenes/{chess,fire,heads,office,pumpkin,redkitchen,stairs,synthetic_room,synthetic_walks}``:
  the last two are lsattn's rendered room; ``synthetic_room`` tests
  interpolation between training views, ``synthetic_walks`` generalisation
  to a new walk (`lsattn.data.synthetic.walks`). Each real scene also has a
  ``<scene>_sfm`` config: the same frames with the SfM pseudo ground truth
  (`lsattn.data.pseudo_gt`), a build of its own; `lsattn.data.datasets`
  chooses it from ``config.ground_truth``
* ``cambridge_landmarks/{kings_college,old_hospital,shop_facade,st_marys_church,great_court,street}``
* ``tum_lsi/default``
* ``mit67/{full,synthetic,synthetic_texture,synthetic_layout}``: the last two
  are told apart only by a fine texture or only by a coarse layout
  (`lsattn.data.synthetic.cue_scale`)
* ``own_scene/<name>``: a user's scene, any name; the manual folder is the
  scene folder (`OwnScene`)
"""

from __future__ import annotations

import abc
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from lsattn.data import formats, images, own_scene, pseudo_gt
from lsattn.data.synthetic import cue_scale, rooms
from lsattn.errors import LsattnError


POSE_STORED_SIZE = (256, 455)  # (H, W), PoseNet's resize (paper 4.1)
CLASSIFICATION_STORED_SIZE = (256, 256)

MIT67_CLASSES = tuple(
    "airport_inside artstudio auditorium bakery bar bathroom bedroom bookstore bowling buffet "
    "casino children_room church_inside classroom cloister closet clothingstore computerroom "
    "concert_hall corridor deli dentaloffice dining_room elevator fastfood_restaurant florist "
    "gameroom garage greenhouse grocerystore gym hairsalon hospitalroom inside_bus "
    "inside_subway jewelleryshop kindergarden kitchen laboratorywet laundromat library "
    "livingroom lobby locker_room mall meeting_room movietheater museum nursery office "
    "operating_room pantry poolinside prisoncell restaurant restaurant_kitchen shoeshop "
    "stairscase studiomusic subway toystore trainstation tv_studio videostore waitingroom "
    "warehouse winecellar".split())


class SceneConfig(tfds.core.BuilderConfig):
  """One scene: `folder` is its sub-folder of the manual download folder."""

  def __init__(self, *, folder: str, **kwargs):
    super().__init__(**kwargs)
    self.folder = folder


class _ChannelMean:
  """Running per-channel mean over images (float64 sums)."""

  def __init__(self):
    self.total = np.zeros(3)
    self.count = 0

  def add(self, image: np.ndarray):
    self.total += image.reshape(-1, 3).sum(axis=0, dtype=np.float64)
    self.count += image.shape[0] * image.shape[1]

  def value(self) -> list[float]:
    return [float(v) for v in self.total / max(self.count, 1)]


class _LsattnBuilder(tfds.core.GeneratorBasedBuilder):
  """Shared plumbing: validate everything, then write train and test."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  STORED_SIZE: tuple[int, int] = POSE_STORED_SIZE

  def __init__(self, *, file_format=None, **kwargs):
    # array_record needs no TensorFlow; tfds' own default (tfrecord) does.
    super().__init__(file_format=file_format or "array_record", **kwargs)

  @abc.abstractmethod
  def _features(self) -> tfds.features.FeaturesDict:
    """The record's features (ARCHITECTURE.md)."""

  @abc.abstractmethod
  def _records(self, root: pathlib.Path, split: str) -> list:
    """Reads and checks the split's index and pose files (lsattn.data.formats)."""

  @abc.abstractmethod
  def _example(self, record, image: bytes) -> dict:
    """One tfds example from a record and its encoded image."""

  def _source_dir(self, dl_manager) -> pathlib.Path:
    try:
      root = pathlib.Path(str(dl_manager.manual_dir))
    except (AssertionError, ValueError) as error:
      raise LsattnError(f"{self.name}/{self.builder_config.name}: {error}") from None
    folder = getattr(self.builder_config, "folder", "")
    path = root / folder if folder else root
    if not path.is_dir():
      raise LsattnError(f"{self.name}/{self.builder_config.name}: folder {path} not found. "
                        f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
    return path

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, description=self.__doc__,
                                 features=self._features(), metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    source = self._source_dir(dl_manager)
    # Read and check every index and pose file before any image is written.
    records = {split: self._records(source, split) for split in ("train", "test")}
    check_records(records, source)
    return {split: self._generate_examples(records[split], split == "train")
            for split in ("train", "test")}

  # tfds prints "Downloading and preparing dataset ..." before a build and
  # "... downloaded and prepared" after it; these builders download nothing
  # (they read the user's files), so they say what they do instead.
  def _log_download_bytes(self) -> None:
    print(f"Building dataset {self.name}/{self.builder_config.name} from its source files "
          f"into {self.data_dir} ...", flush=True)

  def _log_download_done(self) -> None:
    print(f"Built dataset {self.name}/{self.builder_config.name} in {self.data_dir}; "
          f"later runs reuse it.", flush=True)

  def _generate_examples(self, records, is_train: bool):
    mean = _ChannelMean()
    for record in records:
      image = images.load_image(record.image_path, self.STORED_SIZE)
      if is_train:
        mean.add(image)
      yield record.image_name, self._example(record, images.encode_jpeg(image))
    if is_train:
      self.info.metadata["channel_mean"] = mean.value()


def check_records(records: dict[str, list], source: pathlib.Path) -> None:
  """Refuses, before any image is decoded, a file name that is not UTF-8 (tfds keys
  and the stored names are text) and a test image that is also a training image
  (the same name or the same file), naming it."""
  for split_records in records.values():
    for record in split_records:
      try:
        record.image_name.encode("utf-8")
      except UnicodeEncodeError:
        shown = os.fsencode(record.image_path).decode("utf-8", "backslashreplace")
        raise LsattnError(f"{shown}: the file name is not UTF-8; rename the file (e.g. "
                          f"convmv -f latin1 -t utf8) and run again") from None
  train = records.get("train", [])
  trained = {record.image_name for record in train}
  trained_files = {os.path.realpath(record.image_path) for record in train}
  leaked = [record for split, split_records in records.items() if split != "train"
            for record in split_records
            if record.image_name in trained or os.path.realpath(record.image_path) in trained_files]
  if leaked:
    first = leaked[0]
    where = f" (sequence {first.sequence})" if hasattr(first, "sequence") else ""
    more = f", and {len(leaked) - 1} more," if len(leaked) > 1 else ""
    raise LsattnError(f"{source}: test image {first.image_name}{where}{more} is also in the "
                      f"train split; a test image must never be trained on. List it in one "
                      f"split only.")


def _pose_features(*, focal_length: bool = False) -> tfds.features.FeaturesDict:
  features = {
      "image": tfds.features.Image(shape=(*POSE_STORED_SIZE, 3), encoding_format="jpeg"),
      "image_name": tfds.features.Text(),
      "sequence": tfds.features.Text(),
      "position": tfds.features.Tensor(shape=(3,), dtype=np.float32),
      "orientation": tfds.features.Tensor(shape=(4,), dtype=np.float32),
  }
  if focal_length:  # the source image's focal length in pixels, where the poses give it
    features["focal_length"] = tfds.features.Scalar(dtype=np.float32)
  return tfds.features.FeaturesDict(features)


class _PoseBuilder(_LsattnBuilder):

  def _features(self):
    return _pose_features()

  def _example(self, record, image):
    return {"image": image, "image_name": record.image_name, "sequence": record.sequence,
            "position": np.asarray(record.position, np.float32),
            "orientation": np.asarray(record.orientation, np.float32)}


SEVEN_SCENES = ("chess", "fire", "heads", "office", "pumpkin", "redkitchen", "stairs")


class SevenScenesConfig(SceneConfig):
  """A 7-Scenes scene with one of its ground truths (`pseudo_gt.GROUND_TRUTHS`):
  'dslam' the original poses (`.pose.txt`), 'sfm' the SfM pseudo ground truth."""

  def __init__(self, *, ground_truth: str = "dslam", **kwargs):
    super().__init__(**kwargs)
    self.ground_truth = ground_truth


def seven_scenes_config_name(scene: str, ground_truth: str) -> str:
  """The tfds config of a scene under a ground truth: 'chess' (D-SLAM), 'chess_sfm'."""
  return scene if ground_truth == "dslam" else f"{scene}_{ground_truth}"


class SevenScenes(_PoseBuilder):
  """Microsoft 7-Scenes (Shotton et al. 2013), official train/test sequences."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download the scenes from Microsoft's 7-Scenes page, unzip each scene and its
  sequence zips so that <manual_dir>/<scene>/TrainSplit.txt, TestSplit.txt and
  <manual_dir>/<scene>/seq-01/frame-000000.color.png + frame-000000.pose.txt
  exist, and pass that folder as --config.manual_dir. For the SfM pseudo
  ground truth (config.ground_truth = 'sfm'), also copy the pgt/ folder of
  github tsattler/visloc_pseudo_gt_limitations into it, so that
  <manual_dir>/pgt/sfm/7scenes/<scene>_train.txt and _test.txt exist.
  """
  BUILDER_CONFIGS = [
      *(SevenScenesConfig(name=seven_scenes_config_name(scene, ground_truth), folder=scene,
                          ground_truth=ground_truth,
                          description=f"7-Scenes {scene}" + (
                              "" if ground_truth == "dslam" else
                              f", {ground_truth} pseudo ground truth"))
        for scene in SEVEN_SCENES for ground_truth in pseudo_gt.GROUND_TRUTHS),
      SevenScenesConfig(name="synthetic_room", folder="synthetic_room",
                        description="lsattn's rendered room, in the 7-Scenes layout: test "
                                    "views between training views (interpolation)"),
      SevenScenesConfig(name="synthetic_walks", folder="synthetic_walks",
                        description="lsattn's rendered room along independent walks: a "
                                    "held-out walk (generalisation to a new walk)")] + [
      SevenScenesConfig(name=name, folder=name,
                        description="one of lsattn's rendered rooms of different size, "
                                    "textures and layout (lsattn.data.synthetic.rooms): "
                                    "several scenes, one model")
      for name in rooms.NAMES]

  @property
  def _sfm(self) -> bool:
    return self.builder_config.ground_truth == "sfm"

  def _features(self):
    return _pose_features(focal_length=self._sfm)

  def _split_generators(self, dl_manager):
    if self._sfm:
      self.info.metadata["ground_truth"] = "sfm"
    return super()._split_generators(dl_manager)

  def _records(self, root, split):
    if self._sfm:
      return pseudo_gt.read_seven_scenes_pgt(root, split, pseudo_gt.pgt_path(
          root.parent, self.builder_config.folder, split))
    return formats.read_seven_scenes(root, split)

  def _example(self, record, image):
    example = super()._example(record, image)
    if self._sfm:
      example["focal_length"] = np.float32(record.focal_length)
    return example


def extra_source_files(builder, manual: pathlib.Path) -> tuple[pathlib.Path, ...]:
  """Files outside the scene's folder that a build reads (its source fingerprint
  covers them): a 7-Scenes SfM build's two pGT files."""
  config = builder.builder_config
  if getattr(config, "ground_truth", "dslam") == "dslam":
    return ()
  return tuple(pseudo_gt.pgt_path(manual, config.folder, split, config.ground_truth)
               for split in ("train", "test"))


class CambridgeLandmarks(_PoseBuilder):
  """Cambridge Landmarks (Kendall et al. 2015), PoseNet's train/test split."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download the scenes from the University of Cambridge repository (PoseNet),
  unzip them so that <manual_dir>/KingsCollege/dataset_train.txt,
  dataset_test.txt and the seq*/ image folders exist, and pass that folder as
  --config.manual_dir.
  """
  BUILDER_CONFIGS = [SceneConfig(name=name, folder=folder, description=f"Cambridge {folder}")
                     for name, folder in (("kings_college", "KingsCollege"),
                                          ("old_hospital", "OldHospital"),
                                          ("shop_facade", "ShopFacade"),
                                          ("st_marys_church", "StMarysChurch"),
                                          ("great_court", "GreatCourt"), ("street", "Street"))]

  def _records(self, root, split):
    return formats.read_cambridge(root, split)


class TumLsi(_PoseBuilder):
  """TUM-LSI (Walch et al. 2017), NavVis scan 2015-08-16_15.34.11, 875/220 split."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download the TUM-LSI (NavVis) images and poses and Walch et al.'s split
  files; arrange <manual_dir>/images/<scan>/00000-cam0.jpg ...,
  <manual_dir>/poses/<scan>_poses.xml and <manual_dir>/train.txt, test.txt
  as documented in lsattn.data.formats.read_tum_lsi, and pass that folder as
  --config.manual_dir.
  """
  BUILDER_CONFIGS = [SceneConfig(name="default", folder="", description="TUM-LSI")]

  def _records(self, root, split):
    return formats.read_tum_lsi(root, split)


class OwnScene(_PoseBuilder):
  """A user's own scene: a folder of images plus one pose file.

  The pose file, found in the scene folder (exactly one of them):

  * ``poses.csv``: header ``image,x,y,z,qw,qx,qy,qz`` and an optional
    ``split`` column (train, test, val); camera centre and camera-to-world
    quaternion (`own_formats.read_pose_csv`);
  * ``dataset_train.txt`` + ``dataset_test.txt``: Cambridge Landmarks text,
    ``ImageFile X Y Z W P Q R`` with the world-to-camera quaternion
    (`own_formats.read_pose_text`);
  * ``images.txt``: a COLMAP text model, world-to-camera quaternion and
    translation (`own_formats.read_colmap_images`).

  Image paths are relative to the scene folder; an image's sequence is its
  parent folder (images directly in the scene folder form one sequence).
  Splits: the CSV's ``split`` column, or the Cambridge pair; otherwise
  (a CSV without ``split``, COLMAP) `lsattn.data.splits.holdout_split`
  holds out the last sequence, or the final 20% of the frames behind a gap,
  as the test split. CSV rows marked ``val`` form a ``validation`` split.
  ``info.metadata`` records ``pose_file`` and ``split_rule``. Finding,
  reading and splitting the pose file: `lsattn.data.own_scene`.

  Configs are made at run time, one per scene (`own_scene_config`); a
  built scene is reused by name, so rebuild under a new name (or delete
  ``<data_dir>/own_scene/<name>``) after changing its files.
  """

  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Put the scene's images in one folder (sub-folders are sequences) with one
  pose file beside them: poses.csv (header image,x,y,z,qw,qx,qy,qz[,split];
  camera centre and camera-to-world quaternion), dataset_train.txt +
  dataset_test.txt (Cambridge Landmarks format) or a COLMAP text model's
  images.txt; pass that folder as --config.manual_dir.
  """
  BUILDER_CONFIGS = []  # One per scene, chosen at run time: own_scene_config(name).

  def _split_generators(self, dl_manager):
    source = self._source_dir(dl_manager)
    records, pose_file, rule = own_scene.read_own_scene(source)
    check_records(records, source)
    self.info.metadata["pose_file"] = pose_file
    self.info.metadata["split_rule"] = rule
    return {split: self._generate_examples(records[split], split == "train")
            for split in records}

  def _records(self, root, split):
    return own_scene.read_own_scene(root)[0][split]


def own_scene_config(name: str) -> SceneConfig:
  """The config of own scene `name` (its files are the whole manual folder)."""
  return SceneConfig(name=name, folder="", description=f"own scene {name!r}")


class ClassesConfig(tfds.core.BuilderConfig):
  """A classification set: its class names fix the label space."""

  def __init__(self, *, classes, **kwargs):
    super().__init__(**kwargs)
    self.classes = tuple(classes)


class Mit67(_LsattnBuilder):
  """MIT-67 Indoor scenes (Quattoni and Torralba 2009), official split."""

  STORED_SIZE = CLASSIFICATION_STORED_SIZE
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download indoorCVPR_09.tar (images) and the official TrainImages.txt and
  TestImages.txt from MIT's Indoor Scene Recognition page; arrange
  <manual_dir>/Images/<class>/<file>.jpg with the two lists beside Images/,
  and pass that folder as --config.manual_dir.
  """
  BUILDER_CONFIGS = [
      ClassesConfig(name="full", classes=MIT67_CLASSES, description="67 classes"),
      ClassesConfig(name="synthetic", classes=(), description="lsattn's synthetic classes"),
      ClassesConfig(name="synthetic_texture", classes=cue_scale.TEXTURES,
                    description="lsattn's cue-scale set: classes differ only by a fine "
                                "texture (period 3.5-5 px at 128 px)"),
      ClassesConfig(name="synthetic_layout", classes=cue_scale.LAYOUTS,
                    description="lsattn's cue-scale set: classes differ only by a coarse, "
                                "left-right symmetric layout of large shapes"),
  ]

  def _features(self):
    classes = self.builder_config.classes or _synthetic_classes()
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(*CLASSIFICATION_STORED_SIZE, 3),
                                     encoding_format="jpeg"),
        "image_name": tfds.features.Text(),
        "label": tfds.features.ClassLabel(names=classes),
    })

  def _records(self, root, split):
    records = formats.read_mit67(root, split)
    known = set(self.info.features["label"].names)
    listing = root / ("TrainImages.txt" if split == "train" else "TestImages.txt")
    for record in records:
      if record.label not in known:
        raise LsattnError(f"{listing}: class {record.label!r} of {record.image_name} is not one "
                          f"of the {len(known)} classes of {self.name}/{self.builder_config.name}")
    return records

  def _example(self, record, image):
    return {"image": image, "image_name": record.image_name, "label": record.label}


def _synthetic_classes() -> tuple[str, ...]:
  from lsattn.data.synthetic import room as synthetic  # numpy rendering; imported only when needed
  return tuple(synthetic.MIT67_CLASS_NAMES[:synthetic.DEFAULT_NUM_CLASSES])
