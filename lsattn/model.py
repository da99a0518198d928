"""The full model: backbone taps -> layer-spatial attention core -> task head.

Variants (paper table 1 and the ablation of table 3), chosen by
``ModelConfig.variant``:

* ``'layer_spatial'``: layer selection + spatial attention over
  ``candidate_layers`` (the paper's model);
* ``'spatial_only'``: spatial attention on one ``fixed_layer``, no selection;
* ``'layer_only'``: layer selection over ``candidate_layers``, no spatial
  attention (the selected map itself feeds the Conv-LSTM);
* baselines on the backbone's deepest tap, GoogLeNet's Conv-5B
  (`lsattn.nn.baselines`; no recurrence, no attention, so the per-step outputs
  are empty, N = 0): ``'posenet'`` (PoseNet [21]), ``'lstm_posenet'``
  (LSTM-PoseNet [42]) and ``'googlenet'`` (GoogLeNet's own classifier on
  pooled Conv-5B, the MIT-67 baseline [38]).

The backbone is ``ModelConfig.backbone``, a member of `lsattn.backbones`;
``candidate_layers`` () and ``fixed_layer`` '' stand for its taps and its
deepest tap (resolved when the config is made, so the stored values are
the names).

Heads: pose regression gives ``position`` [B, 3] and a unit ``orientation``
quaternion [B, 4] (normalised at the output); classification gives
``logits`` [B, C].

**A prediction at every step** (supplementary A: "At each time step the
LSTM output is used for prediction"; tables 1, 7, 8 report Step-1 ... Step-N).
Our reading: the head of step t reads what section 3.3's head reads after t
steps, the concatenated, average-pooled hidden states of steps 1..t
([B, t * hidden]), with its own weights. The head of step N is exactly the
paper's head (section 3.3) and gives ``prediction``; heads 1..N-1 give the
rest of ``step_predictions``. Which heads the training loss reaches is the
config's ``step_loss`` (`lsattn.training`). The other reading of the tables,
one model trained per N, is ``--config.num_recurrent_steps=t``.

``params`` = {'backbone', 'core', 'head' (step N), 'step_heads' (steps
1..N-1, a list; absent when N < 2)}; ``state`` = {'backbone' (batch norm
statistics, torchvision variant), 'core' (attention batch norm, per step)}.

**Several scenes, one model** (``num_scenes`` S > 1, `lsattn.data.scenes`;
after MS-Transformer, Shavit et al. 2021): backbone and core are
shared; each step's head holds one pose head per scene (its kernel
[F, 7 S], scene k's outputs in columns 7k..7k+6, so S separate linear heads
in one matmul), and ``params['scene_head']`` [F -> S], a linear scene
classifier on the final features (what the final pose head reads; MS-
Transformer's classifier reads its encoder's outputs: on which features to
put it is ours). The prediction adds ``scene_logits`` [B, S] and every
scene's pose, ``scene_position`` [B, S, 3] and ``scene_orientation``
[B, S, 4]; ``position`` and ``orientation`` are those of the scene the
classifier ranks first (at every step the final step's classifier picks).
Training scores the true scene's head (`lsattn.training`). One scene: none of
this, the model is unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lsattn import backbones
from lsattn.errors import LsattnError, check_choice
from lsattn.nn import baselines, compute_options, core, primitives

RECURRENT_VARIANTS = ("layer_spatial", "spatial_only", "layer_only")
MODEL_VARIANTS = RECURRENT_VARIANTS + baselines.BASELINES


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Everything that defines the model's shapes and computation (hashable)."""
  task: str = "pose"
  num_classes: int = 0
  num_scenes: int = 1  # > 1: one pose head per scene and a scene classifier
  variant: str = "layer_spatial"
  fixed_layer: str = ""  # '' = the backbone's deepest tap
  backbone: str = "caffe"
  candidate_layers: tuple[str, ...] = ()  # () = every tap of the backbone
  core: core.CoreConfig = core.CoreConfig()
  dtype: str = "float32"
  transform_input: bool = False  # torchvision's input remapping (backbones.googlenet)
  # How, not what: 'auto' | 'cpu' | 'generic' kernels of the backbone's pools (the
  # core's are core.kernels), resolved when traced (compute_options.resolve_kernels);
  # remat: 'none' | 'blocks' | 'steps' | 'both' (compute_options.remat_parts).
  kernels: str = "auto"
  remat: str = "none"

  def __post_init__(self):
    # Each value's own domain is checked once, from its declaration (lsattn.config_schema);
    # what depends on the backbone or on two fields is checked here.
    taps = backbones.get(self.backbone).taps
    if not isinstance(self.num_scenes, int) or self.num_scenes < 1 or (
        self.num_scenes > 1 and self.task != "pose"):
      raise LsattnError(f"num_scenes must be an integer >= 1, and 1 unless the task is "
                        f"'pose'; got {self.num_scenes!r} (task {self.task!r})")
    if self.task == "classification" and (not isinstance(self.num_classes, int)
                                          or self.num_classes < 2):
      raise LsattnError(f"num_classes must be an integer >= 2 for classification, "
                        f"got {self.num_classes!r}")
    layers_, fixed = backbones.default_layers(self.backbone, self.candidate_layers,
                                              self.fixed_layer)
    if any(name not in taps for name in layers_) or len(set(layers_)) != len(layers_):
      raise LsattnError(f"candidate_layers must be distinct names from {taps}, "
                        f"got {self.candidate_layers!r}")
    check_choice("fixed_layer", fixed, taps)
    object.__setattr__(self, "candidate_layers", layers_)  # frozen: set once, resolved
    object.__setattr__(self, "fixed_layer", fixed)

  @classmethod
  def from_config(cls, config) -> "ModelConfig":
    """The model of a config with every key (the one place the model reads a config;
    `config_checks.check_config` checks the values first)."""
    variant = config.model_variant
    core_config = core.CoreConfig(
        num_steps=config.num_recurrent_steps,
        hidden_size=config.hidden_size,
        projection_size=config.projection_size,
        convlstm_kernel_sizes=tuple(config.convlstm_kernel_sizes),
        attention_kernel_sizes=tuple(config.attention_kernel_sizes),
        gate_embedding_size=config.gate_embedding_size,
        attention_nonlinearity=config.attention_nonlinearity,
        attention_branch_channels=config.attention_branch_channels,
        initial_state=config.initial_state,
        select_layer=variant in ("layer_spatial", "layer_only"),
        spatial_attention=variant in ("layer_spatial", "spatial_only"),
        scan_unroll=config.scan_unroll,
        kernels=config.kernels,
        remat_steps=compute_options.remat_parts(config.remat)[1])
    transform = config.torchvision_transform_input
    transform_input = "transform_input" in backbones.get(config.backbone).options and (
        transform == "on" or (transform == "auto" and bool(config.backbone_weights)))
    return cls(task=config.task, num_classes=config.num_classes,
               num_scenes=max(len(config.scenes), 1), variant=variant,
               fixed_layer=config.fixed_layer, backbone=config.backbone,
               candidate_layers=tuple(config.candidate_layers), core=core_config,
               dtype=config.dtype, transform_input=transform_input,
               kernels=config.kernels, remat=config.remat)

  @property
  def layers(self) -> tuple[str, ...]:
    """The taps the attention core sees, in order."""
    if self.variant in baselines.BASELINES:
      return (backbones.get(self.backbone).deepest,)
    if self.variant == "spatial_only":
      return (self.fixed_layer,)
    return tuple(self.candidate_layers)

  @property
  def layer_names(self) -> tuple[str, ...]:
    """Display names of `layers`, the backbone's (GoogLeNet's as in the paper: 'Conv-4E')."""
    return tuple(map(backbones.get(self.backbone).display_name, self.layers))


