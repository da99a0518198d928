"""config.kernels and config.remat change how the model computes, not what.

'cpu' (the CPU-tuned formulations) and 'generic' (plain XLA ops) give the
same values and gradients for each kernel and for the whole model's loss;
remat ('blocks', 'steps') gives the same loss and gradients with fewer
temporary bytes in the compiled train step (XLA's memory analysis of the
compiled program: deterministic, not a timing).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import test as test_config
from lsattn import LsattnError, config_checks, training
from lsattn.backbones.googlenet import network as googlenet
from lsattn.nn import attention, compute_options, primitives as layers
from lsattn.runs import checkpoint, compilation

IMAGE = 32
ON_CPU = jax.default_backend() == "cpu"

def _step_options(config, platform=None):
  """The steps' compiler options for a config's kernels and YNNPACK fusions."""
  return compilation.step_compiler_options(config.kernels, config.xla_cpu_ynn_fusions, platform)



def _assert_trees_close(expected, actual, rtol=1e-5, per_leaf=True):
  """Every leaf equal to within rtol of the leaf's (or, per_leaf=False, the whole
  tree's) largest magnitude. A model's gradient is compared tree-wide: some of
  its leaves are zero up to rounding (a bias before a batch norm), and their
  rounding noise differs between two correct formulations."""
  expected, actual = jax.device_get((expected, actual))
  assert jax.tree.structure(expected) == jax.tree.structure(actual)
  tree_scale = max(float(np.max(np.abs(x))) for x in jax.tree.leaves(expected))
  for x, y in zip(jax.tree.leaves(expected), jax.tree.leaves(actual)):
    scale = max(float(np.max(np.abs(x))) if per_leaf else tree_scale, 1e-30)
    np.testing.assert_allclose(y, x, rtol=0, atol=rtol * scale)


def _value_and_grads(fn, args):
  """fn(*args) and the gradient of sum(sin(fn)) w.r.t. every argument, jitted."""
  loss = lambda *a: jnp.sum(jnp.sin(fn(*a)))
  return jax.jit(lambda *a: (fn(*a), jax.grad(loss, argnums=tuple(range(len(a))))(*a)))(*args)


@pytest.mark.parametrize("shape,window,stride,padding", [
    ((2, 9, 11, 3), 3, 2, 0),  # the backbone's strided ceil-mode pools, odd size
    ((2, 8, 8, 3), 3, 2, 0),  # even size: ceil mode pads one -inf column and row
    ((2, 7, 7, 4), 3, 1, 1),  # an inception block's 3x3 pool ('SAME')
    ((2, 7, 7, 4), 2, 2, 0),  # torchvision's 2x2 fourth pool, padded
], ids=["stride2_odd", "stride2_even", "inception", "torchvision_pool4"])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_max_pool_paths_agree(shape, window, stride, padding, ties):
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  if ties:
    x = np.round(x)  # many equal maxima: both give the gradient to the first
  results = [_value_and_grads(
      lambda x, kernels=kernels: googlenet.max_pool_ceil(x, window, stride, padding,
                                                         kernels=kernels), (x,))
      for kernels in ("cpu", "generic")]
  _assert_trees_close(*results)
  assert np.all(np.isfinite(results[0][0]))  # padding never wins


def test_mask_head_paths_agree():
  params, _ = attention.init_spatial_attention(jax.random.key(0), hidden_size=4,
                                               feature_channels=6, kernel_sizes=(1, 3, 5),
                                               branch_channels=2)
  activated = jax.random.normal(jax.random.key(1), (2, 5, 6, 6))
  results = [_value_and_grads(
      lambda branches, mix, a, kernels=kernels: attention.mask_head(
          branches, mix, a, kernels=kernels),
      (params["mask_branches"], params["mask_mix"], activated))
      for kernels in ("cpu", "generic")]
  _assert_trees_close(*results)


def test_one_by_one_convolution_paths_agree():
  params = layers.init_conv(jax.random.key(0), kernel_size=1, in_channels=5, out_channels=3)
  x = jax.random.normal(jax.random.key(1), (2, 4, 3, 5))
  cpu, generic = [_value_and_grads(
      lambda p, x, kernels=kernels: layers.conv2d(p, x, kernels=kernels), (params, x))
      for kernels in ("cpu", "generic")]
  _assert_trees_close(cpu, generic)
  lowered = lambda kernels: jax.jit(lambda p, x: layers.conv2d(p, x, kernels=kernels)).lower(
      params, x).as_text()
  assert "convolution" in lowered("generic") and "convolution" not in lowered("cpu")


def test_auto_resolves_by_backend_and_generic_drops_the_cpu_options():
  assert compute_options.resolve_kernels("auto", "cpu") == "cpu"
  assert compute_options.resolve_kernels("auto", "gpu") == "generic"
  assert compute_options.resolve_kernels("auto", "tpu") == "generic"
  assert compute_options.resolve_kernels("cpu", "gpu") == "cpu"
  if ON_CPU:
    assert compute_options.resolve_kernels("auto") == "cpu"
  generic = _config("generic", "none")
  assert _step_options(generic, "cpu") is None
  assert _step_options(_config("cpu", "none"), "cpu") == (
      _step_options(_config("auto", "none"), "cpu"))


@pytest.mark.parametrize("key,value", [("kernels", "gpu"), ("kernels", "CPU"),
                                       ("remat", "all"), ("remat", "Blocks")])
def test_bad_kernels_and_remat_name_the_key(key, value):
  config = test_config.get_config()
  config[key] = value
  with pytest.raises(LsattnError, match=re.escape(f"config.{key} = {value!r}")):
    config_checks.check_config(config)


def test_kernels_and_remat_do_not_block_a_resume():
  """How the step computes is not part of the checkpoint's shape signature."""
  signatures = []
  for kernels, remat in (("cpu", "none"), ("generic", "both")):
    config = _config(kernels, remat)
    signatures.append(checkpoint.shape_signature(
        config, config_checks.check_config(config), (IMAGE, IMAGE, 3)))
  assert signatures[0] == signatures[1]


