"""The full model: GoogLeNet taps -> layer-spatial attention core -> task head.

Variants (paper table 1 and the ablation of table 3), chosen by
``ModelConfig.variant``:

* ``'layer_spatial'``: layer selection + spatial attention over
  ``candidate_layers`` (the paper's model);
* ``'spatial_only'``: spatial attention on one ``fixed_layer``, no selection;
* ``'layer_only'``: layer selection over ``candidate_layers``, no spatial
  attention (the selected map itself feeds the Conv-LSTM);
* ``'posenet'``: the PoseNet baseline: Conv-5B average-pooled, a 2048-wide
  ReLU layer and direct regression (no recurrence, no attention; the
  per-step outputs are then empty, N = 0).

Heads: pose regression gives ``position`` [B, 3] and a unit ``orientation``
quaternion [B, 4] (normalised at the output); classification gives
``logits`` [B, C].

``params`` = {'backbone', 'core', 'head'}; ``state`` = {'backbone' (batch
norm statistics, torchvision variant), 'core' (attention batch norm)}.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from lsattn import core, layers
from lsattn.errors import LsattnError
from lsattn.googlenet import TAP_NAMES, VARIANTS as BACKBONES, GoogLeNet

TASKS = ("pose", "classification")
MODEL_VARIANTS = ("layer_spatial", "spatial_only", "layer_only", "posenet")
POSENET_WIDTH = 2048
MIN_IMAGE_SIZE = 32


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Everything that defines the model's shapes and computation (hashable)."""
  task: str = "pose"
  num_classes: int = 0
  variant: str = "layer_spatial"
  fixed_layer: str = "5b"
  backbone: str = "caffe"
  candidate_layers: tuple[str, ...] = TAP_NAMES
  core: core.CoreConfig = core.CoreConfig()
  dtype: str = "float32"

  def __post_init__(self):
    _choose("task", self.task, TASKS)
    _choose("model_variant", self.variant, MODEL_VARIANTS)
    _choose("backbone", self.backbone, BACKBONES)
    _choose("dtype", self.dtype, ("float32", "bfloat16"))
    if self.task == "classification" and (not isinstance(self.num_classes, int)
                                          or self.num_classes < 2):
      raise LsattnError(f"num_classes must be an integer >= 2 for classification, "
                        f"got {self.num_classes!r}")
    layers_ = tuple(self.candidate_layers)
    if not layers_ or any(name not in TAP_NAMES for name in layers_) or len(set(layers_)) != len(
        layers_):
      raise LsattnError(f"candidate_layers must be distinct names from {TAP_NAMES}, "
                        f"got {self.candidate_layers!r}")
    _choose("fixed_layer", self.fixed_layer, TAP_NAMES)

  @classmethod
  def from_config(cls, config) -> "ModelConfig":
    """Reads the model keys of an ml_collections config (see configs/default.py)."""
    variant = config.model_variant
    _choose("model_variant", variant, MODEL_VARIANTS)
    try:
      core_config = core.CoreConfig(
          num_steps=config.num_recurrent_steps,
          hidden_size=config.hidden_size,
          projection_size=config.get("projection_size", config.hidden_size),
          convlstm_kernel_sizes=tuple(config.convlstm_kernel_sizes),
          attention_kernel_sizes=tuple(config.attention_kernel_sizes),
          gate_embedding_size=config.gate_embedding_size,
          attention_nonlinearity=config.attention_nonlinearity,
          select_layer=variant in ("layer_spatial", "layer_only"),
          spatial_attention=variant in ("layer_spatial", "spatial_only"),
          scan_unroll=config.get("scan_unroll", 0))
    except LsattnError as error:
      raise LsattnError(str(error).replace("core: num_steps", "num_recurrent_steps")) from None
    return cls(task=config.task, num_classes=config.get("num_classes", 0), variant=variant,
               fixed_layer=config.get("fixed_layer", "5b"), backbone=config.backbone,
               candidate_layers=tuple(config.candidate_layers), core=core_config,
               dtype=config.get("dtype", "float32"))

  @property
  def layers(self) -> tuple[str, ...]:
    """The taps the attention core sees, in order."""
    if self.variant == "posenet":
      return ("5b",)
    if self.variant == "spatial_only":
      return (self.fixed_layer,)
    return tuple(self.candidate_layers)

  @property
  def layer_names(self) -> tuple[str, ...]:
    """Display names of `layers`, as in the paper ('Conv-4E')."""
    return tuple(f"Conv-{name.upper()}" for name in self.layers)


def _choose(key, value, allowed):
  if value not in allowed:
    raise LsattnError(f"{key} must be one of {allowed}, got {value!r}")


class ModelOutputs(NamedTuple):
  """Predictions and what the attention did.

  Attributes:
    prediction: {'position' [B, 3], 'orientation' [B, 4]} or {'logits' [B, C]}.
    layer_choices: [N, B, k] one-hot layer per step (N = 0 for 'posenet').
    layer_logits: [N, B, k].
    attention_masks: [N, B, Hm, Wm] chosen layer's mask on the finest grid.
  """
  prediction: dict
  layer_choices: jax.Array
  layer_logits: jax.Array
  attention_masks: jax.Array


def backbone_module(config: ModelConfig) -> GoogLeNet:
  return GoogLeNet(variant=config.backbone, taps=config.layers, compute_logits=False,
                   dtype=jnp.dtype(config.dtype))