class ModelOutputs(NamedTuple):
  """Predictions and what the attention did.

  Attributes:
    prediction: {'position' [B, 3], 'orientation' [B, 4]} or {'logits' [B, C]}
      (the final step's); several scenes add 'scene_logits' [B, S],
      'scene_position' [B, S, 3] and 'scene_orientation' [B, S, 4].
    step_predictions: the same entries with a leading step axis [N, B, ...];
      entry N - 1 equals `prediction` (N = 0 for the baselines).
    features: [B, F] what the final head reads (F = N * hidden for the
      recurrent variants); `step_predictions` from them is `step_heads`.
    layer_choices: [N, B, k] one-hot layer per step (N = 0 for baselines).
    layer_logits: [N, B, k].
    attention_masks: [N, B, Hm, Wm] chosen layer's mask on the finest grid.
  """
  prediction: dict
  step_predictions: dict
  features: jax.Array
  layer_choices: jax.Array
  layer_logits: jax.Array
  attention_masks: jax.Array


def backbone_module(config: ModelConfig) -> nn.Module:
  """The backbone member's module, returning the taps of `config.layers` (no logits)."""
  member = backbones.get(config.backbone)
  options = {name: getattr(config, name) for name in member.options}
  return member.module(taps=config.layers, compute_logits=False, dtype=jnp.dtype(config.dtype),
                       kernels=config.kernels,
                       remat_blocks=compute_options.remat_parts(config.remat)[0], **options)


