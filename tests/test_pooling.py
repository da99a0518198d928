"""Separable max pooling: same values and gradients as flax's select-and-scatter pooling."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsattn.backbones.googlenet import network as googlenet
from lsattn.nn import pooling


def _reference(x, window, stride, pads):
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding=pads)


@pytest.mark.parametrize("size,window,stride,padding", [
    ((9, 9), 3, 2, 0),    # GoogLeNet's strided pools, ceil mode
    ((14, 11), 3, 2, 0),
    ((7, 7), 3, 1, 1),    # the inception blocks' 3x3 pool
    ((8, 6), 2, 2, 0),    # torchvision's pool4
])
def test_values_and_gradients_match_select_and_scatter(size, window, stride, padding):
  x = jax.random.normal(jax.random.key(0), (2, *size, 3))
  pads = [googlenet._ceil_padding(x.shape[a], window, stride, padding) for a in (1, 2)]
  probe = jax.random.normal(jax.random.key(1), _reference(x, window, stride, pads).shape)
  ours = lambda x: pooling.max_pool(x, window, stride, pads)
  theirs = lambda x: _reference(x, window, stride, pads)
  np.testing.assert_array_equal(ours(x), theirs(x))
  grad = lambda f: jax.grad(lambda x: jnp.sum(f(x) * probe))(x)
  np.testing.assert_allclose(grad(ours), grad(theirs), rtol=1e-6, atol=1e-6)


def test_ties_send_the_gradient_to_the_first_maximum_in_row_major_order():
  # ReLU outputs are full of tied zeros; a constant block is the extreme case.
  x = jnp.zeros((1, 5, 5, 1)).at[0, 3, 1, 0].set(2.0).at[0, 4, 4, 0].set(2.0)
  pads = [googlenet._ceil_padding(5, 3, 2, 0)] * 2
  ours = jax.grad(lambda x: jnp.sum(pooling.max_pool(x, 3, 2, pads)))(x)
  theirs = jax.grad(lambda x: jnp.sum(_reference(x, 3, 2, pads)))(x)
  np.testing.assert_array_equal(ours, theirs)
  assert float(jnp.sum(ours)) == 4.0  # one unit of gradient per output window


def test_pooling_works_in_bfloat16_and_under_jit():
  x = jax.random.normal(jax.random.key(2), (1, 6, 6, 2)).astype(jnp.bfloat16)
  pads = [googlenet._ceil_padding(6, 3, 2, 0)] * 2
  ours = jax.jit(lambda x: pooling.max_pool(x, 3, 2, pads))(x)
  assert ours.dtype == jnp.bfloat16
  np.testing.assert_array_equal(ours, _reference(x, 3, 2, pads))
