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

**Initial state.** Supplementary C: "Similar to [47], we learn the initial
states". [47] (Show, Attend and Tell, section 3.1.2) predicts them from the
image: "The initial memory state and hidden state of the LSTM are predicted
by an average of the annotation vectors fed through two separate MLPs
(f_init,c and f_init,h)"; its code makes each MLP one dense layer with tanh.
``initial_state='image'`` does exactly that with the spatial mean of every
candidate feature map (concatenated: the state that chooses the first layer
should know all of them), c0 = tanh(W_c m + b_c), h0 = tanh(W_h m + b_h),
broadcast over the state's grid. Our choice of the spatial *mean* (rather
than a learned map of the taps brought to the common grid) follows [47]
literally, keeps the parameter count at 2 * sum(C_i) * hidden, and works
for any input size; spatial detail enters from step 1 on through the
attention, which sees f itself. ``initial_state='constant'`` (ours, for
comparison) learns one vector per channel for c0 and h0, the same for
every image: then step 1's layer choice cannot depend on the image.

**Precision** (ours). In a bfloat16 model (``dtype='bfloat16'``) x, h and
the gate convolutions are bfloat16, while the cell state c and the
element-wise update of the gates stay float32: c is the one running sum of
the cell, and with 8 significant bits an increment
:math:`\sigma(i) \tanh(g)` below about 1/256 of c would be rounded away.
The cost is element-wise work on [B, H, W, 4 * hidden]; no convolution
runs in float32.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from lsattn.errors import LsattnError
from lsattn.nn import primitives

Carry = tuple[jax.Array, jax.Array]
INITIAL_STATES = ("image", "constant")


def init_convlstm(key: jax.Array, *, input_channels: int, hidden_size: int,
                  kernel_sizes: Sequence[int] = (1, 3, 5, 7)) -> dict:
  """Parameters of a (multi-)convolutional LSTM cell.

  Returns:
    {'branches': [ {'input': conv, 'hidden': conv} per kernel size ]}; branch
    j's convolutions have kernel_sizes[j] and 4 * hidden_size /
    len(kernel_sizes) outputs.
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
        "input": primitives.init_conv(input_key, kernel_size=kernel_size,
                                  in_channels=input_channels, out_channels=4 * branch_size),
        "hidden": primitives.init_conv(hidden_key, kernel_size=kernel_size,
                                   in_channels=hidden_size, out_channels=4 * branch_size,
                                   use_bias=False),
    })
  return {"branches": branches}


def init_initial_state(key: jax.Array, *, kind: str, hidden_size: int,
                       context_channels: int = 0) -> dict:
  """Parameters of the initial (c0, h0).

  Args:
    key: PRNG key.
    kind: 'image' (from a context vector, [47]) or 'constant'.
    hidden_size: channels of the state.
    context_channels: width of the context vector (for 'image').

  Returns:
    'image': {'c': dense context -> hidden, 'h': dense context -> hidden};
    'constant': {'c0': [hidden], 'h0': [hidden]} (zeros).
  """
  if kind == "constant":
    zeros = jnp.zeros((hidden_size,), jnp.float32)
    return {"c0": zeros, "h0": zeros}
  if kind != "image":
    raise LsattnError(f"initial_state must be one of {INITIAL_STATES}, got {kind!r}")
  if context_channels < 1:
    raise LsattnError(f"initial_state='image' needs context_channels >= 1, got "
                      f"{context_channels}")
  c_key, h_key = jax.random.split(key)
  return {"c": primitives.init_dense(c_key, in_features=context_channels, out_features=hidden_size),
          "h": primitives.init_dense(h_key, in_features=context_channels, out_features=hidden_size)}


def initial_carry(params: dict, *, batch_size: int, height: int, width: int,
                  context: jax.Array | None = None, dtype=jnp.float32) -> Carry:
  """The initial (c0, h0), each [B, H, W, hidden].

  Args:
    params: from `init_initial_state`.
    batch_size, height, width: the state's shape.
    context: [B, context_channels] for the image-conditioned state (the
      spatial means of the feature maps); ignored by the constant one.
    dtype: the compute dtype: h0's; c0 is at least float32 (Precision above).
  """
  cell_dtype = jnp.promote_types(dtype, jnp.float32)
  if "c0" in params:
    vectors = (params["c0"].astype(cell_dtype), params["h0"].astype(dtype))
    shape = (batch_size, height, width, params["c0"].shape[0])
  else:
    if context is None or context.shape[0] != batch_size:
      raise ValueError(f"the image-conditioned initial state needs a context [B={batch_size}, "
                       f"C], got {None if context is None else context.shape}")
    c0, h0 = (jnp.tanh(primitives.dense(params[name], context.astype(dtype)))[:, None, None]
              for name in ("c", "h"))
    vectors = (c0.astype(cell_dtype), h0)
    shape = (batch_size, height, width, h0.shape[-1])
  return tuple(jnp.broadcast_to(v, shape) for v in vectors)


def convlstm_step(params: dict, carry: Carry, x: jax.Array, *, kernels: str = "cpu"
                  ) -> tuple[Carry, jax.Array]:
  """One Conv-LSTM step.

  Args:
    params: from `init_convlstm`.
    carry: (c, h), each [B, H, W, hidden].
    x: [B, H, W, input_channels].
    kernels: 'cpu' or 'generic' (how `primitives.conv2d` computes the 1x1 branch).

  Returns:
    ((c', h'), h'), with c', h': [B, H, W, hidden] in the dtypes of c, h.
  """
  c, h = carry
  gates = []
  for branch in params["branches"]:
    branch_gates = (primitives.conv2d(branch["input"], x, kernels=kernels)
                    + primitives.conv2d(branch["hidden"], h, kernels=kernels))
    gates.append(jnp.split(branch_gates, 4, axis=-1))
  # Gates and cell update in c's dtype (float32 in a bfloat16 model: Precision above).
  i, g, f, o = (jnp.concatenate(parts, axis=-1).astype(c.dtype) for parts in zip(*gates))
  new_c = jax.nn.sigmoid(f + 1) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  new_h = (jax.nn.sigmoid(o) * jnp.tanh(new_c)).astype(h.dtype)
  return (new_c, new_h), new_h
