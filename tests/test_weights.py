"""Weight import/export: .npz round trip, Caffe naming, torchvision equivalence."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsattn import LsattnError
from lsattn.backbones import loading
from lsattn.backbones.googlenet import readers as weights
from lsattn.backbones.googlenet.network import GoogLeNet


def _init(variant, num_classes=10, size=64):
  """The module and its initial variables (one compiled program, not op by op)."""
  model = GoogLeNet(variant=variant, num_classes=num_classes)
  return model, jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                                           train=False))()


def _random_variables(variant, num_classes=10):
  """Variables of the module's names and shapes, random: for tests of names and
  shapes, with no compile."""
  template = weights.template_variables(variant, num_classes)
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda leaf: rng.standard_normal(leaf.shape).astype(leaf.dtype), template)


def test_npz_round_trip(tmp_path):
  variables = _random_variables("torchvision")
  path = tmp_path / "backbone.npz"
  weights.save_npz(path, variables)
  loaded = loading.load_backbone_weights(path, "torchvision")
  jax.tree.map(np.testing.assert_array_equal, loaded, variables)


@pytest.mark.parametrize("damage, message", [
    ("drop", "missing key"), ("extra", "unexpected key"), ("reshape", "has shape")],
    ids=["missing", "unexpected", "wrong-shape"])
def test_bad_npz_names_the_key(tmp_path, damage, message):
  variables = _random_variables("caffe")
  flat = {name: np.asarray(v) for name, v in weights._flatten(variables).items()}
  name = "params/inception_4c/b3x3/conv/kernel"
  if damage == "drop":
    del flat[name]
  elif damage == "extra":
    flat["params/inception_9z/conv/kernel"] = np.zeros(3)
  else:
    flat[name] = flat[name][..., :3]
  path = tmp_path / "bad.npz"
  np.savez(path, **flat)
  with pytest.raises(LsattnError, match=message) as error:
    weights.load_npz(path, "caffe", num_classes=10)
  assert str(path) in str(error.value)


def test_unreadable_and_missing_files(tmp_path):
  path = tmp_path / "truncated.npz"
  path.write_bytes(b"PK\x03\x04 not really a zip")
  with pytest.raises(LsattnError, match="truncated.npz"):
    loading.load_backbone_weights(path, "caffe")
  with pytest.raises(LsattnError, match="no such file"):
    loading.load_backbone_weights(tmp_path / "absent.npz", "caffe")


def test_caffe_naming_loads_oihw_blobs(tmp_path):
  variables = _random_variables("caffe")
  blobs = {}
  for name, value in weights._flatten(variables["params"]).items():
    modules, leaf = weights._module_and_leaf("params/" + name)
    layer = weights._external_layer(weights._layer_modules(modules), weights._CAFFE_STEM,
                                    weights._CAFFE_BRANCH, "/")
    value = np.asarray(value)
    if leaf == "kernel":
      value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
    blobs.setdefault(layer, [None, None])[0 if leaf == "kernel" else 1] = value
  assert "inception_3a/5x5" in blobs and blobs["conv1/7x7_s2"][0].shape == (64, 3, 7, 7)
  pickle_path = tmp_path / "places_googlenet.pkl"
  pickle_path.write_bytes(pickle.dumps(blobs))
  npz_path = tmp_path / "places_googlenet.npz"
  np.savez(npz_path, **{f"{k}_{i}": v for k, pair in blobs.items() for i, v in enumerate(pair)})
  for path in (pickle_path, npz_path):
    loaded = loading.load_backbone_weights(path, "caffe")
    jax.tree.map(np.testing.assert_array_equal, loaded, variables)


@pytest.mark.parametrize("transform_input", [False, True])
def test_torchvision_equivalence(tmp_path, transform_input):
  torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install 'lsattn[torch]')")
  torchvision = pytest.importorskip(
      "torchvision", reason="torchvision is not importable (pip install 'lsattn[torch]')")
  torch.manual_seed(0)
  reference = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True,
                                           num_classes=10, transform_input=transform_input)
  with torch.no_grad():  # non-trivial running statistics, so eval-mode BN is compared
    for module in reference.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.uniform_(-0.5, 0.5)
        module.running_var.uniform_(0.5, 1.5)
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-0.2, 0.2)
  reference.eval()
  path = tmp_path / "googlenet.pth"
  torch.save(reference.state_dict(), path)

  taps = {}
  for name in ("3b", "4c", "4e", "5b"):
    getattr(reference, f"inception{name}").register_forward_hook(
        lambda module, inputs, output, name=name: taps.__setitem__(name, output))
  normalised = torch.randn(1, 3, 96, 96)
  with torch.no_grad():
    logits = reference(normalised)

  variables = loading.load_backbone_weights(path, "torchvision")
  # Our input convention: RGB 0-255 minus mean; the variant divides by 255 * std.
  std = np.array([0.229, 0.224, 0.225], np.float32)
  images = normalised.numpy().transpose(0, 2, 3, 1) * 255 * std
  ours = GoogLeNet(variant="torchvision", num_classes=10,
                   transform_input=transform_input).apply(variables, images, train=False)
  for name, value in taps.items():
    expected = value.numpy().transpose(0, 2, 3, 1)
    error = np.linalg.norm(np.asarray(ours[name]) - expected) / np.linalg.norm(expected)
    assert error < 1e-4, (name, error)
  error = np.linalg.norm(np.asarray(ours["logits"]) - logits.numpy()) / np.linalg.norm(logits)
  assert error < 1e-4
