"""The scanned recurrent core: shapes, gradients, scan vs unrolled, one scan."""

import dataclasses

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from lsattn import LsattnError
from lsattn.nn import core

SHAPES = [(8, 8, 6), (4, 4, 5), (4, 4, 7), (2, 2, 9)]  # like 3b, 4c, 4e, 5b
CONFIG = core.CoreConfig(num_steps=3, hidden_size=8, projection_size=6,
                         convlstm_kernel_sizes=(1, 3), attention_kernel_sizes=(1, 3),
                         gate_embedding_size=4)


def _features(shapes, batch=4):
  return [jax.random.normal(jax.random.key(10 + i), (batch,) + s) for i, s in enumerate(shapes)]


def test_common_grid_is_the_median_resolution():
  assert core.grids([(28, 28, 480), (14, 14, 512), (14, 14, 832), (7, 7, 1024)]) == (
      (14, 14), (28, 28))
  assert core.grids([(28, 28, 480), (7, 7, 1024)]) == ((28, 28), (28, 28))


@pytest.mark.parametrize("train", [True, False])
def test_output_shapes_and_masks(train):
  params, state = core.init_core(jax.random.key(0), SHAPES, CONFIG)
  key = jax.random.key(1) if train else None
  outputs, new_state = jax.jit(core.apply_core, static_argnames=("train", "config"))(
      params, state, _features(SHAPES), key=key, temperature=0.5, train=train, config=CONFIG)
  assert outputs.pooled.shape == (4, 3 * 8)
  assert outputs.hidden_states.shape == (3, 4, 4, 4, 8)
  assert outputs.layer_choices.shape == outputs.layer_logits.shape == (3, 4, 4)
  assert outputs.attention_masks.shape == (3, 4, 8, 8)
  np.testing.assert_array_equal(outputs.layer_choices.sum(-1), 1.0)
  changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state, new_state))
  assert any(changed) == train


def _python_loop_reference(params, state, features, *, key, temperature, train, config):
  """`core.apply_core` with a Python loop over the steps instead of `lax.scan`."""
  step_fn, carry, step_inputs = core._prepare(params, state, features, key, temperature,
                                              train=train, config=config)
  outputs = []
  for t in range(config.num_steps):
    carry, out = step_fn(carry, jax.tree.map(lambda x, t=t: x[t], step_inputs))
    outputs.append(out)
  return core._finish(jax.tree.map(lambda *xs: jnp.stack(xs), *outputs))


@pytest.mark.parametrize("scan_unroll", [1, 0])  # one loop body; auto (full unroll on CPU)
def test_scan_equals_python_unrolled_reference(scan_unroll):
  params, state = core.init_core(jax.random.key(0), SHAPES, CONFIG)
  args = (params, state, _features(SHAPES))
  noise = {"key": jax.random.key(1), "temperature": 0.7}
  config = dataclasses.replace(CONFIG, scan_unroll=scan_unroll)
  scanned, scanned_state = core.apply_core(*args, **noise, train=True, config=config)
  unrolled, unrolled_state = _python_loop_reference(*args, **noise, train=True, config=CONFIG)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               (scanned, scanned_state), (unrolled, unrolled_state))


def _count_primitives(jaxpr, name):
  count = sum(equation.primitive.name == name for equation in jaxpr.eqns)
  return count + sum(_count_primitives(sub, name) for sub in jax.extend.core.subjaxprs(jaxpr))


@pytest.mark.parametrize("num_steps", [2, 3, 8])
def test_program_holds_one_scan_whatever_n(num_steps):
  config = dataclasses.replace(CONFIG, num_steps=num_steps)
  params, state = core.init_core(jax.random.key(0), SHAPES, config)
  jaxpr = jax.make_jaxpr(
      lambda p, s, f, k: core.apply_core(p, s, f, key=k, temperature=0.5, train=True,
                                         config=config))(
          params, state, _features(SHAPES), jax.random.key(1)).jaxpr
  assert _count_primitives(jaxpr, "scan") == 1
  # The step body is traced once: the program does not grow with N.
  params, state = core.init_core(jax.random.key(0), SHAPES, CONFIG)
  assert len(jaxpr.eqns) == len(jax.make_jaxpr(
      lambda p, s, f, k: core.apply_core(p, s, f, key=k, temperature=0.5, train=True,
                                         config=CONFIG))(
          params, state, _features(SHAPES), jax.random.key(1)).jaxpr.eqns)


def test_one_step_runs_without_a_loop_and_matches_the_reference():
  config = dataclasses.replace(CONFIG, num_steps=1)
  params, state = core.init_core(jax.random.key(0), SHAPES, config)
  args = (params, state, _features(SHAPES))
  noise = {"key": jax.random.key(1), "temperature": 0.7}
  jaxpr = jax.make_jaxpr(lambda *a: core.apply_core(*a, **noise, train=True,
                                                    config=config))(*args)
  assert _count_primitives(jaxpr.jaxpr, "scan") == 0
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               core.apply_core(*args, **noise, train=True, config=config),
               _python_loop_reference(*args, **noise, train=True, config=config))


def test_gradients_reach_every_parameter_group():
  params, state = core.init_core(jax.random.key(0), SHAPES, CONFIG)
  features = _features(SHAPES, batch=8)
  target = jax.random.normal(jax.random.key(2), (8, 24))

  def loss(params, key):
    outputs, _ = core.apply_core(params, state, features, key=key, train=True, config=CONFIG)
    return jnp.mean((outputs.pooled - target) ** 2), outputs.layer_choices

  # A key under which every layer is chosen at least once, so every branch is used.
  for seed in range(20):
    (_, choices), grads = jax.value_and_grad(loss, has_aux=True)(params, jax.random.key(seed))
    if np.all(np.asarray(choices).sum(axis=(0, 1)) > 0):
      break
  else:
    raise AssertionError("no key chose every layer")
  for path, grad in jax.tree_util.tree_leaves_with_path(grads):
    assert np.all(np.isfinite(grad)), path
    assert np.any(grad != 0), jax.tree_util.keystr(path)


def test_spatial_only_on_a_fixed_layer():
  config = dataclasses.replace(CONFIG, select_layer=False)
  params, state = core.init_core(jax.random.key(0), SHAPES[2:3], config)
  assert "select" not in params
  outputs, _ = core.apply_core(params, state, _features(SHAPES[2:3]), key=jax.random.key(1),
                               temperature=0.5, train=True, config=config)
  np.testing.assert_array_equal(outputs.layer_choices, 1.0)
  np.testing.assert_allclose(outputs.attention_masks.sum(axis=(2, 3)), 1.0, rtol=1e-5)


def test_layer_selection_only_has_no_attention_parameters():
  config = dataclasses.replace(CONFIG, spatial_attention=False)
  params, state = core.init_core(jax.random.key(0), SHAPES, config)
  assert params["attend"] == [] and state["attend"] == []
  outputs, _ = core.apply_core(params, state, _features(SHAPES), key=jax.random.key(1),
                               temperature=0.5, train=True, config=config)
  assert outputs.pooled.shape == (4, 24)


@pytest.mark.parametrize("field, value", [
    ("num_steps", 0), ("hidden_size", -1), ("attention_kernel_sizes", (2,)),
    ("attention_nonlinearity", "tanh")])
def test_bad_config_is_refused(field, value):
  with pytest.raises(LsattnError, match=field):
    dataclasses.replace(CONFIG, **{field: value})


def test_fixed_layer_needs_one_candidate():
  with pytest.raises(LsattnError, match="exactly one"):
    core.init_core(jax.random.key(0), SHAPES, dataclasses.replace(CONFIG, select_layer=False))
