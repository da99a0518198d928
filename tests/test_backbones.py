"""The backbone family (lsattn.backbones): each member's declared taps against its module,
the lookup, named weights, a member registered here (as a new member's own file would)
working through the model, training and evaluation, and GoogLeNet runs written before
the family (explicit layer names in config.json) still evaluating, predicting, exporting
and resuming under the new defaults."""

from __future__ import annotations

import json
import math
import pathlib
import shutil
from typing import Any, Sequence

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import test as test_config
from lsattn import (LsattnError, backbones, config_checks, experiment, exporting as export, model,
                    prediction, training)
from lsattn.backbones import contract, loading
from lsattn.backbones.googlenet import readers as weights
from lsattn.runs import checkpoint, run_folder
import trained_runs

GOOGLENET_TAPS = ("3b", "4c", "4e", "5b")
CAFFE = {"backbone": "caffe"}  # configs/test.py reads tiny_cnn; these tests are GoogLeNet's
ODD_SIZES = [(33, 45), (97, 71)]
TEST_CONFIG_SIGNATURE = trained_runs.MAIN_TEST_CONFIG_SIGNATURE


def _module(member, taps=None, compute_logits=False):
  return member.module(taps=member.taps if taps is None else taps,
                       compute_logits=compute_logits, dtype=jnp.float32, kernels="auto",
                       remat_blocks=False)


def _output_shapes(member, size) -> dict:
  """The shapes member's module outputs for two images of `size` (traced, not run)."""
  images = jnp.zeros((2, *size, 3))
  return jax.eval_shape(lambda: _module(member).init_with_output(
      jax.random.key(0), images, train=False)[0])


def _assert_declared_shapes(member, size):
  outputs = _output_shapes(member, size)
  assert set(outputs) == set(member.taps)
  for tap, channels in zip(member.taps, member.channels):
    declared = member.tap_shape(tap, *size)
    assert outputs[tap].shape == (2, *declared), (member.name, tap, size)
    assert declared[2] == channels


