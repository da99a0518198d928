"""XLA compiler options of the train/eval steps (lsattn.compilation)."""

import re

import jax
import numpy as np
import pytest

from configs import test as test_config
from lsattn import LsattnError, compilation, config_checks, training


def _config(ynn_fusions):
  config = test_config.get_config()
  config.xla_cpu_ynn_fusions = ynn_fusions
  return config


def test_fusion_kinds_map_to_xla_enum_names():
  assert compilation.cpu_options("dot, reduce") == {
      compilation.YNN_OPTION: "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
  assert compilation.cpu_options("") == {compilation.YNN_OPTION: ""}
  assert compilation.cpu_options("xla_default") == {}


@pytest.mark.parametrize("value", ["dot,convolution", "DOT", "none"])
def test_bad_fusion_kinds_name_the_key_and_value(value):
  with pytest.raises(LsattnError, match=re.escape(f"config.xla_cpu_ynn_fusions = {value!r}")):
    config_checks.check_config(_config(value))


def test_options_apply_on_cpu_only_and_not_for_xla_default():
  options = compilation.step_compiler_options(_config("dot,reduce"), "cpu")
  assert options == {compilation.YNN_OPTION:
                     "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
  assert compilation.step_compiler_options(_config("dot,reduce"), "gpu") is None
  assert compilation.step_compiler_options(_config("xla_default"), "cpu") is None


def test_options_this_jaxlib_rejects_fall_back_to_defaults_with_a_warning(monkeypatch):
  monkeypatch.setattr(compilation, "YNN_OPTION", "xla_cpu_no_such_option_for_lsattn")
  with pytest.warns(RuntimeWarning, match="xla_cpu_no_such_option_for_lsattn"):
    assert compilation.step_compiler_options(_config("dot"), "cpu") is None


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU compiler options")
def test_options_reach_the_compiler():
  """'' hands YNNPACK nothing; XLA's default hands it the convolution."""
  x = np.ones((2, 16, 16, 32), np.float32)  # big enough for XLA to hand YNNPACK
  w = np.ones((3, 3, 32, 32), np.float32)
  conv = lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  compiled = lambda options: jax.jit(conv, compiler_options=options).lower(
      x, w).compile().as_text()
  assert "__ynn_fusion" in compiled(compilation.step_compiler_options(_config("xla_default")))
  assert "__ynn_fusion" not in compiled(compilation.step_compiler_options(_config("")))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU compiler options")
def test_loss_and_gradients_with_and_without_ynn_convolutions_agree():
  """Same function, other kernels: the (end-to-end) test model's training loss."""
  config = _config("dot,reduce")
  config.freeze_backbone = False
  model_config = config_checks.check_config(config)
  state = training.create_train_state(jax.random.key(0), config, model_config, (32, 32, 3))
  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(0, 50, (4, 32, 32, 3)).astype(np.float32),
           "position": rng.normal(0, 1, (4, 3)).astype(np.float32),
           "orientation": np.tile(np.float32([1, 0, 0, 0]), (4, 1))}
  loss_fn = training.make_loss_fn(config, model_config)
  grad_fn = lambda params: jax.grad(loss_fn, has_aux=True)(
      params, state.model_state, batch, jax.random.key(1), 1.0)[0]
  value_fn = lambda params: loss_fn(params, state.model_state, batch, jax.random.key(1), 1.0)[0]
  results = []
  for options in (None, compilation.step_compiler_options(config)):
    results.append(jax.device_get((
        jax.jit(value_fn, compiler_options=options)(state.params),
        jax.jit(grad_fn, compiler_options=options)(state.params))))
  (loss_a, grads_a), (loss_b, grads_b) = results
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
  scale = max(float(np.max(np.abs(g))) for g in jax.tree.leaves(grads_a))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * scale),
               grads_a, grads_b)
