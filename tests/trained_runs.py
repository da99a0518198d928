"""Tiny runs trained for a few steps (configs/test.py), shared by the test modules that
need a finished run folder (prediction, export, the run's config).

`shared_pose_run` and `shared_classification_run` train once per test run,
whichever module or pytest-xdist worker asks first; the others get the same
folder, which they must not change (copy it to write into it). `pose_run` and
`classification_run` train a run of their own.
"""

from __future__ import annotations

import csv
import pathlib

import jax
import numpy as np

from configs import test as test_config
from lsattn import experiment
from lsattn.data.synthetic import room as synthetic
from shared import built_once, shared_folder  # tests/shared.py


def config(data: dict, **overrides):
  """configs/test.py on `data`'s folders, 2 steps, with `overrides`."""
  result = test_config.get_config()
  result.data_dir, result.manual_dir = data["data_dir"], data["manual_dir"]
  result.num_train_steps = 2
  for key, value in overrides.items():
    result[key] = value
  return result


def shared_pose_run(tmp_path_factory) -> dict:
  """`pose_run` trained once per test run: read-only for its users."""
  root = shared_folder(tmp_path_factory, "pose_run")
  with built_once(root) as build:
    return pose_run(root, train=build)


def shared_classification_run(tmp_path_factory) -> dict:
  """`classification_run` trained once per test run: read-only for its users."""
  root = shared_folder(tmp_path_factory, "classification_run")
  with built_once(root) as build:
    return classification_run(root, train=build)


def pose_run(root: pathlib.Path, *, train: bool = True, **overrides) -> dict:
  """A pose run on a few-frame synthetic scene (sequence 1 train, 2 test).

  Args:
    root: its folder.
    train: False describes the run already trained in `root`.

  Returns:
    {'workdir', 'data' (data_dir, manual_dir), 'config' (the one trained with),
    'test_frames' (folder of the test sequence's PNG frames), 'evaluated'
    (eval's predictions.csv rows by frame name)}.
  """
  scene = root / "manual" / "synthetic_room"
  data = {"manual_dir": str(root / "manual"), "data_dir": str(root / "built")}
  trained = config(data, **overrides)
  if train:
    written = synthetic.write_synthetic_seven_scenes(
        root / "manual", frames_per_sequence=8, image_size=(48, 64), train_sequences=(1,),
        test_sequences=(2,))
    assert written == scene
    experiment.train_and_evaluate(trained, root / "workdir")
  with open(root / "workdir" / "eval" / "predictions.csv") as handle:
    evaluated = {pathlib.PurePosixPath(row["image"]).name: row for row in csv.DictReader(handle)}
  return {"workdir": root / "workdir", "data": data, "config": trained,
          "test_frames": scene / "seq-02", "evaluated": evaluated}


def classification_run(root: pathlib.Path, *, train: bool = True, **overrides) -> dict:
  """A scene-classification run on lsattn's synthetic MIT-67-layout set (2 steps).

  Args:
    root: its folder.
    train: False describes the run already trained in `root`.

  Returns:
    {'workdir', 'data', 'config', 'images' (the written class folders' root)}.
  """
  manual = root / "manual"
  data = {"manual_dir": str(manual), "data_dir": str(root / "built")}
  trained = config(data, dataset="mit67/synthetic", task="classification",
                   num_classes=synthetic.DEFAULT_NUM_CLASSES, resize_size=(36, 36),
                   **overrides)
  if train:
    written = synthetic.write_synthetic_mit67(root / "manual", train_per_class=2,
                                              test_per_class=1, image_size=(40, 40))
    assert pathlib.Path(written) == manual
    experiment.train_and_evaluate(trained, root / "workdir")
  return {"workdir": root / "workdir", "data": data, "config": trained,
          "images": pathlib.Path(manual)}


def assert_subtree_of(saved: dict, expected: dict, prefix: str) -> int:
  """Every leaf of `saved` (a restored checkpoint's subtree) equals the leaf of `expected`
  at the same path; the count."""
  leaves = jax.tree_util.tree_leaves_with_path(saved)
  for path, leaf in leaves:
    node = expected
    for key in path:
      node = node[key.key]
    name = "/".join([prefix] + [key.key for key in path])
    np.testing.assert_array_equal(leaf, np.asarray(node), err_msg=name)
  return len(leaves)


# checkpoint.shape_signature of configs/test.py (GoogLeNet) as main wrote it before the
# backbone family (computed with main b16bc5a's code): a run trained then must still resume.
MAIN_TEST_CONFIG_SIGNATURE = {
    "task": "pose", "num_classes": 0, "variant": "layer_spatial", "fixed_layer": "5b",
    "backbone": "caffe", "candidate_layers": ["3b", "4c", "4e", "5b"],
    "core": {"num_steps": 2, "hidden_size": 8, "projection_size": 8,
             "convlstm_kernel_sizes": [1, 3], "attention_kernel_sizes": [1, 3],
             "gate_embedding_size": 4, "attention_nonlinearity": "leaky_relu",
             "attention_branch_channels": 4, "initial_state": "image", "select_layer": True,
             "spatial_attention": True},
    "dtype": "float32", "image_shape": [32, 32, 3], "freeze_backbone": True,
    "learned_loss_weighting": False}
