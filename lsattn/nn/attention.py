r"""Where and what: spatial attention (eq. 1, fig. 6) and layer selection (fig. 5).

Spatial attention over a feature map f [B, h, w, C] given the Conv-LSTM hidden
state h_t (already on f's grid):

.. math::
   f_{att} = \phi(\mathrm{BN}(h_t * E_h + f)), \quad
   \alpha = \mathrm{softmax}_{h \times w}(f_{att} * C_A), \quad
   O_{att} = \alpha \odot f,

with :math:`\phi` ReLU (main text) or leaky ReLU (supplement, the default) and
:math:`C_A` a multi-convolution (supplementary C.1, figure 6).

**The multi-convolution C_A** (our reading of C.1). The paper: "we converted
each convolutional layer into multi-convolutional layers ... three
convolutional kernels with kernel sizes of 1x1, 3x3 & 5x5 and stacked their
final output together", "similar to an inception module", and credits it
with a clear gain over a plain convolution (its tables 4 and 5). In an
inception module every branch is a convolution *followed by its ReLU*, and
the stacked branch outputs feed the next layer. So here each kernel size k
is a branch of ``branch_channels`` (m) outputs, the attention's own
non-linearity :math:`\phi` is applied to every branch, the 3m stacked
channels are mixed by a 1x1 convolution into one channel of mask logits:

.. math::
   C_A(a) = W_{mix} * [\phi(W_1 * a), \phi(W_3 * a), \phi(W_5 * a)].

Without the inner :math:`\phi` the branches and the mix would collapse
into one 5x5 convolution (C.1's "plain convolution" baseline); with it, C_A is a small two-layer
network whose 1x1, 3x3 and 5x5 features compete. m is ours (the paper
gives no width; 4 by default, benchmarks/results/2026-11-30-cpu.md has its cost). E_h
stays the paper's one 1x1 convolution: its job is to convert the hidden
state's channels to f's (fig. 6: "first converted to the appropriate
channel size"), and a multi-kernel E_h on every candidate layer would cost
as much as the rest of the core.

Layer selection (supplementary A): average-pool h_t, a gate embedding of size
E << C (dense, BN, ReLU), dense logits over the k candidate layers, and a
straight-through Gumbel-softmax choice (eq. 2-3).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from lsattn.errors import LsattnError
from lsattn.nn import primitives
from lsattn.nn.gumbel import gumbel_softmax_st

NONLINEARITIES = ("relu", "leaky_relu")


def _nonlinearity(name: str):
  if name == "relu":
    return jax.nn.relu
  elif name == "leaky_relu":
    return jax.nn.leaky_relu
  else:
    raise LsattnError(f"attention nonlinearity must be one of {NONLINEARITIES}, got {name!r}")


def init_spatial_attention(key: jax.Array, *, hidden_size: int, feature_channels: int,
                           kernel_sizes: Sequence[int] = (1, 3, 5),
                           branch_channels: int = 4) -> tuple[dict, dict]:
  """Parameters and batch-norm state of one layer's spatial attention.

  Returns:
    params {'embed': 1x1 conv hidden -> C (E_h), 'norm': BN [C],
    'mask_branches': [conv k x k, C -> branch_channels per kernel size],
    'mask_mix': 1x1 conv len(kernel_sizes) * branch_channels -> 1},
    state {'norm': running statistics}.
  """
  embed_key, mix_key, *branch_keys = jax.random.split(key, 2 + len(kernel_sizes))
  norm_params, norm_state = primitives.init_batch_norm(feature_channels)
  params = {
      "embed": primitives.init_conv(embed_key, kernel_size=1, in_channels=hidden_size,
                                out_channels=feature_channels),
      "norm": norm_params,
      "mask_branches": [
          primitives.init_conv(k, kernel_size=size, in_channels=feature_channels,
                           out_channels=branch_channels)
          for size, k in zip(kernel_sizes, branch_keys)],
      "mask_mix": primitives.init_conv(mix_key, kernel_size=1,
                                   in_channels=len(kernel_sizes) * branch_channels,
                                   out_channels=1),
  }
  return params, {"norm": norm_state}


def spatial_attention(params: dict, state: dict, hidden: jax.Array, features: jax.Array, *,
                      train: bool, nonlinearity: str = "leaky_relu", kernels: str = "cpu"
                      ) -> tuple[jax.Array, jax.Array, dict]:
  """Soft spatial attention of eq. 1.

  Args:
    params, state: from `init_spatial_attention`.
    hidden: [B, h, w, hidden_size], the Conv-LSTM state on the feature grid.
    features: [B, h, w, C], the feature map f.
    train: batch statistics (and their update) or running statistics.
    nonlinearity: 'relu' or 'leaky_relu'.
    kernels: 'cpu' or 'generic' formulation (`mask_head`, `primitives.conv2d`).

  Returns:
    (output [B, h, w, C] = mask * f, mask [B, h, w] summing to 1, new state).
  """
  mask, new_state = attention_mask(params, state, hidden, features, train=train,
                                   nonlinearity=nonlinearity, kernels=kernels)
  return mask[..., None] * features, mask, new_state


def attention_mask(params: dict, state: dict, hidden: jax.Array, features: jax.Array, *,
                   train: bool, nonlinearity: str = "leaky_relu", kernels: str = "cpu"
                   ) -> tuple[jax.Array, dict]:
  """The mask alpha of eq. 1 alone: [B, h, w], summing to 1 over positions.

  The core uses it directly: a 1x1 projection P of the output is
  P(alpha * f) = alpha * (f W) + b, and f W does not change between steps.
  Arguments as in `spatial_attention`; returns (mask, new state).
  """
  if hidden.shape[:3] != features.shape[:3]:
    raise ValueError(f"hidden {hidden.shape} and features {features.shape} must share B, h, w")
  embedded = primitives.conv2d(params["embed"], hidden, kernels=kernels) + features
  normed, norm_state = primitives.batch_norm(params["norm"], state["norm"], embedded, train=train)
  activated = _nonlinearity(nonlinearity)(normed)
  mask_logits = mask_head(params["mask_branches"], params["mask_mix"], activated,
                          nonlinearity=nonlinearity, kernels=kernels)
  batch, height, width = mask_logits.shape
  # The softmax over up to h*w = 784 positions in float32 (ours): in bfloat16
  # the normaliser's sum keeps 8 bits, so small weights and the mask's total
  # drift; the mask returns to the features' dtype.
  wide = mask_logits.astype(jnp.promote_types(mask_logits.dtype, jnp.float32))
  mask = jax.nn.softmax(wide.reshape(batch, height * width), axis=-1).astype(features.dtype)
  return mask.reshape(batch, height, width), {"norm": norm_state}


def mask_head(branches: Sequence[dict], mix: dict, activated: jax.Array, *,
              nonlinearity: str = "leaky_relu", kernels: str = "cpu") -> jax.Array:
  """C_A: phi(k x k conv, C -> m) per branch, stacked, 1x1 conv -> [B, h, w] logits.

  A convolution with few outputs runs far below the machine's matmul rate
  on CPU, so with ``kernels='cpu'`` every branch is computed from one matmul
  [B*h*w, C] x [C, sum_k k*k*m] followed, per branch, by a sum of k*k
  shifted slices: the same function and parameters as separate
  convolutions (tests/test_attention.py), several times faster.
  ``kernels='generic'`` is those separate convolutions (GPU, TPU).
  """
  phi = _nonlinearity(nonlinearity)
  if kernels == "generic":
    outputs = [phi(primitives.conv2d(branch, activated, kernels=kernels)) for branch in branches]
    return primitives.conv2d(mix, jnp.concatenate(outputs, axis=-1), kernels=kernels)[..., 0]
  if kernels != "cpu":
    raise ValueError(f"Unsupported kernels {kernels!r}: expected 'cpu' or 'generic'")
  dtype = activated.dtype
  channels = activated.shape[-1]
  batch, height, width, _ = activated.shape
  # One matmul for all branches: columns (branch, dy, dx, j).
  kernels = [branch["kernel"].reshape(-1, channels, branch["kernel"].shape[-1])  # [k*k, C, m]
             for branch in branches]
  stacked = jnp.concatenate([jnp.moveaxis(k, 1, 0).reshape(channels, -1) for k in kernels],
                            axis=1)
  taps = activated @ stacked.astype(dtype)  # [B, h, w, sum_k k*k*m]
  outputs, start = [], 0
  for branch, kernel in zip(branches, kernels):
    size = branch["kernel"].shape[0]
    outs = kernel.shape[-1]
    half = size // 2
    part = taps[..., start:start + size * size * outs]
    start += size * size * outs
    part = jnp.pad(part, ((0, 0), (half, half), (half, half), (0, 0)))
    # 'SAME' cross-correlation: out[y, x] = sum_{dy,dx} a[y+dy-half, x+dx-half] . W[dy, dx]
    out = sum(part[:, dy:dy + height, dx:dx + width,
                   (dy * size + dx) * outs:(dy * size + dx + 1) * outs]
              for dy in range(size) for dx in range(size))
    outputs.append(phi(out + branch["bias"].astype(dtype)))
  return primitives.conv2d(mix, jnp.concatenate(outputs, axis=-1))[..., 0]


def init_layer_selection(key: jax.Array, *, hidden_size: int, num_layers: int,
                         embedding_size: int = 16) -> tuple[dict, dict]:
  """Parameters and state of the layer selection network (supplementary fig. 5)."""
  embed_key, logits_key = jax.random.split(key)
  norm_params, norm_state = primitives.init_batch_norm(embedding_size)
  params = {
      "embed": primitives.init_dense(embed_key, in_features=hidden_size,
                                     out_features=embedding_size),
      "norm": norm_params,
      "logits": primitives.init_dense(logits_key, in_features=embedding_size,
                                  out_features=num_layers),
  }
  return params, {"norm": norm_state}


def layer_selection(params: dict, state: dict, hidden: jax.Array, key: jax.Array | None,
                    temperature: jax.typing.ArrayLike, *, train: bool
                    ) -> tuple[jax.Array, jax.Array, dict]:
  """Chooses one of k layers from the hidden state.

  Args:
    params, state: from `init_layer_selection`.
    hidden: [B, H, W, hidden_size].
    key: Gumbel noise key (training); None for the deterministic argmax.
    temperature: tau of eq. 3 (may be traced).
    train: batch statistics or running statistics in the gate embedding.

  Returns:
    (one-hot choice [B, k], layer logits [B, k], new state).
  """
  pooled = jnp.mean(hidden, axis=(1, 2))
  embedded = primitives.dense(params["embed"], pooled)
  normed, norm_state = primitives.batch_norm(params["norm"], state["norm"], embedded, train=train)
  layer_logits = primitives.dense(params["logits"], jax.nn.relu(normed))
  choice = gumbel_softmax_st(layer_logits, key, temperature)
  return choice, layer_logits, {"norm": norm_state}