def _head_inputs(config: ModelConfig) -> int:
  if config.variant == "posenet":
    return POSENET_WIDTH
  return config.core.num_steps * config.core.hidden_size


def init_model(key: jax.Array, config: ModelConfig, image_shape: Sequence[int] = (224, 224, 3),
               *, position_mean: Sequence[float] | None = None) -> tuple[dict, dict]:
  """Initial (params, state) for images of `image_shape` (H, W, 3).

  Args:
    key: PRNG key.
    config: the model.
    image_shape: input size; the core's parameters do not depend on it, but
      the common grid of the recurrent state does.
    position_mean: optional training-set mean position; the position head's
      bias starts there so early predictions are in the scene.
  """
  backbone_key, core_key, head_key, posenet_key = jax.random.split(key, 4)
  images = jnp.zeros((1, *image_shape), jnp.float32)
  backbone = backbone_module(config)
  variables = backbone.init(backbone_key, images, train=False)
  taps = jax.eval_shape(lambda: backbone.apply(variables, images, train=False))
  params = {"backbone": variables["params"]}
  state = {"backbone": variables.get("batch_stats", {}), "core": {}}
  shapes = [tuple(taps[name].shape[1:]) for name in config.layers]
  if config.variant == "posenet":
    params["core"] = layers.init_dense(posenet_key, in_features=shapes[0][2],
                                       out_features=POSENET_WIDTH)
  else:
    params["core"], state["core"] = core.init_core(core_key, shapes, config.core)
  outputs = 7 if config.task == "pose" else config.num_classes
  head = layers.init_dense(head_key, in_features=_head_inputs(config), out_features=outputs)
  if config.task == "pose":
    bias = jnp.zeros(7).at[3].set(1.0)  # identity rotation
    if position_mean is not None:
      bias = bias.at[:3].set(jnp.asarray(position_mean, jnp.float32))
    head["bias"] = bias
  params["head"] = head
  return params, state


def apply_backbone(params: dict, state: dict, images: jax.Array, *, train: bool,
                   config: ModelConfig) -> tuple[list[jax.Array], dict]:
  """images [B, H, W, 3] -> (taps in `config.layers` order, new backbone state)."""
  variables = {"params": params["backbone"]}
  if state["backbone"]:
    variables["batch_stats"] = state["backbone"]
  if train and state["backbone"]:
    taps, updates = backbone_module(config).apply(variables, images, train=True,
                                                  mutable=["batch_stats"])
    new_state = updates["batch_stats"]
  else:
    taps = backbone_module(config).apply(variables, images, train=train)
    new_state = state["backbone"]
  return [taps[name] for name in config.layers], new_state


def apply_head(params: dict, state: dict, taps: Sequence[jax.Array], key: jax.Array | None,
               temperature: jax.typing.ArrayLike, *, train: bool, config: ModelConfig
               ) -> tuple[ModelOutputs, dict]:
  """The attention core and task head on (possibly cached) taps.

  Returns:
    (ModelOutputs, new core state).
  """
  batch = taps[0].shape[0]
  if config.variant == "posenet":
    pooled = jnp.mean(taps[0].astype(jnp.float32), axis=(1, 2))
    features = jax.nn.relu(layers.dense(params["core"], pooled))
    height, width = taps[0].shape[1:3]
    choices = logits = jnp.zeros((0, batch, 1))
    masks = jnp.zeros((0, batch, height, width))
    new_core_state = state["core"]
  else:
    outputs, new_core_state = core.apply_core(
        params["core"], state["core"], [t.astype(jnp.float32) for t in taps], key, temperature,
        train=train, config=config.core)
    features = outputs.pooled
    choices, logits, masks = outputs.layer_choices, outputs.layer_logits, outputs.attention_masks
  head = layers.dense(params["head"], features)
  if config.task == "pose":
    quaternion = head[:, 3:]
    norm = jnp.sqrt(jnp.sum(jnp.square(quaternion), axis=-1, keepdims=True) + 1e-12)
    prediction = {"position": head[:, :3], "orientation": quaternion / norm}
  else:
    prediction = {"logits": head}
  return ModelOutputs(prediction, choices, logits, masks), new_core_state


def apply_model(params: dict, state: dict, images: jax.Array, key: jax.Array | None,
                temperature: jax.typing.ArrayLike, *, train: bool, config: ModelConfig
                ) -> tuple[ModelOutputs, dict]:
  """Backbone, attention core and head.

  Args:
    params, state: from `init_model`.
    images: [B, H, W, 3] RGB, 0-255 minus the dataset mean (ARCHITECTURE.md).
    key: Gumbel noise key in training; None for deterministic evaluation.
    temperature: Gumbel-softmax temperature (may be traced).
    train: batch-norm mode (and Gumbel noise when a key is given).
    config: the model.

  Returns:
    (ModelOutputs, new state).
  """
  if images.ndim != 4 or images.shape[-1] != 3:
    raise LsattnError(f"images must be [B, H, W, 3] RGB, got shape {tuple(images.shape)}")
  if min(images.shape[1:3]) < MIN_IMAGE_SIZE:
    raise LsattnError(f"images must be at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} (GoogLeNet "
                      f"downsamples 32x), got {images.shape[1]}x{images.shape[2]}")
  taps, backbone_state = apply_backbone(params, state, images, train=train, config=config)
  outputs, core_state = apply_head(params, state, taps, key, temperature, train=train,
                                   config=config)
  return outputs, {"backbone": backbone_state, "core": core_state}
