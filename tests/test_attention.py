"""Spatial attention (eq. 1) and layer selection (supplementary fig. 5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsattn import LsattnError
from lsattn.nn import attention, primitives as layers


def _attention_inputs(batch=3, height=5, width=4, hidden=6, channels=7):
  params, state = attention.init_spatial_attention(
      jax.random.key(0), hidden_size=hidden, feature_channels=channels)
  h = jax.random.normal(jax.random.key(1), (batch, height, width, hidden))
  f = jax.random.normal(jax.random.key(2), (batch, height, width, channels))
  return params, state, h, f


@pytest.mark.parametrize("nonlinearity", ["relu", "leaky_relu"])
def test_mask_is_a_distribution_over_positions(nonlinearity):
  params, state, h, f = _attention_inputs()
  output, mask, _ = jax.jit(attention.spatial_attention, static_argnames=("train", "nonlinearity"))(
      params, state, h, f, train=True, nonlinearity=nonlinearity)
  assert output.shape == f.shape and mask.shape == (3, 5, 4)
  assert np.all(mask >= 0)
  np.testing.assert_allclose(mask.sum(axis=(1, 2)), 1.0, rtol=1e-5)
  np.testing.assert_allclose(output, mask[..., None] * f, rtol=1e-6)


def test_mask_depends_on_hidden_state():
  params, state, h, f = _attention_inputs()
  _, mask_a, _ = attention.spatial_attention(params, state, h, f, train=False)
  _, mask_b, _ = attention.spatial_attention(params, state, -h, f, train=False)
  assert np.max(np.abs(mask_a - mask_b)) > 1e-4


def test_batch_norm_train_updates_state_and_eval_uses_it():
  params, state, h, f = _attention_inputs()
  _, mask_train, new_state = attention.spatial_attention(params, state, h, f, train=True)
  _, mask_eval, eval_state = attention.spatial_attention(params, state, h, f, train=False)
  assert not np.allclose(new_state["norm"]["mean"], state["norm"]["mean"])
  jax.tree.map(np.testing.assert_array_equal, eval_state, state)
  assert not np.allclose(mask_train, mask_eval)
  # Eval does not depend on the rest of the batch; train does.
  _, mask_single, _ = attention.spatial_attention(params, state, h[:1], f[:1], train=False)
  np.testing.assert_allclose(mask_single[0], mask_eval[0], rtol=1e-5)


def test_unknown_nonlinearity_is_refused():
  params, state, h, f = _attention_inputs()
  with pytest.raises(LsattnError, match="tanh"):
    attention.spatial_attention(params, state, h, f, train=True, nonlinearity="tanh")


def test_layer_selection_gives_one_hot_and_its_gradient_reaches_every_parameter():
  params, state = attention.init_layer_selection(jax.random.key(0), hidden_size=6,
                                                 num_layers=4, embedding_size=3)
  h = jax.random.normal(jax.random.key(1), (5, 3, 3, 6))
  choice, logits, new_state = attention.layer_selection(
      params, state, h, jax.random.key(2), 0.5, train=True)
  assert choice.shape == logits.shape == (5, 4)
  np.testing.assert_array_equal(choice.sum(-1), 1.0)

  def loss(params):
    choice, _, _ = attention.layer_selection(params, state, h, jax.random.key(2), 0.5, train=True)
    return jnp.sum(choice * jnp.arange(4.0))

  grads = jax.grad(loss)(params)
  for path, grad in jax.tree_util.tree_leaves_with_path(grads):
    assert np.all(np.isfinite(grad)) and np.any(grad != 0), path


@pytest.mark.parametrize("kernel_sizes,grid,branch_channels", [
    ((1, 3, 5), (6, 5), 4), ((3,), (4, 4), 1), ((1, 7), (3, 9), 2)])
def test_mask_head_equals_branch_convolutions_then_mix(kernel_sizes, grid, branch_channels):
  """The matmul-and-shift mask head computes C_A exactly as separate k x k convs, phi, 1x1 mix."""
  channels = 12
  params, _ = attention.init_spatial_attention(jax.random.key(0), hidden_size=4,
                                               feature_channels=channels,
                                               kernel_sizes=kernel_sizes,
                                               branch_channels=branch_channels)
  # Non-zero biases so that their place (before phi) is checked too.
  for i, branch in enumerate(params["mask_branches"]):
    branch["bias"] = jnp.full((branch_channels,), 0.3 * (i + 1))
  params["mask_mix"]["bias"] = jnp.full((1,), -0.7)
  activated = jax.random.normal(jax.random.key(1), (2, *grid, channels))

  def reference(params, activated):
    stacked = jnp.concatenate([jax.nn.leaky_relu(layers.conv2d(b, activated))
                               for b in params["mask_branches"]], axis=-1)
    return layers.conv2d(params["mask_mix"], stacked)[..., 0]

  def fast(params, activated):
    return attention.mask_head(params["mask_branches"], params["mask_mix"], activated)

  np.testing.assert_allclose(fast(params, activated), reference(params, activated),
                             rtol=1e-5, atol=1e-5)
  loss = lambda fn: lambda p, a: jnp.sum(jnp.sin(fn(p, a)))
  fast_grads = jax.grad(loss(fast), argnums=(0, 1))(params, activated)
  reference_grads = jax.grad(loss(reference), argnums=(0, 1))(params, activated)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               fast_grads, reference_grads)


def test_multi_convolution_is_not_one_linear_convolution():
  """With phi between branches and mix, C_A is not linear (it was one 5x5 conv before)."""
  params, _ = attention.init_spatial_attention(jax.random.key(0), hidden_size=4,
                                               feature_channels=6, branch_channels=4)
  head = lambda a: attention.mask_head(params["mask_branches"], params["mask_mix"], a,
                                       nonlinearity="relu")
  a = jax.random.normal(jax.random.key(1), (1, 5, 5, 6))
  b = jax.random.normal(jax.random.key(2), (1, 5, 5, 6))
  # All biases are zero at init, so a linear head would be additive.
  assert np.max(np.abs(head(a) + head(b) - head(a + b))) > 1e-2
