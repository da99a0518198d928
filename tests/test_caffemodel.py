"""Reading Caffe .caffemodel files without Caffe.

The files are written by google.protobuf itself (tests/caffe_writer.py), from
message types built at run time with caffe.proto's field numbers: a writer
independent of the hand-written decoder under test. Both NetParameter
versions are written: the legacy V1 ``layers`` (blobs with num/channels/
height/width) and the current ``layer`` (blobs with a BlobShape).
"""

import functools

import jax
import numpy as np
import pytest

import caffe_writer  # tests/caffe_writer.py, beside this file
from lsattn import LsattnError
from lsattn.backbones import loading
from lsattn.backbones.googlenet.network import GoogLeNet
from lsattn.weight_formats import caffemodel

NUM_CLASSES = 205  # the Places205 classifier


@pytest.fixture(scope="module")
def googlenet():
  """Random 'caffe' GoogLeNet variables (HWIO) and their Caffe blobs, auxiliary heads added."""
  variables = caffe_writer.random_variables("caffe", NUM_CLASSES, seed=0)
  rng = np.random.default_rng(0)
  blobs = caffe_writer.caffe_blobs(variables)
  aux = {"loss1/conv": [rng.normal(size=(8, 512, 1, 1)).astype(np.float32),
                        np.zeros(8, np.float32)],
         "loss2/classifier": [rng.normal(size=(NUM_CLASSES, 16)).astype(np.float32),
                              np.zeros(NUM_CLASSES, np.float32)]}
  return variables, {**aux, **blobs}


@pytest.mark.parametrize("version", ["layers", "layer", "unpacked", "double"],
                         ids=["v1-legacy-dims", "current-shape", "current-unpacked",
                              "current-double-data"])
def test_caffemodel_loads_like_the_same_weights_as_npz(googlenet, tmp_path, version):
  variables, blobs = googlenet
  model_path = tmp_path / "googlenet_places205.caffemodel"
  caffe_writer.write_caffemodel(model_path, blobs, version)
  npz_path = tmp_path / "googlenet_places205.npz"
  np.savez(npz_path, **{f"{layer}_{i}": b for layer, pair in blobs.items()
                        for i, b in enumerate(pair)})

  from_caffemodel = loading.load_backbone_weights(model_path, "caffe")
  from_npz = loading.load_backbone_weights(npz_path, "caffe")
  assert from_caffemodel["params"]["classifier"]["bias"].shape == (NUM_CLASSES,)
  assert jax.tree.structure(from_caffemodel) == jax.tree.structure(from_npz)
  jax.tree.map(np.testing.assert_array_equal, from_caffemodel, from_npz)
  jax.tree.map(np.testing.assert_array_equal, from_caffemodel, variables)

  apply = jax.jit(functools.partial(GoogLeNet(variant="caffe", num_classes=NUM_CLASSES).apply,
                                    train=False))
  images = np.random.default_rng(1).normal(0, 50, (1, 64, 64, 3)).astype(np.float32)
  ours, reference = apply(from_caffemodel, images), apply(from_npz, images)
  assert set(ours) == {"3b", "4c", "4e", "5b", "logits"}
  jax.tree.map(np.testing.assert_array_equal, ours, reference)
  assert np.std(np.asarray(ours["logits"])) > 0


def test_read_layers_gives_caffe_shapes_and_skips_layers_without_blobs(googlenet, tmp_path):
  _, blobs = googlenet
  path = tmp_path / "v1.caffemodel"
  caffe_writer.write_caffemodel(path, blobs, "layers")
  layers = caffemodel.read_layers(path)
  assert set(layers) == set(blobs)  # 'data' and 'prob' have no blobs
  conv, bias = layers["inception_4c/5x5"]
  assert conv.shape == blobs["inception_4c/5x5"][0].shape and bias.shape[:3] == (1, 1, 1)
  np.testing.assert_array_equal(layers["loss3/classifier"][0][0, 0],
                                blobs["loss3/classifier"][0])


@pytest.mark.parametrize("case", ["alexnet", "one-layer-missing"])
def test_other_network_is_one_error_listing_the_missing_layers(googlenet, tmp_path, case):
  _, blobs = googlenet
  rng = np.random.default_rng(2)
  if case == "alexnet":
    layers = {name: [rng.normal(size=(4, 3, 3, 3)).astype(np.float32), np.zeros(4, np.float32)]
              for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")}
  else:
    layers = {name: pair for name, pair in blobs.items() if name != "inception_4c/5x5"}
  path = tmp_path / f"{case}.caffemodel"
  caffe_writer.write_caffemodel(path, layers, "layers")
  with pytest.raises(LsattnError) as error:
    loading.load_backbone_weights(path, "caffe")
  message = str(error.value)
  assert str(path) in message and "\n" not in message
  total = len({layer for layer in blobs if not layer.startswith(("loss1/", "loss2/"))})
  if case == "alexnet":
    assert f"{total} of its {total} layers" in message
    assert "conv1/7x7_s2" in message and f"and {total - 6} more" in message
    assert "the file has conv1, conv2" in message
  else:
    assert f"1 of its {total} layers" in message and "(inception_4c/5x5)" in message


def test_caffemodel_needs_the_caffe_backbone(googlenet, tmp_path):
  _, blobs = googlenet
  path = tmp_path / "googlenet.caffemodel"
  caffe_writer.write_caffemodel(path, blobs, "layer")
  with pytest.raises(LsattnError, match="needs backbone='caffe'"):
    loading.load_backbone_weights(path, "torchvision")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_file_is_a_named_error(googlenet, tmp_path, damage):
  _, blobs = googlenet
  good = tmp_path / "good.caffemodel"
  caffe_writer.write_caffemodel(good, blobs, "layer")
  data = good.read_bytes()
  path = tmp_path / f"{damage}.caffemodel"
  if damage == "truncated":
    path.write_bytes(data[:len(data) // 2])
  elif damage == "garbage":
    path.write_bytes(np.random.default_rng(3).bytes(5000))
  else:
    path.write_bytes(b"")
  with pytest.raises(LsattnError) as error:
    loading.load_backbone_weights(path, "caffe")
  assert str(path) in str(error.value) and "\n" not in str(error.value)
  if damage == "truncated":
    assert "runs past the end" in str(error.value)