def num_steps(config: ModelConfig) -> int:
  """N, the number of recurrent steps (0 for the baselines)."""
  return 0 if config.variant in baselines.BASELINES else config.core.num_steps


def _init_head(key, config: ModelConfig, in_features: int, position_mean) -> dict:
  """One step's head; `position_mean` [3] (one scene) or [S, 3] (each scene's mean)."""
  scenes = config.num_scenes
  outputs = 7 * scenes if config.task == "pose" else config.num_classes
  head = primitives.init_dense(key, in_features=in_features, out_features=outputs)
  if config.task == "pose":
    bias = jnp.zeros((scenes, 7)).at[:, 3].set(1.0)  # identity rotation
    if position_mean is not None:
      bias = bias.at[:, :3].set(jnp.asarray(position_mean, jnp.float32).reshape(-1, 3))
    head["bias"] = bias.reshape(-1)
  return head


def _init_scene_head(key, config: ModelConfig, in_features: int) -> dict:
  return primitives.init_dense(key, in_features=in_features, out_features=config.num_scenes)


def backbone_key(key: jax.Array) -> jax.Array:
  """The key `init_model(key, ...)` initialises the backbone with."""
  return jax.random.split(key, 4)[0]


def init_backbone(key: jax.Array, config: ModelConfig, image_shape: Sequence[int]) -> dict:
  """The backbone's variables: {'params'} (and {'batch_stats'} for torchvision's).

  One compiled program per backbone, deepest tap, dtype and image shape,
  shared by every model that reads this backbone: its variables depend only
  on the deepest tap (the module stops there). Eagerly, GoogLeNet's
  initialisation compiles hundreds of small operations one at a time:
  `init_model` took 25 s on 2 CPU cores, 10 s with this one program, which
  the persistent compilation cache then keeps (measured under the tests'
  XLA flags).
  """
  member = backbones.get(config.backbone)
  shared = ModelConfig(variant="layer_only", backbone=config.backbone,
                       candidate_layers=(member.deepest_of(config.layers),), dtype=config.dtype,
                       **{name: getattr(config, name) for name in member.options})
  return _init_backbone(key, config=shared, image_shape=tuple(image_shape))


@functools.partial(jax.jit, static_argnames=("config", "image_shape"))
def _init_backbone(key: jax.Array, *, config: ModelConfig, image_shape: tuple[int, ...]) -> dict:
  images = jnp.zeros((1, *image_shape), jnp.float32)
  return dict(backbone_module(config).init(key, images, train=False))


