"""XLA compiler options of the train/eval steps (lsattn.runs.compilation)."""

import os
import pathlib
import re
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from configs import test as test_config
from lsattn import LsattnError, config_checks, training
from lsattn.runs import compilation

ROOT = pathlib.Path(__file__).resolve().parent.parent

def _step_options(config, platform=None):
  """The steps' compiler options for a config's kernels and YNNPACK fusions."""
  return compilation.step_compiler_options(config.kernels, config.xla_cpu_ynn_fusions, platform)



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
  options = _step_options(_config("dot,reduce"), "cpu")
  assert options == {compilation.YNN_OPTION:
                     "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
  assert _step_options(_config("dot,reduce"), "gpu") is None
  assert _step_options(_config("xla_default"), "cpu") is None


def test_options_this_jaxlib_rejects_fall_back_to_defaults_with_a_warning(monkeypatch):
  monkeypatch.setattr(compilation, "YNN_OPTION", "xla_cpu_no_such_option_for_lsattn")
  with pytest.warns(RuntimeWarning, match="xla_cpu_no_such_option_for_lsattn"):
    assert _step_options(_config("dot"), "cpu") is None


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU compiler options")
def test_options_reach_the_compiler():
  """'' hands YNNPACK nothing; XLA's default hands it the convolution."""
  x = np.ones((2, 16, 16, 32), np.float32)  # big enough for XLA to hand YNNPACK
  w = np.ones((3, 3, 32, 32), np.float32)
  conv = lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  compiled = lambda options: jax.jit(conv, compiler_options=options).lower(
      x, w).compile().as_text()
  assert "__ynn_fusion" in compiled(_step_options(_config("xla_default")))
  assert "__ynn_fusion" not in compiled(_step_options(_config("")))


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
  for options in (None, _step_options(config)):
    results.append(jax.device_get((
        jax.jit(value_fn, compiler_options=options)(state.params),
        jax.jit(grad_fn, compiler_options=options)(state.params))))
  (loss_a, grads_a), (loss_b, grads_b) = results
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
  scale = max(float(np.max(np.abs(g))) for g in jax.tree.leaves(grads_a))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * scale),
               grads_a, grads_b)


def test_persistent_compilation_cache_is_used_and_named_on_error(tmp_path, monkeypatch):
  """config.compilation_cache_dir turns JAX's persistent cache on (files appear there);
  a folder that cannot be made is a one-line error naming the key; '' turns it off."""
  folder = tmp_path / "cache"
  script = (
      "import jax, jax.numpy as jnp, ml_collections\n"
      "from lsattn.runs import compilation\n"
      f"config = ml_collections.ConfigDict({{'compilation_cache_dir': {str(folder)!r}}})\n"
      "print(compilation.use_compilation_cache(config.compilation_cache_dir))\n"
      "jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()\n")
  env = {key: value for key, value in os.environ.items() if key != compilation.CACHE_ENV}
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # cache even a tiny program
  result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == str(folder)
  assert any(folder.iterdir())  # the compiled program was written

  monkeypatch.delenv(compilation.CACHE_ENV, raising=False)
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  bad = ml_collections.ConfigDict({"compilation_cache_dir": str(blocker / "cache")})
  with pytest.raises(LsattnError, match="config.compilation_cache_dir = .*cannot create"):
    compilation.use_compilation_cache(bad.compilation_cache_dir)
  assert compilation.use_compilation_cache(
      ml_collections.ConfigDict({"compilation_cache_dir": ""}).compilation_cache_dir) is None
