"""Conv-LSTM step: equals flax's ConvLSTMCell; multi-kernel variant shapes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsattn import LsattnError
from lsattn.nn import convlstm


def test_single_kernel_equals_flax_conv_lstm_cell():
  batch, size, in_channels, hidden = 2, 5, 3, 4
  x = jax.random.normal(jax.random.key(0), (batch, size, size, in_channels))
  carry = (jax.random.normal(jax.random.key(1), (batch, size, size, hidden)),
           jax.random.normal(jax.random.key(2), (batch, size, size, hidden)))
  cell = nn.ConvLSTMCell(features=hidden, kernel_size=(3, 3))
  variables = cell.init(jax.random.key(3), carry, x)
  flax_params = jax.tree.map(  # non-zero biases, so they are compared too
      lambda p: p + 0.1 * jax.random.normal(jax.random.key(4), p.shape), variables["params"])
  (flax_c, flax_h), _ = cell.apply({"params": flax_params}, carry, x)

  params = convlstm.init_convlstm(jax.random.key(5), input_channels=in_channels,
                                  hidden_size=hidden, kernel_sizes=(3,))
  params["branches"][0] = {
      "input": {"kernel": flax_params["ih"]["kernel"],
                "bias": flax_params["ih"]["bias"] + flax_params["hh"]["bias"]},
      "hidden": {"kernel": flax_params["hh"]["kernel"]},
  }
  (c, h), out = jax.jit(convlstm.convlstm_step)(params, carry, x)
  np.testing.assert_allclose(c, flax_c, atol=1e-5)
  np.testing.assert_allclose(h, flax_h, atol=1e-5)
  np.testing.assert_array_equal(out, h)


def test_multi_kernel_stacks_branches_into_hidden_channels():
  params = convlstm.init_convlstm(jax.random.key(0), input_channels=6, hidden_size=8,
                                  kernel_sizes=(1, 3, 5, 7))
  assert [b["input"]["kernel"].shape for b in params["branches"]] == [
      (k, k, 6, 8) for k in (1, 3, 5, 7)]  # 4 gates x 8/4 channels each
  carry = convlstm.initial_carry(
      convlstm.init_initial_state(jax.random.key(2), kind="constant", hidden_size=8),
      batch_size=2, height=7, width=9)
  x = jax.random.normal(jax.random.key(1), (2, 7, 9, 6))
  (c, h), _ = convlstm.convlstm_step(params, carry, x)
  assert c.shape == h.shape == (2, 7, 9, 8)
  assert np.all(np.abs(h) <= 1)
  # Each kernel size reaches its own neighbourhood: the 7x7 branch sees a pixel 3 away.
  grads = jax.grad(lambda x: convlstm.convlstm_step(params, carry, x)[1][0, 3, 4].sum())(x)
  assert np.any(grads[0, 3, 7] != 0) and np.all(grads[0, 3, 8] == 0)


def test_constant_initial_state_is_broadcast():
  params = convlstm.init_initial_state(jax.random.key(0), kind="constant", hidden_size=4)
  params["c0"] = jnp.arange(4.0)
  c, h = convlstm.initial_carry(params, batch_size=3, height=2, width=5)
  assert c.shape == h.shape == (3, 2, 5, 4)
  np.testing.assert_array_equal(c[2, 1, 4], jnp.arange(4.0))


def test_image_initial_state_follows_show_attend_and_tell():
  """c0 = tanh(W_c m + b_c), h0 = tanh(W_h m + b_h) from the context m, broadcast over space."""
  params = convlstm.init_initial_state(jax.random.key(0), kind="image", hidden_size=4,
                                       context_channels=6)
  context = jax.random.normal(jax.random.key(1), (3, 6))
  c, h = convlstm.initial_carry(params, batch_size=3, height=2, width=5, context=context)
  assert c.shape == h.shape == (3, 2, 5, 4)
  for state, name in ((c, "c"), (h, "h")):
    expected = np.tanh(context @ params[name]["kernel"] + params[name]["bias"])
    np.testing.assert_allclose(state[:, 1, 3], expected, rtol=1e-5)
  assert np.max(np.abs(c[0, 0, 0] - c[1, 0, 0])) > 1e-3  # differs between images
  with pytest.raises(ValueError, match="context"):
    convlstm.initial_carry(params, batch_size=3, height=2, width=5)
  with pytest.raises(LsattnError, match="initial_state"):
    convlstm.init_initial_state(jax.random.key(0), kind="zeros", hidden_size=4)


def test_hidden_size_must_split_over_kernels():
  with pytest.raises(LsattnError, match="divisible"):
    convlstm.init_convlstm(jax.random.key(0), input_channels=2, hidden_size=6,
                           kernel_sizes=(1, 3, 5, 7))
