r"""The recurrent layer-spatial attention core (paper section 3, figure 2).

One step t, given the Conv-LSTM state (c, h) and k candidate feature maps
f_1..f_k of different shapes (GoogLeNet taps, e.g. 28x28x480, 14x14x512,
14x14x832, 7x7x1024 at 224x224 input):

1. **what**: layer selection on h gives a straight-through one-hot z [B, k];
2. **where**: for every candidate i, h is resized to f_i's grid, spatial
   attention (eq. 1) gives O_i = alpha_i * f_i at f_i's native resolution;
3. O_i is projected by its own 1x1 convolution to a common width D and
   resized to the common grid; the Conv-LSTM input is x = sum_i z_i P_i(O_i);
4. (c, h) <- ConvLSTM((c, h), x).

Before step 1, (c0, h0) is predicted from the spatial means of the
candidate maps (``initial_state='image'``, [47] via supplementary C; see
`lsattn.nn.convlstm`), so the first layer choice already depends on the image.

**Per-step batch norm.** The batch norms of layer selection and spatial
attention (paper 3.4) keep one set of running statistics *per recurrent
step*: the state's leaves are stacked [N, ...], ``lax.scan`` hands step t
its slice as a per-step input and returns the updated slices as per-step
outputs, and evaluation normalises step t with step t's statistics. The
distributions differ between steps (step 1 sees h0 of the image's mean
features, later steps a state that has attended), and one shared set would
mix them. The scale and offset are shared by all steps, like every other
weight of the recurrence (our choice, as in Cooijmans et al., "Recurrent
Batch Normalization", 2017, who keep separate statistics per time step).

**Common shapes.** The Conv-LSTM state lives on one grid, the median spatial
size of the candidates (14x14 for 3b/4c/4e/5b at 224 input), so the finest
tap is averaged 2x2 and the coarsest upsampled 2x, each by bilinear
resizing. Channel counts differ per layer, so each layer has its own
embedding E_h^i (hidden -> C_i, as the paper notes in 3.4) and projection
P_i (C_i -> D). Every branch is computed and enters the one-hot weighted
sum, so the straight-through gradient reaches the selection logits.

The N steps run under ``jax.lax.scan``; afterwards the N hidden states are
concatenated on channels and average-pooled over space (section 3.3) into
[B, N * hidden_size] for the task head (in `lsattn.model`).

Variants for the ablation (table 3): ``select_layer=False`` with one
candidate is spatial attention on a fixed layer; ``spatial_attention=False``
is layer selection only: O_i = f_i (no mask; the reported mask is uniform).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from lsattn.errors import LsattnError
from lsattn.nn import attention, compute_options, convlstm, primitives


@dataclasses.dataclass(frozen=True)
class CoreConfig:
  """Hyper-parameters of the recurrent core (hashable: a static jit argument).

  Attributes:
    num_steps: N, recurrent steps (paper: 3 for pose, 2 for classification).
    hidden_size: Conv-LSTM channels (paper: 96).
    projection_size: D, the common width of the Conv-LSTM input.
    convlstm_kernel_sizes: kernels of the multi-convolutional Conv-LSTM.
    attention_kernel_sizes: kernels of the multi-convolutional mask head.
    gate_embedding_size: E of the layer selection gate embedding (E << C).
    attention_nonlinearity: 'leaky_relu' (supplement) or 'relu' (eq. 1).
    attention_branch_channels: outputs m of each branch of the mask head C_A
      (ours; see `lsattn.nn.attention`).
    initial_state: 'image' ((c0, h0) from the taps' means, [47]) or
      'constant' (learned vectors, the same for every image).
    select_layer: layer selection ("what"); False needs exactly one layer.
    spatial_attention: spatial attention ("where").
    scan_unroll: steps per iteration of the compiled scan loop (`unroll` of
      `jax.lax.scan`; same results). 1 keeps one loop body, so compile time
      does not grow with N; 0 (auto) unrolls fully on CPU, where XLA runs the
      weight-gradient convolutions of a loop body much slower than outside
      a loop (ARCHITECTURE.md, "Performance notes"), and uses 1 elsewhere.
    kernels: 'auto' | 'cpu' | 'generic', the formulation of the mask head
      and the 1x1 convolutions (`lsattn.nn.compute_options.resolve_kernels`; same
      results).
    remat_steps: recompute each recurrent step's activations in the backward
      pass instead of storing them (`jax.checkpoint`, policy
      `lsattn.nn.compute_options.REMAT_POLICY`; same results, less memory).
  """
  num_steps: int = 3
  hidden_size: int = 96
  projection_size: int = 96
  convlstm_kernel_sizes: tuple[int, ...] = (1, 3, 5, 7)
  attention_kernel_sizes: tuple[int, ...] = (1, 3, 5)
  gate_embedding_size: int = 16
  attention_nonlinearity: str = "leaky_relu"
  attention_branch_channels: int = 4
  initial_state: str = "image"
  select_layer: bool = True
  spatial_attention: bool = True
  scan_unroll: int = 0
  kernels: str = "auto"
  remat_steps: bool = False

  def __post_init__(self):
    for name in ("num_steps", "hidden_size", "projection_size", "gate_embedding_size",
                 "attention_branch_channels"):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise LsattnError(f"core: {name} must be a positive integer, got {value!r}")
    for name in ("convlstm_kernel_sizes", "attention_kernel_sizes"):
      sizes = getattr(self, name)
      if not sizes or any(not isinstance(s, int) or s < 1 or s % 2 == 0 for s in sizes):
        raise LsattnError(f"core: {name} must be odd positive integers, got {sizes!r}")
    if not isinstance(self.scan_unroll, int) or self.scan_unroll < 0:
      raise LsattnError(f"core: scan_unroll must be an integer >= 0, got {self.scan_unroll!r}")
    if self.kernels not in compute_options.KERNELS:
      raise LsattnError(f"core: kernels must be one of {compute_options.KERNELS}, "
                        f"got {self.kernels!r}")
    if self.initial_state not in convlstm.INITIAL_STATES:
      raise LsattnError(f"core: initial_state must be one of {convlstm.INITIAL_STATES}, "
                        f"got {self.initial_state!r}")
    if self.attention_nonlinearity not in attention.NONLINEARITIES:
      raise LsattnError(f"core: attention_nonlinearity must be one of "
                        f"{attention.NONLINEARITIES}, got {self.attention_nonlinearity!r}")


class CoreOutputs(NamedTuple):
  """What the core returns.

  Attributes:
    pooled: [B, N * hidden_size], the concatenated, average-pooled hidden states.
    hidden_states: [N, B, Hc, Wc, hidden_size].
    layer_choices: [N, B, k] one-hot layer chosen at each step.
    layer_logits: [N, B, k] selection logits (zeros when not selecting).
    attention_masks: [N, B, Hm, Wm] the chosen layer's mask, resized to the
      finest candidate grid (for figures; each per-layer mask sums to 1).
  """
  pooled: jax.Array
  hidden_states: jax.Array
  layer_choices: jax.Array
  layer_logits: jax.Array
  attention_masks: jax.Array


def grids(feature_shapes: Sequence[tuple[int, int, int]]):
  """(common grid, finest grid) for candidate shapes [(H, W, C), ...]."""
  by_size = sorted(feature_shapes, key=lambda shape: shape[0] * shape[1])
  common = by_size[len(by_size) // 2][:2]
  finest = by_size[-1][:2]
  return tuple(common), tuple(finest)


def _check_shapes(feature_shapes, config: CoreConfig):
  if not feature_shapes:
    raise LsattnError("core: at least one candidate layer is needed")
  if not config.select_layer and len(feature_shapes) != 1:
    raise LsattnError(f"core: without layer selection exactly one candidate layer is "
                      f"needed, got {len(feature_shapes)}")


def init_core(key: jax.Array, feature_shapes: Sequence[tuple[int, int, int]],
              config: CoreConfig) -> tuple[dict, dict]:
  """Parameters and batch-norm state of the core.

  Args:
    key: PRNG key.
    feature_shapes: (H_i, W_i, C_i) of each candidate layer, in order.
    config: the core's hyper-parameters.

  Returns:
    (params, state): params {'select' (if selecting), 'attend' [per layer],
    'project' [per layer], 'lstm', 'initial'}; state {'select', 'attend'
    [per layer]}, every leaf stacked [N, ...] (one set of batch-norm
    statistics per step).
  """
  feature_shapes = [tuple(int(d) for d in s) for s in feature_shapes]
  _check_shapes(feature_shapes, config)
  select_key, lstm_key, initial_key, *layer_keys = jax.random.split(
      key, 3 + len(feature_shapes))
  params, state = {"attend": [], "project": []}, {"attend": []}
  if config.select_layer:
    params["select"], state["select"] = attention.init_layer_selection(
        select_key, hidden_size=config.hidden_size, num_layers=len(feature_shapes),
        embedding_size=config.gate_embedding_size)
  for (_, _, channels), layer_key in zip(feature_shapes, layer_keys):
    attend_key, project_key = jax.random.split(layer_key)
    if config.spatial_attention:
      attend_params, attend_state = attention.init_spatial_attention(
          attend_key, hidden_size=config.hidden_size, feature_channels=channels,
          kernel_sizes=config.attention_kernel_sizes,
          branch_channels=config.attention_branch_channels)
      params["attend"].append(attend_params)
      state["attend"].append(attend_state)
    params["project"].append(primitives.init_conv(
        project_key, kernel_size=1, in_channels=channels, out_channels=config.projection_size))
  params["lstm"] = convlstm.init_convlstm(
      lstm_key, input_channels=config.projection_size, hidden_size=config.hidden_size,
      kernel_sizes=config.convlstm_kernel_sizes)
  params["initial"] = convlstm.init_initial_state(
      initial_key, kind=config.initial_state, hidden_size=config.hidden_size,
      context_channels=sum(channels for _, _, channels in feature_shapes))
  # One copy of the statistics per step (distinct buffers: the train step donates them).
  state = jax.tree.map(lambda x: jnp.stack([x] * config.num_steps), state)
  return params, state


def apply_core(params: dict, state: dict, features: Sequence[jax.Array], *,
               key: jax.Array | None = None, temperature: jax.typing.ArrayLike = 1.0,
               train: bool, config: CoreConfig) -> tuple[CoreOutputs, dict]:
  """Runs N layer-spatial attention steps under `jax.lax.scan`.

  Args:
    params, state: from `init_core` for the same feature shapes.
    features: k arrays [B, H_i, W_i, C_i].
    key: PRNG key for the Gumbel noise (training); None for evaluation.
    temperature: Gumbel-softmax temperature (may be traced). Without a key
      it changes nothing (the forward pass takes the argmax of the logits).
    train: batch-norm mode.
    config: the core's hyper-parameters.

  Returns:
    (CoreOutputs, new state).
  """
  step_fn, carry, step_inputs = _prepare(params, state, features, key, temperature,
                                         train=train, config=config)
  if config.num_steps == 1:
    # One step needs no loop (XLA keeps a while loop for a length-1 scan).
    carry, per_step = step_fn(carry, jax.tree.map(lambda x: x[0], step_inputs))
    return _finish(jax.tree.map(lambda x: x[None], per_step))
  _, per_step = jax.lax.scan(step_fn, carry, step_inputs, length=config.num_steps,
                             unroll=_unroll(config))
  return _finish(per_step)


def _unroll(config: CoreConfig) -> int:
  if config.scan_unroll:
    return config.scan_unroll
  # Decided for the platforms traced for (`compute_options.lowering_for`), like the kernels.
  return config.num_steps if compute_options.cpu_only() else 1


def _prepare(params, state, features, key, temperature, *, train, config):
  feature_shapes = [tuple(f.shape[1:]) for f in features]
  _check_shapes(feature_shapes, config)
  stored_steps = {leaf.shape[0] for leaf in jax.tree.leaves(state)}
  if stored_steps - {config.num_steps}:
    raise LsattnError(f"core: the state holds batch-norm statistics for {sorted(stored_steps)} "
                      f"steps, but num_steps={config.num_steps}; init_core with this config")
  (common_h, common_w), (finest_h, finest_w) = grids(feature_shapes)
  batch = features[0].shape[0]
  dtype = features[0].dtype
  kernels = compute_options.resolve_kernels(config.kernels)

  # The projections P_i are 1x1 convolutions and the mask scales positions, so
  # P_i(alpha * f_i) = alpha * (f_i W_i) + b_i: f_i W_i [B, h_i, w_i, D] is
  # computed once for all N steps instead of projecting C_i channels per step.
  projected_features = [primitives.conv2d({"kernel": params["project"][i]["kernel"]}, f,
                                      kernels=kernels)
                        for i, f in enumerate(features)]

  def step_fn(carry, step_input):
    c, h = carry
    step_key, state = step_input  # this step's Gumbel key and batch-norm statistics
    new_state = {"attend": []}
    if config.select_layer:
      choice, logits, new_state["select"] = attention.layer_selection(
          params["select"], state["select"], h, step_key, temperature, train=train)
    else:
      choice = jnp.ones((batch, 1), dtype)
      logits = jnp.zeros((batch, 1), dtype)
    lstm_input = 0.0
    mask = 0.0
    for i, f in enumerate(features):
      height, width = f.shape[1:3]
      bias = params["project"][i]["bias"].astype(dtype)
      if config.spatial_attention:
        layer_mask, layer_state = attention.attention_mask(
            params["attend"][i], state["attend"][i], primitives.resize(h, height, width), f,
            train=train, nonlinearity=config.attention_nonlinearity, kernels=kernels)
        new_state["attend"].append(layer_state)
        projected = layer_mask[..., None] * projected_features[i] + bias
      else:
        layer_mask = jnp.full((batch, height, width), 1.0 / (height * width), dtype)
        projected = projected_features[i] + bias
      projected = primitives.resize(projected, common_h, common_w)
      weight = choice[:, i][:, None, None]
      lstm_input = lstm_input + weight[..., None] * projected
      mask = mask + weight * primitives.resize(layer_mask[..., None], finest_h, finest_w)[..., 0]
    (c, h), _ = convlstm.convlstm_step(params["lstm"], (c, h), lstm_input, kernels=kernels)
    return (c, h), ((h, choice, logits, mask), new_state)

  # [47]: the initial state from the average of the image's features.
  context = jnp.concatenate([jnp.mean(f, axis=(1, 2)) for f in features], axis=-1)
  carry = convlstm.initial_carry(params["initial"], batch_size=batch, height=common_h,
                                 width=common_w, context=context, dtype=dtype)
  step_keys = None if key is None else jax.random.split(key, config.num_steps)
  if config.remat_steps:
    step_fn = jax.checkpoint(step_fn, policy=compute_options.REMAT_POLICY)
  return step_fn, carry, (step_keys, state)


def _finish(per_step):
  (hidden_states, choices, logits, masks), new_state = per_step
  pooled = jnp.mean(hidden_states, axis=(2, 3))  # [N, B, hidden]
  pooled = jnp.transpose(pooled, (1, 0, 2)).reshape(pooled.shape[1], -1)
  return CoreOutputs(pooled, hidden_states, choices, logits, masks), new_state
