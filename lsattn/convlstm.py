r"""Convolutional LSTM step, plain and multi-convolutional (supplementary C.1).

The gates of Shi et al. (2015), without peepholes, as in
``flax.linen.ConvLSTMCell`` (gate order i, g, f, o; forget bias +1):

.. math::
   [i, g, f, o] = W_x * x + W_h * h + b, \quad
   c' = \sigma(f + 1) c + \sigma(i) \tanh(g), \quad h' = \sigma(o) \tanh(c').

Multi-convolutional variant (supplementary C.1, "four convolutional kernels
with kernel sizes of 1x1, 3x3, 5x5 & 7x7 ... stacked"): each kernel size k_j
is a branch whose convolutions yield ``hidden_size / m`` channels of every
gate; the branches' gate channels are concatenated (stacked), so a branch with
a large kernel sees wide context while the cell keeps ``hidden_size``
channels. With a single kernel size this is exactly the plain cell.

The initial state (c0, h0) is learned (supplementary C): one vector per
channel, broadcast over the spatial grid so any input size works.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from lsattn import layers
from lsattn.errors import LsattnError

Carry = tuple[jax.Array, jax.Array]


def init_convlstm(key: jax.Array, *, input_channels: int, hidden_size: int,
                  kernel_sizes: Sequence[int] = (1, 3, 5, 7)) -> dict:
  """Parameters of a (multi-)convolutional LSTM cell.

  Returns:
    {'branches': [ {'input': conv, 'hidden': conv} per kernel size ],
     'c0': [hidden_size], 'h0': [hidden_size]}; branch j's convolutions have
    kernel_sizes[j] and 4 * hidden_size / len(kernel_sizes) outputs.
  """
  if hidden_size % len(kernel_sizes):
    raise LsattnError(
        f"hidden_size={hidden_size} must be divisible by the number of Conv-LSTM kernel "
        f"sizes {tuple(kernel_sizes)}")
  branch_size = hidden_size // len(kernel_sizes)
  branches = []
  for kernel_size, branch_key in zip(kernel_sizes, jax.random.split(key, len(kernel_sizes))):
    input_key, hidden_key = jax.random.split(branch_key)
    branches.append({
        "input": layers.init_conv(input_key, kernel_size=kernel_size,
                                  in_channels=input_channels, out_channels=4 * branch_size),
        "hidden": layers.init_conv(hidden_key, kernel_size=kernel_size,
                                   in_channels=hidden_size, out_channels=4 * branch_size,
                                   use_bias=False),
    })
  zeros = jnp.zeros((hidden_size,), jnp.float32)
  return {"branches": branches, "c0": zeros, "h0": zeros}


def initial_carry(params: dict, *, batch_size: int, height: int, width: int,
                  dtype=jnp.float32) -> Carry:
  """The learned initial (c0, h0), each [B, H, W, hidden]."""
  shape = (batch_size, height, width, params["c0"].shape[0])
  return (jnp.broadcast_to(params["c0"].astype(dtype), shape),
          jnp.broadcast_to(params["h0"].astype(dtype), shape))


def convlstm_step(params: dict, carry: Carry, x: jax.Array) -> tuple[Carry, jax.Array]:
  """One Conv-LSTM step.

  Args:
    params: from `init_convlstm`.
    carry: (c, h), each [B, H, W, hidden].
    x: [B, H, W, input_channels].

  Returns:
    ((c', h'), h'), with c', h': [B, H, W, hidden].
  """
  c, h = carry
  gates = []
  for branch in params["branches"]:
    branch_gates = layers.conv2d(branch["input"], x) + layers.conv2d(branch["hidden"], h)
    gates.append(jnp.split(branch_gates, 4, axis=-1))
  i, g, f, o = (jnp.concatenate(parts, axis=-1) for parts in zip(*gates))
  new_c = jax.nn.sigmoid(f + 1) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  new_h = jax.nn.sigmoid(o) * jnp.tanh(new_c)
  return (new_c, new_h), new_h