def init_model(key: jax.Array, config: ModelConfig, image_shape: Sequence[int] = (224, 224, 3),
               *, position_mean: Sequence[float] | None = None,
               backbone_variables: dict | None = None) -> tuple[dict, dict]:
  """Initial (params, state) for images of `image_shape` (H, W, 3).

  Args:
    key: PRNG key.
    config: the model.
    image_shape: input size; the core's parameters do not depend on it, but
      the common grid of the recurrent state does.
    position_mean: optional training-set mean position; the position head's
      bias starts there so early predictions are in the scene.
    backbone_variables: `init_backbone(backbone_key(key), config,
      image_shape)` computed elsewhere (a program shared by every model with
      this backbone); None computes it here.
  """
  _, core_key, head_key, baseline_key = jax.random.split(key, 4)
  images = jnp.zeros((1, *image_shape), jnp.float32)
  backbone = backbone_module(config)
  variables = backbone_variables
  if variables is None:
    variables = init_backbone(backbone_key(key), config, image_shape)
  taps = jax.eval_shape(lambda: backbone.apply(variables, images, train=False))
  params = {"backbone": variables["params"]}
  state = {"backbone": variables.get("batch_stats", {}), "core": {}}
  shapes = [tuple(taps[name].shape[1:]) for name in config.layers]
  if config.variant in baselines.BASELINES:
    params["core"] = baselines.init_baseline(baseline_key, config.variant, shapes[0][2])
    features = baselines.feature_size(config.variant, shapes[0][2])
    params["head"] = _init_head(head_key, config, features, position_mean)
    if config.num_scenes > 1:
      params["scene_head"] = _init_scene_head(jax.random.fold_in(head_key, 1), config, features)
    return params, state
  params["core"], state["core"] = core.init_core(core_key, shapes, config.core)
  steps, hidden = config.core.num_steps, config.core.hidden_size
  head_keys = jax.random.split(head_key, steps)
  params["head"] = _init_head(head_keys[-1], config, steps * hidden, position_mean)
  if steps > 1:
    params["step_heads"] = [_init_head(head_keys[t], config, (t + 1) * hidden, position_mean)
                            for t in range(steps - 1)]
  if config.num_scenes > 1:
    params["scene_head"] = _init_scene_head(jax.random.fold_in(head_key, 1), config,
                                            steps * hidden)
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


def apply_head(params: dict, state: dict, taps: Sequence[jax.Array], *,
               key: jax.Array | None = None, temperature: jax.typing.ArrayLike = 1.0,
               train: bool, config: ModelConfig) -> tuple[ModelOutputs, dict]:
  """The attention core and task head on (possibly cached) taps; `key`,
  `temperature` as in `apply_model`.

  Returns:
    (ModelOutputs, every entry float32; new core state).
  """
  batch = taps[0].shape[0]
  taps = [t.astype(config.dtype) for t in taps]  # cached taps may come in another dtype
  if config.variant in baselines.BASELINES:
    features = baselines.baseline_features(params["core"], config.variant, taps[0])
    height, width = taps[0].shape[1:3]
    choices = logits = jnp.zeros((0, batch, 1))
    masks = jnp.zeros((0, batch, height, width))
    new_core_state = state["core"]
  else:
    outputs, new_core_state = core.apply_core(
        params["core"], state["core"], taps, key=key,
        temperature=temperature, train=train, config=config.core)
    features = outputs.pooled
    choices, logits, masks = outputs.layer_choices, outputs.layer_logits, outputs.attention_masks
  steps = step_heads(params, features, config)
  if num_steps(config):
    prediction = jax.tree.map(lambda x: x[-1], steps)
  else:
    prediction = _predict(params["head"], features, config)
  if config.num_scenes > 1:
    scene_logits = _dense(params["scene_head"], features, config)
    chosen = jnp.argmax(scene_logits, axis=-1)
    prediction = {**select_scene(prediction, chosen), "scene_logits": scene_logits}
    if num_steps(config):
      steps = jax.vmap(lambda step: select_scene(step, chosen))(steps)
    else:  # the baselines: no steps
      steps = {**steps, "position": jnp.zeros((0, batch, 3)),
               "orientation": jnp.zeros((0, batch, 4))}
  outputs = ModelOutputs(prediction, steps, features, choices, logits, masks)
  # The loss, metrics and written files read float32, whatever config.dtype.
  return jax.tree.map(lambda x: x.astype(jnp.float32), outputs), new_core_state