@pytest.mark.parametrize("size", ODD_SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("name", backbones.names())
def test_declared_tap_shapes_are_the_modules_outputs(name, size):
  _assert_declared_shapes(backbones.get(name), size)


@pytest.mark.parametrize("name", backbones.names())
def test_strides_are_exact_at_multiples_of_the_largest(name):
  member = backbones.get(name)
  assert list(member.strides) == sorted(member.strides)
  assert member.min_image_size == max(member.strides) and member.deepest == member.taps[-1]
  height, width = 7 * member.min_image_size, 5 * member.min_image_size
  for tap, stride, channels in zip(member.taps, member.strides, member.channels):
    assert member.tap_shape(tap, height, width) == (height // stride, width // stride, channels)


def test_tiny_cnn_remat_bfloat16_and_early_stop_change_how_not_what():
  """The tests' member: remat gives the same values, bfloat16 computes in bfloat16, and
  without logits the module stops after the deepest tap asked for (fewer variables)."""
  member = backbones.get("tiny_cnn")
  assert member.strides == (8, 16, 16, 32) and not member.readers and not member.named_weights
  images = jax.random.normal(jax.random.key(1), (2, 40, 48, 3)) * 60
  full = _module(member)
  variables = full.init(jax.random.key(0), images, train=False)
  outputs = full.apply(variables, images, train=False)
  remat = member.module(taps=member.taps, compute_logits=False, dtype=jnp.float32,
                        kernels="cpu", remat_blocks=True)
  for tap, value in remat.apply(variables, images, train=False).items():
    np.testing.assert_allclose(value, outputs[tap], rtol=1e-6, atol=1e-6)
  half = member.module(taps=member.taps, compute_logits=False, dtype=jnp.bfloat16,
                       kernels="auto", remat_blocks=False)
  assert all(v.dtype == jnp.bfloat16 for v in half.apply(variables, images, train=False).values())
  shallow = _module(member, taps=("t1",)).init(jax.random.key(0), images, train=False)
  assert len(shallow["params"]) < len(variables["params"])
  with pytest.raises(LsattnError, match="has no named weights"):
    backbones.weights_file("tiny_cnn", "imagenet")


@pytest.mark.parametrize("name", ["caffe", "torchvision"])
def test_googlenet_members_keep_the_papers_taps_and_names(name):
  member = backbones.get(name)
  assert member.taps == GOOGLENET_TAPS and member.strides == (8, 16, 16, 32)
  assert member.channels == (480, 512, 832, 1024)
  assert member.display_names == ("Conv-3B", "Conv-4C", "Conv-4E", "Conv-5B")
  assert [member.tap_shape(tap, 224, 224) for tap in member.taps] == [
      (28, 28, 480), (14, 14, 512), (14, 14, 832), (7, 7, 1024)]
  assert member.input_convention.endswith(".") and "\n" not in member.input_convention
  model_config = model.ModelConfig(backbone=name)
  assert model_config.candidate_layers == GOOGLENET_TAPS and model_config.fixed_layer == "5b"
  assert model_config.layer_names == member.display_names
  assert model.ModelConfig(backbone=name, variant="posenet").layer_names == ("Conv-5B",)


def _caffe_test_config():
  config = test_config.get_config()
  config.backbone = "caffe"
  return config


def test_the_default_config_is_googlenets_taps_with_todays_signature():
  config = _caffe_test_config()
  assert (config.candidate_layers, config.fixed_layer) == ((), "")
  model_config = config_checks.check_config(config)
  assert (model_config.candidate_layers, model_config.fixed_layer) == (GOOGLENET_TAPS, "5b")
  explicit = _caffe_test_config()
  explicit.candidate_layers, explicit.fixed_layer = GOOGLENET_TAPS, "5b"
  assert config_checks.check_config(explicit) == model_config
  signature = checkpoint.shape_signature(config, model_config, (32, 32, 3))
  assert signature == TEST_CONFIG_SIGNATURE


def test_an_unknown_backbone_is_one_line_listing_the_members():
  with pytest.raises(LsattnError) as error:
    backbones.get("vgg")
  message = str(error.value)
  assert "\n" not in message and "backbone" in message and "'vgg'" in message
  assert all(repr(name) in message for name in backbones.names())
  config = test_config.get_config()
  config.backbone = "vgg"
  with pytest.raises(LsattnError, match=r"backbone must be one of \(.*'torchvision'.*\), "
                                        r"got 'vgg'$"):
    config_checks.check_config(config)


def test_a_member_without_named_weights_refuses_a_name():
  config = _caffe_test_config()
  config.backbone_weights = "imagenet"
  expected = ("config.backbone_weights = 'imagenet': expected a weights file (.caffemodel, "
              ".npz, .pkl, .pickle); backbone 'caffe' has no named weights")
  with pytest.raises(LsattnError) as error:
    config_checks.check_config(config)
  assert str(error.value) == expected
  with pytest.raises(LsattnError) as error:
    loading.load_backbone_weights("imagenet", "caffe")
  assert str(error.value) == expected


# A member defined here, as a new member's module would define it: three taps at
# strides 4, 8, 16 (a stride-4 convolution, then two stride-2 ones).
TINY_TAPS, TINY_STRIDES, TINY_CHANNELS = ("t4", "t8", "t16"), (4, 8, 16), (6, 8, 12)


class TinyBackbone(nn.Module):
  """The test member's module, with the contract's attributes."""
  taps: Sequence[str] = TINY_TAPS
  compute_logits: bool = True
  dtype: Any = jnp.float32
  kernels: str = "auto"
  remat_blocks: bool = False
  num_classes: int = 5

  @nn.compact
  def __call__(self, images, *, train: bool):
    backbones.check_images(images)
    x = images.astype(self.dtype) / 255.0
    outputs = {}
    for tap, stride, channels in zip(TINY_TAPS, (4, 2, 2), TINY_CHANNELS):
      x = nn.relu(nn.Conv(channels, (3, 3), (stride, stride), padding="SAME",
                          dtype=self.dtype, name=tap)(x))
      if tap in self.taps:
        outputs[tap] = x
    if self.compute_logits:
      outputs["logits"] = nn.Dense(self.num_classes, dtype=self.dtype,
                                   name="classifier")(jnp.mean(x, axis=(1, 2)))
    return outputs


def _tiny_tap_shape(tap: str, height: int, width: int) -> tuple[int, int, int]:
  index = TINY_TAPS.index(tap)
  stride = TINY_STRIDES[index]
  return (math.ceil(height / stride), math.ceil(width / stride), TINY_CHANNELS[index])


def _read_tiny(path: str) -> dict:
  with np.load(path) as arrays:
    return flax.traverse_util.unflatten_dict({name: jnp.asarray(arrays[name])
                                              for name in arrays.files}, sep="/")


@pytest.fixture
def tiny(tmp_path, monkeypatch):
  """The member 'tiny' registered for one test; its 'imagenet' weights file (written by
  the test that needs it) in tmp_path."""
  monkeypatch.setattr(contract, "_MEMBERS", dict(contract._MEMBERS))
  weights_file = tmp_path / "tiny_imagenet.npz"
  member = backbones.register(backbones.Backbone(
      name="tiny", module=TinyBackbone, taps=TINY_TAPS, strides=TINY_STRIDES,
      channels=TINY_CHANNELS, display_names=("Tiny-1", "Tiny-2", "Tiny-3"),
      tap_shape=_tiny_tap_shape, input_convention="scaled to 0-1 (a test's member).",
      readers={".npz": _read_tiny}, named_weights={"imagenet": lambda: str(weights_file)}))
  return member, weights_file


def _tiny_weights(member, path):
  variables = _module(member, compute_logits=True).init(
      jax.random.key(7), jnp.zeros((1, 32, 32, 3)), train=False)
  weights.save_npz(path, variables)
  return variables


def test_a_registered_member_declares_its_shapes_and_reads_its_named_weights(tiny, tmp_path):
  member, weights_file = tiny
  assert backbones.names()[-1] == "tiny" and backbones.get("tiny") is member
  for size in ODD_SIZES:
    _assert_declared_shapes(member, size)
  variables = _tiny_weights(member, weights_file)
  jax.tree.map(np.testing.assert_array_equal,
               loading.load_backbone_weights("imagenet", "tiny"), variables)
  with pytest.raises(LsattnError) as error:
    loading.load_backbone_weights("places", "tiny")
  assert str(error.value) == ("config.backbone_weights = 'places': expected a weights file "
                              "(.npz) or a name of backbone 'tiny': ('imagenet',)")
  caffemodel = tmp_path / "places.caffemodel"
  caffemodel.write_bytes(b"")
  with pytest.raises(LsattnError, match=r"backbone 'tiny' reads \.npz weights; a \.caffemodel "
                                        r"file needs backbone='caffe'"):
    loading.load_backbone_weights(caffemodel, "tiny")
  with pytest.raises(ValueError, match="registered twice"):
    backbones.register(member)


def test_a_registered_member_works_through_model_config_and_init_model(tiny):
  member, _ = tiny
  config = test_config.get_config()
  config.backbone = "tiny"  # and nothing else: its taps, its deepest as fixed layer
  model_config = config_checks.check_config(config)
  assert (model_config.candidate_layers, model_config.fixed_layer) == (TINY_TAPS, "t16")
  assert model_config.layer_names == ("Tiny-1", "Tiny-2", "Tiny-3")
  params, state = model.init_model(jax.random.key(0), model_config, (32, 32, 3))
  assert set(params["backbone"]) == set(TINY_TAPS)
  outputs, _ = model.apply_model(params, state, jnp.ones((2, 32, 32, 3)), train=False,
                                 config=model_config)
  assert outputs.layer_choices.shape == (2, 2, 3)  # N = 2 steps, B = 2, k = 3 taps
  assert outputs.prediction["position"].shape == (2, 3)
  with pytest.raises(LsattnError, match=r"at least 16x16 \(backbone 'tiny' downsamples 16x\)"):
    model.apply_model(params, state, jnp.ones((1, 12, 40, 3)), train=False, config=model_config)

  config.model_variant = "spatial_only"
  assert config_checks.check_config(config).layers == ("t16",)
  config.model_variant = "layer_spatial"
  posenet = model.ModelConfig(backbone="tiny", variant="posenet")
  params, _ = model.init_model(jax.random.key(0), posenet, (32, 32, 3))
  assert params["core"]["kernel"].shape == (TINY_CHANNELS[-1], 2048)  # the deepest tap's

  state = training.create_train_state(jax.random.key(0), config, model_config, (32, 32, 3))
  assert set(state.params["backbone"]) == set(TINY_TAPS)
  config.candidate_layers = ("3b", "t8")
  with pytest.raises(LsattnError, match=r"candidate_layers must be distinct names from "
                                        r"\('t4', 't8', 't16'\)"):
    config_checks.check_config(config)
  config.candidate_layers, config.image_size = (), 8
  with pytest.raises(LsattnError, match=r"config.image_size = 8: expected at least 16 "
                                        r"\(backbone 'tiny' downsamples 16x\)"):
    config_checks.check_config(config)


def test_a_registered_member_trains_with_named_weights_and_evaluates(tiny, data, tmp_path):
  member, weights_file = tiny
  variables = _tiny_weights(member, weights_file)
  config = trained_runs.config(data, backbone="tiny", backbone_weights="imagenet",
                               eval_retrieval_baselines=True)
  result = experiment.train_and_evaluate(config, tmp_path / "run")
  assert result["layer_selection_frequency"] and set(result["layer_selection_frequency"][0]) \
      == {"Tiny-1", "Tiny-2", "Tiny-3"}
  assert (result["knn_features_tap"], result["knn_features_layer"]) == ("t16", "Tiny-3")
  saved = run_folder.read(tmp_path / "run")
  assert (saved.backbone, saved.candidate_layers, saved.fixed_layer) == ("tiny", (), "")
  # The frozen backbone is the named file's, bit for bit.
  state = experiment.initial_state(experiment.setup(config))
  jax.tree.map(np.testing.assert_array_equal, state.params["backbone"],
               {tap: variables["params"][tap] for tap in TINY_TAPS})


# ----------------------------------------------------------- runs written before the family


@pytest.fixture(scope="module")
def explicit_run(tmp_path_factory):
  """A run whose config.json holds GoogLeNet's tap names, as main wrote every run
  before the family (its defaults were the names, not () and '')."""
  return trained_runs.pose_run(tmp_path_factory.mktemp("explicit"),
                               candidate_layers=GOOGLENET_TAPS, fixed_layer="5b",
                               eval_retrieval_baselines=True, **CAFFE)


def _signatures(workdir) -> dict[int, dict]:
  """{step: shape signature} of a run's checkpoints."""
  manager = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "meta"),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  return {step: checkpoint.read_meta(manager, step)["signature"]
          for step in manager.all_steps()}


def _same_signature(workdir) -> bool:
  """Whether every checkpoint of the run has main's signature of configs/test.py."""
  signatures = _signatures(workdir).values()
  return bool(signatures) and all(s == TEST_CONFIG_SIGNATURE for s in signatures)


def _copy(run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(run["workdir"], workdir)
  return workdir


def test_a_run_with_explicit_googlenet_taps_is_the_default_configs_run(explicit_run, tmp_path):
  saved = json.loads((explicit_run["workdir"] / "config.json").read_text())
  assert (saved["candidate_layers"], saved["fixed_layer"]) == (list(GOOGLENET_TAPS), "5b")
  assert _same_signature(explicit_run["workdir"])

  workdir = _copy(explicit_run, tmp_path)
  # candidate_layers (), fixed_layer '': the default config's; the retrieval rows are run-time.
  default = trained_runs.config(explicit_run["data"], eval_retrieval_baselines=True, **CAFFE)
  trained = json.loads((workdir / "eval" / "metrics.json").read_text())
  evaluated = experiment.evaluate(default, workdir)
  assert evaluated["config_overrides"] == {}
  assert evaluated["median_translation_m"] == pytest.approx(trained["median_translation_m"],
                                                            abs=1e-6)
  assert evaluated["knn_features_layer"] == "Conv-5B"

  frames = sorted(explicit_run["test_frames"].glob("*.color.png"))[:2]
  predicted = prediction.predict(workdir, default, frames)
  for result in predicted:
    row = explicit_run["evaluated"][pathlib.Path(result["path"]).name]
    # Photos are decoded anew (not the dataset's stored JPEG): close, not equal.
    assert result["position"] == pytest.approx(
        [float(row[f"pred_{axis}"]) for axis in "xyz"], abs=0.01)
    assert result["layers"] == [row["layer_step1"], row["layer_step2"]]

  description = export.export_run(workdir, tmp_path / "model.jax", default)
  assert description["layer_names"] == ["Conv-3B", "Conv-4C", "Conv-4E", "Conv-5B"]
  assert (description["backbone"], description["layers"]) == ("caffe", list(GOOGLENET_TAPS))

  resumed = experiment.train_and_evaluate(trained_runs.config(explicit_run["data"],
                                                              num_train_steps=3, **CAFFE),
                                          workdir)
  assert resumed["checkpoint_step"] == 3 and 3 in _signatures(workdir)
  assert _same_signature(workdir)
  assert json.loads((workdir / "config.json").read_text())["candidate_layers"] == []
  with pytest.raises(LsattnError, match=r"candidate_layers=\('3b', '4c', '4e', '5b'\) in the "
                                        r"run, \('3b', '5b'\) given"):
    experiment.evaluate(trained_runs.config(explicit_run["data"], candidate_layers=("3b", "5b"),
                                            **CAFFE), workdir)