# ------------------------------------------------------------------ the whole model


def _config(kernels: str, remat: str):
  config = test_config.get_config()
  config.backbone = "caffe"  # GoogLeNet's kernels (configs/test.py reads tiny_cnn)
  config.freeze_backbone = False  # the backbone's pools and blocks in the backward pass
  config.candidate_layers = ("3b",)  # the backbone stops at 3b: every kernel, less to compile
  config.kernels = kernels
  config.remat = remat
  return config


@pytest.fixture(scope="module")
def model_inputs():
  config = _config("cpu", "none")
  model_config = config_checks.check_config(config)
  state = training.create_train_state(jax.random.key(0), config, model_config,
                                      (IMAGE, IMAGE, 3))
  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(0, 50, (4, IMAGE, IMAGE, 3)).astype(np.float32),
           "position": rng.normal(0, 1, (4, 3)).astype(np.float32),
           "orientation": np.tile(np.float32([1, 0, 0, 0]), (4, 1))}
  return state, batch


def _loss_and_grads(kernels: str, remat: str, state, batch):
  """The train step's loss and gradients, compiled as the run compiles its steps."""
  config = _config(kernels, remat)
  model_config = config_checks.check_config(config)
  assert (model_config.kernels, model_config.remat) == (kernels, remat)
  loss_fn = training.make_loss_fn(config, model_config)
  grad_fn = jax.value_and_grad(
      lambda params: loss_fn(params, state.model_state, batch, jax.random.key(1), 1.0)[0])
  jitted = jax.jit(grad_fn, compiler_options=_step_options(config))
  return jax.device_get(jitted(state.params))


@pytest.fixture(scope="module")
def reference(model_inputs):
  return _loss_and_grads("cpu", "none", *model_inputs)


@pytest.mark.skipif(not ON_CPU, reason="compares the CPU path with the generic one")
@pytest.mark.parametrize("kernels,remat", [("generic", "none"), ("cpu", "blocks"),
                                           ("generic", "steps")])
def test_model_loss_and_gradients_agree(model_inputs, reference, kernels, remat):
  loss, grads = _loss_and_grads(kernels, remat, *model_inputs)
  np.testing.assert_allclose(loss, reference[0], rtol=1e-5)
  _assert_trees_close(reference[1], grads, per_leaf=False)
  assert any(np.any(g != 0) for g in jax.tree.leaves(grads["backbone"]))


def _train_step_memory(remat: str, state, batch):
  config = _config("cpu", remat)
  model_config = config_checks.check_config(config)
  jitted = jax.jit(training.make_train_step(config, model_config), donate_argnums=0,
                   compiler_options=_step_options(config))
  return jitted.lower(state, batch, jax.random.key(1)).compile().memory_analysis()


def test_remat_reduces_the_train_steps_temporaries(model_inputs):
  memory = {remat: _train_step_memory(remat, *model_inputs)
            for remat in ("none", "blocks", "steps")}
  if memory["none"] is None:
    pytest.skip(f"{jax.default_backend()} gives no memory analysis")
  temp = {remat: analysis.temp_size_in_bytes for remat, analysis in memory.items()}
  assert temp["blocks"] < temp["none"], temp
  # The same state in and out, whatever is recomputed.
  assert len({m.argument_size_in_bytes for m in memory.values()}) == 1