def _predict(head: dict, features: jax.Array, config: ModelConfig) -> dict:
  """One head on features [B, F] -> {'position', 'orientation'} or {'logits'}, float32.

  The matmul's operands are in ``config.dtype``, its result (accumulated in
  float32) and the bias are float32 (ours): rounded to bfloat16's 8 bits, a
  position of 10 m would move in steps of 6 cm. The quaternion is normalised
  in float32.
  """
  output = _dense(head, features, config)
  if config.task == "pose":
    if config.num_scenes > 1:
      output = output.reshape(*output.shape[:-1], config.num_scenes, 7)
    quaternion = output[..., 3:]
    norm = jnp.sqrt(jnp.sum(jnp.square(quaternion), axis=-1, keepdims=True) + 1e-12)
    if config.num_scenes > 1:  # every scene's pose: [B, S, 3] and [B, S, 4]
      return {"scene_position": output[..., :3], "scene_orientation": quaternion / norm}
    return {"position": output[:, :3], "orientation": quaternion / norm}
  return {"logits": output}


def _dense(head: dict, features: jax.Array, config: ModelConfig) -> jax.Array:
  """features [B, F] @ kernel + bias: operands in ``config.dtype``, result float32."""
  dtype = jnp.dtype(config.dtype)
  return jnp.matmul(features.astype(dtype), head["kernel"].astype(dtype),
                    preferred_element_type=jnp.float32) + head["bias"]


def select_scene(prediction: dict, scene: jax.Array) -> dict:
  """`prediction` with 'position' [B, 3] and 'orientation' [B, 4] of scene `scene` (int [B])
  taken from its 'scene_position' [B, S, 3] and 'scene_orientation' [B, S, 4]."""
  pick = lambda value: jnp.take_along_axis(value, scene[:, None, None], axis=1)[:, 0]
  return {**prediction, "position": pick(prediction["scene_position"]),
          "orientation": pick(prediction["scene_orientation"])}


def step_heads(params: dict, features: jax.Array, config: ModelConfig) -> dict:
  """Every step's prediction from the final features [B, N * hidden].

  Step t's head reads the first t * hidden features (the pooled hidden
  states of steps 1..t); step N's is ``params['head']``.

  Returns:
    The prediction entries stacked [N, B, ...] (N = 0 for the baselines).
  """
  steps = num_steps(config)
  if steps == 0:
    shapes = jax.eval_shape(lambda: _predict(params["head"], features, config))
    return {name: jnp.zeros((0, *shape.shape), shape.dtype) for name, shape in shapes.items()}
  hidden = config.core.hidden_size
  heads = list(params.get("step_heads", [])) + [params["head"]]
  per_step = [_predict(head, features[:, :(t + 1) * hidden], config)
              for t, head in enumerate(heads)]
  return jax.tree.map(lambda *xs: jnp.stack(xs), *per_step)


def apply_model(params: dict, state: dict, images: jax.Array, *,
                key: jax.Array | None = None, temperature: jax.typing.ArrayLike = 1.0,
                train: bool, config: ModelConfig) -> tuple[ModelOutputs, dict]:
  """Backbone, attention core and head.

  Args:
    params, state: from `init_model`.
    images: [B, H, W, 3] RGB, 0-255 minus the dataset mean (ARCHITECTURE.md).
    key: Gumbel noise key in training; None for deterministic evaluation.
    temperature: Gumbel-softmax temperature (may be traced); without a key
      it changes nothing (the argmax of the logits is taken).
    train: batch-norm mode (and Gumbel noise when a key is given).
    config: the model.

  Returns:
    (ModelOutputs, new state).
  """
  backbones.check_images(images)  # before the size check reads H and W
  size = backbones.get(config.backbone).min_image_size
  if min(images.shape[1:3]) < size:
    raise LsattnError(f"images must be at least {size}x{size} (backbone {config.backbone!r} "
                      f"downsamples {size}x), got {images.shape[1]}x{images.shape[2]}")
  taps, backbone_state = apply_backbone(params, state, images, train=train, config=config)
  outputs, core_state = apply_head(params, state, taps, key=key, temperature=temperature,
                                   train=train, config=config)
  return outputs, {"backbone": backbone_state, "core": core_state}
