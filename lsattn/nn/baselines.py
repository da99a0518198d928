r"""The paper's baselines on GoogLeNet Conv-5B: PoseNet, LSTM-PoseNet, GoogLeNet.

Each baseline turns the backbone's deepest tap ``[B, h, w, C]`` (Conv-5B,
C = 1024, for the paper's GoogLeNet; any member's deepest,
`lsattn.backbones.Backbone.deepest`, which `lsattn.model` passes) into a
feature vector ``[B, F]``; the task head (dense -> 7 pose outputs, or dense
-> class logits) lives in `lsattn.model`. No recurrence over layers, no
attention.

* ``'posenet'`` (Kendall et al. [21], Table 1): Conv-5B average-pooled, a
  fully connected layer of 2048 units and a ReLU (F = 2048).

* ``'lstm_posenet'`` (Walch et al. [42], ICCV 2017, arXiv 1611.07890;
  Table 1's LSTM-PoseNet column): PoseNet's pooled Conv-5B and 2048-wide
  fully connected layer (with its ReLU), the 2048 vector reshaped row-major to
  a 32 x 64 matrix ``Y``, and four LSTMs sweeping ``Y``:

  - ``'down'``: the 32 rows top to bottom (each step's input a row, 64 values);
  - ``'up'``: the rows bottom to top;
  - ``'right'``: the 64 columns left to right (each step's input a column,
    32 values);
  - ``'left'``: the columns right to left.

  Each LSTM's final hidden state (128 units) is kept and the four are
  concatenated in the order up, down, left, right (F = 4 * 128 = 512):

  .. math::
     z = [h^{up}_{32}, h^{down}_{32}, h^{left}_{64}, h^{right}_{64}].

  From [42]: Conv-5B pooled, FC 2048, the 32 x 64 reshape, four LSTMs in the
  four directions, their outputs concatenated before the pose regressor, and
  an LSTM output ``z`` of 128 values in [42]'s architecture figure (Fig. 2,
  as read in issue #22 of hazirbas/poselstm-pytorch, the PyTorch port by
  [42]'s co-author Hazirbas, and in issue #65 of DanielCoelho112/synfeal; we
  could not retrieve [42]'s own sentence on the size, so 128 is that
  figure's value as reported there, not a quote).
  Our choices, not in [42] as we read it: 128 as *each* LSTM's hidden size
  (the figure leaves open whether ``z`` is one LSTM's output or the
  concatenation; the co-author's PyTorch port defaults to 256 per direction);
  the ReLU after the FC layer (PoseNet's FC layer has one, the port keeps
  it); a standard LSTM cell (gates i, f, g, o, no peepholes) with +1 added to
  the forget gate's pre-activation (as `lsattn.nn.convlstm` and
  ``flax.linen.LSTMCell``); zero initial state; LeCun-normal input and
  orthogonal recurrent kernels. Left out: the dropout before the regressor
  (0.5 in PoseNet and the port) and PoseNet's two auxiliary regression
  branches (our train step has neither dropout nor auxiliary losses), so
  train and eval compute the same function.

* ``'googlenet'`` (Szegedy et al. [38], Table 2's 73.7 % on MIT-67):
  GoogLeNet's own classifier input, the average-pooled Conv-5B
  (F = C = 1024); GoogLeNet's dropout (0.4) before its classifier is left out
  for the same reason.

Params (pytrees of float32 arrays): ``'posenet'`` {'kernel' [C, 2048],
'bias' [2048]} (the dense layer itself, so the tree and, for the same key,
the values are those `lsattn.model` used before this module);
``'lstm_posenet'`` {'fc': dense [C, 2048], 'lstm': {'up', 'down' (input 64),
'left', 'right' (input 32)}}; ``'googlenet'`` {}.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lsattn.errors import LsattnError, check_choice
from lsattn.nn import primitives

BASELINES = ("posenet", "lstm_posenet", "googlenet")
POSENET_WIDTH = 2048
MATRIX_ROWS, MATRIX_COLUMNS = 32, 64  # [42]: 2048 = 32 x 64
LSTM_HIDDEN_SIZE = 128
DIRECTIONS = ("up", "down", "left", "right")

Carry = tuple[jax.Array, jax.Array]


def _check_variant(variant: str) -> None:
  check_choice("model_variant (of a baseline)", variant, BASELINES)


def feature_size(variant: str, in_channels: int) -> int:
  """F, the width of `baseline_features` for a tap of `in_channels` channels."""
  _check_variant(variant)
  if variant == "posenet":
    return POSENET_WIDTH
  if variant == "lstm_posenet":
    return len(DIRECTIONS) * LSTM_HIDDEN_SIZE
  return in_channels


def init_lstm(key: jax.Array, *, input_size: int, hidden_size: int) -> dict:
  """One LSTM's parameters.

  Returns:
    {'input': {'kernel' [input_size, 4 * hidden], 'bias' [4 * hidden]},
     'hidden': {'kernel' [hidden, 4 * hidden]}}; gate blocks i, f, g, o.
  """
  input_key, hidden_key = jax.random.split(key)
  recurrent = jax.nn.initializers.orthogonal()(hidden_key, (hidden_size, 4 * hidden_size),
                                               jnp.float32)
  return {"input": primitives.init_dense(input_key, in_features=input_size,
                                     out_features=4 * hidden_size),
          "hidden": {"kernel": recurrent}}


def lstm_step(params: dict, carry: Carry, projected_input: jax.Array) -> tuple[Carry, jax.Array]:
  r"""One LSTM step on an input already multiplied by the input kernel.

  .. math::
     [i, f, g, o] = W_x x + b + W_h h, \quad
     c' = \sigma(f + 1) c + \sigma(i) \tanh(g), \quad h' = \sigma(o) \tanh(c').

  Args:
    params: from `init_lstm`.
    carry: (c, h), each [B, hidden]; c at least float32, h in the compute
      dtype (as the Conv-LSTM's, `lsattn.nn.convlstm`).
    projected_input: W_x x + b, [B, 4 * hidden], in h's dtype.

  Returns:
    ((c', h'), h') in the dtypes of (c, h).
  """
  c, h = carry
  gates = projected_input + h @ params["hidden"]["kernel"].astype(h.dtype)
  i, f, g, o = jnp.split(gates.astype(c.dtype), 4, axis=-1)
  new_c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  new_h = (jax.nn.sigmoid(o) * jnp.tanh(new_c)).astype(h.dtype)
  return (new_c, new_h), new_h


def lstm_final_state(params: dict, sequence: jax.Array) -> jax.Array:
  """Runs an LSTM from a zero state over sequence [T, B, D]; returns h_T [B, hidden]."""
  hidden_size = params["hidden"]["kernel"].shape[0]
  shape = (sequence.shape[1], hidden_size)
  carry = (jnp.zeros(shape, jnp.promote_types(sequence.dtype, jnp.float32)),
           jnp.zeros(shape, sequence.dtype))
  # The input projection of every step is one matmul outside the loop.
  projected = primitives.dense(params["input"], sequence)
  (_, final_h), _ = jax.lax.scan(lambda carry, x: lstm_step(params, carry, x),
                                 carry, projected)
  return final_h


def _sweeps(params: dict, matrix: jax.Array) -> jax.Array:
  """The four directional LSTMs of [42] over matrix [B, R, K].

  Args:
    params: {'up', 'down' (LSTMs of input size K), 'left', 'right' (input R)}.
    matrix: [B, R, K] (R = 32 rows, K = 64 columns in [42]).

  Returns:
    [B, 4 * hidden]: final hidden states of up, down, left, right, in that order.
  """
  rows = jnp.swapaxes(matrix, 0, 1)  # [R, B, K], time-major for scan
  columns = jnp.transpose(matrix, (2, 0, 1))  # [K, B, R]
  return jnp.concatenate([
      lstm_final_state(params["up"], rows[::-1]),
      lstm_final_state(params["down"], rows),
      lstm_final_state(params["left"], columns[::-1]),
      lstm_final_state(params["right"], columns),
  ], axis=-1)


def init_baseline(key: jax.Array, variant: str, in_channels: int) -> dict:
  """Parameters of a baseline's feature part for a tap of `in_channels` channels.

  Returns:
    See the module docstring ('googlenet' has none: {}).
  """
  _check_variant(variant)
  if variant == "googlenet":
    return {}
  if variant == "posenet":
    return primitives.init_dense(key, in_features=in_channels, out_features=POSENET_WIDTH)
  fc_key, *lstm_keys = jax.random.split(key, 1 + len(DIRECTIONS))
  input_sizes = {"up": MATRIX_COLUMNS, "down": MATRIX_COLUMNS,
                 "left": MATRIX_ROWS, "right": MATRIX_ROWS}
  return {
      "fc": primitives.init_dense(fc_key, in_features=in_channels, out_features=POSENET_WIDTH),
      "lstm": {direction: init_lstm(lstm_key, input_size=input_sizes[direction],
                                    hidden_size=LSTM_HIDDEN_SIZE)
               for direction, lstm_key in zip(DIRECTIONS, lstm_keys)},
  }


def baseline_features(params: dict, variant: str, tap: jax.Array) -> jax.Array:
  """A baseline's features from the backbone's deepest tap (Conv-5B).

  Args:
    params: from `init_baseline(key, variant, C)`.
    variant: one of `BASELINES`.
    tap: [B, h, w, C].

  Returns:
    [B, F] in the tap's dtype (the compute dtype), F = `feature_size(variant, C)`.
  """
  _check_variant(variant)
  if tap.ndim != 4:
    raise ValueError(f"tap must be [B, h, w, C], got shape {tuple(tap.shape)}")
  pooled = jnp.mean(tap, axis=(1, 2))  # jnp.mean sums bfloat16 in float32
  if variant == "googlenet":
    return pooled
  if variant == "posenet":
    return jax.nn.relu(primitives.dense(params, pooled))
  hidden = jax.nn.relu(primitives.dense(params["fc"], pooled))
  matrix = hidden.reshape(hidden.shape[0], MATRIX_ROWS, MATRIX_COLUMNS)
  return _sweeps(params["lstm"], matrix)
