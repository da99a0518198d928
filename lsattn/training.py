"""Train state, optimiser, schedules, and the pure train and eval steps.

``train_step(state, batch, rng) -> (state, metrics)`` is one pure function,
jitted with the state donated (see `lsattn.experiment`). Everything that
changes during training lives in `TrainState`: parameters, batch-norm
statistics, optimiser state, the step (which also fixes the data position and
the Gumbel temperature) and the non-finite counters, so a checkpoint of it is
a complete resume point.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lsattn import model
from lsattn.nn import gumbel, losses


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs (a pytree; checkpointed whole).

  Attributes:
    step: int32 [], number of updates attempted so far.
    params: {'backbone', 'core', 'head'} (+ 'loss' for learned weighting).
    model_state: batch-norm statistics {'backbone', 'core'}.
    opt_state: optax state.
    consecutive_nonfinite: int32 [], non-finite steps in a row (reset by a
      finite one).
    max_consecutive_nonfinite: int32 [], the longest such run so far, so the
      host can enforce the 'stop' policy at its next sync without missing
      a run that ended in between.
    skipped_steps: int32 [], total updates skipped for non-finite values.
  """
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  consecutive_nonfinite: jax.Array
  max_consecutive_nonfinite: jax.Array
  skipped_steps: jax.Array


def learning_rate_schedule(config) -> optax.Schedule:
  """Linear warm-up to ``learning_rate``, then constant or cosine decay."""
  base, warmup = config.learning_rate, config.warmup_steps
  if config.learning_rate_schedule == "constant":
    decay = optax.constant_schedule(base)
  elif config.learning_rate_schedule == "cosine":
    decay = optax.cosine_decay_schedule(base, max(config.num_train_steps - warmup, 1))
  else:
    # The schema's choices (lsattn.config_schema) are checked before any compute.
    raise ValueError(f"unknown learning_rate_schedule {config.learning_rate_schedule!r}")
  if warmup <= 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, base, warmup), decay], [warmup])


def temperature_schedule(config) -> optax.Schedule:
  """Gumbel-softmax temperature per step: lowered progressively (paper 3.2).

  Goes from ``temperature_init`` to ``temperature_final`` over
  ``temperature_decay_steps`` (0 means all of ``num_train_steps``) and stays
  there.
  """
  start, end = config.temperature_init, config.temperature_final
  steps = config.temperature_decay_steps or config.num_train_steps
  kind = config.temperature_schedule
  if kind == "constant":
    return optax.constant_schedule(start)
  if kind == "linear":
    return optax.linear_schedule(start, end, steps)
  if kind == "cosine":
    return optax.cosine_decay_schedule(start, steps, alpha=end / start)
  if kind == "exponential":
    return optax.exponential_decay(start, steps, decay_rate=end / start, end_value=end)
  raise ValueError(f"unknown temperature_schedule {kind!r}")  # checked before any compute


def make_optimizer(config) -> optax.GradientTransformation:
  """Adam (paper 4.1); with ``freeze_backbone`` the backbone gets zero updates, else
  its learning rate is ``backbone_learning_rate_scale`` times the rest's."""
  return _optimizer(learning_rate_schedule(config), bool(config.freeze_backbone),
                    float(config.backbone_learning_rate_scale))


def _optimizer(schedule: optax.Schedule, frozen: bool,
               backbone_scale: float = 1.0) -> optax.GradientTransformation:
  adam = optax.adam(schedule)
  if frozen:
    labels_fn = lambda params: {name: ("frozen" if name == "backbone" else "trained")
                                for name in params}
    return optax.multi_transform({"trained": adam, "frozen": optax.set_to_zero()}, labels_fn)
  if backbone_scale == 1.0:
    return adam  # the optimiser state of 0.1 runs: their checkpoints keep restoring
  # Adam's update does not change with the gradient's scale, so scaling the
  # backbone's updates is Adam with its learning rate scaled by as much.
  backbone_only = lambda params: {name: name == "backbone" for name in params}
  return optax.chain(adam, optax.masked(optax.scale(backbone_scale), backbone_only))


@functools.cache
def _compiled_init(model_config: model.ModelConfig, image_shape: tuple, learned_weighting: bool,
                   frozen: bool, with_mean: bool, backbone_scale: float = 1.0) -> Callable:
  """One jitted initialiser per shape-defining setting (reused across calls)."""
  # The optimiser state's structure does not depend on the learning rate (the
  # schedule is always a function), so any schedule builds the same state.
  optimizer = _optimizer(optax.constant_schedule(0.0), frozen, backbone_scale)

  def init_fn(rng, position_mean, backbone_variables):
    params, model_state = model.init_model(rng, model_config, image_shape,
                                           position_mean=position_mean,
                                           backbone_variables=backbone_variables)
    if learned_weighting:
      params["loss"] = losses.init_learned_weighting()
    zero = jnp.zeros((), jnp.int32)
    return TrainState(step=zero, params=params, model_state=model_state,
                      opt_state=optimizer.init(params), consecutive_nonfinite=zero,
                      max_consecutive_nonfinite=zero, skipped_steps=zero)

  return jax.jit(init_fn)


def create_train_state(rng: jax.Array, config, model_config: model.ModelConfig,
                       image_shape, *, position_mean=None) -> TrainState:
  """Initial state: random parameters, zero optimiser state and step.

  Initialisation is two compiled programs (eagerly it would compile hundreds
  of small operations): the backbone's, shared by every model with the same
  backbone and taps, then the rest. Both draw from an RBG generator seeded
  by `rng`, which compiles faster than threefry for the backbone's many
  kernels; the values are those of `model.init_model` on that key.
  """
  image_shape = tuple(image_shape)
  learned_weighting = model_config.task == "pose" and bool(config.learned_loss_weighting)
  init_fn = _compiled_init(model_config, image_shape, learned_weighting,
                           bool(config.freeze_backbone), position_mean is not None,
                           float(config.backbone_learning_rate_scale))
  if position_mean is not None:
    position_mean = jnp.asarray(position_mean, jnp.float32)
  seed = jax.random.randint(rng, (), 0, jnp.iinfo(jnp.int32).max)
  init_rng = jax.random.key(seed, impl="unsafe_rbg")
  backbone_variables = model.init_backbone(model.backbone_key(init_rng), model_config,
                                           image_shape)
  state = init_fn(init_rng, position_mean, backbone_variables)
  # Distinct buffers for every leaf: the train step donates the state, and a
  # buffer shared by two leaves cannot be donated twice.
  return _copy_leaves(state)


def memory_needed(config, model_config: model.ModelConfig, image_shape) -> dict[str, int]:
  """Bytes a train step needs at least, from the shapes alone (nothing is allocated or
  compiled): a lower bound, so a run above the memory surely cannot fit.

  Returns:
    {'state': params, batch-norm statistics and optimiser state (Adam's two
    moments); 'gradients': one per trained parameter; 'batch': the images
    float32 [batch_size, H, W, 3]}. Activations come on top.
  """
  image_shape = tuple(image_shape)
  params, model_state = jax.eval_shape(
      lambda: model.init_model(jax.random.key(0), model_config, image_shape))
  frozen = bool(config.freeze_backbone)
  optimizer = _optimizer(optax.constant_schedule(0.0), frozen,
                         float(config.backbone_learning_rate_scale))
  opt_state = jax.eval_shape(optimizer.init, params)
  trained = {name: tree for name, tree in params.items() if not (frozen and name == "backbone")}
  size = lambda tree: sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree))
  return {"state": size(params) + size(model_state) + size(opt_state),
          "gradients": size(trained),
          "batch": int(config.batch_size) * int(np.prod(image_shape)) * 4}


@jax.jit
def _copy_leaves(tree):
  """A copy of every leaf into a buffer of its own, in one program (eagerly, one per shape)."""
  return jax.tree.map(jnp.copy, tree)


def _task_loss(params, prediction: dict, batch, beta: float, model_config):
  """Scalar loss and its parts for one batch and one prediction (`beta`: eq. 4)."""
  if model_config.task == "classification":
    return losses.cross_entropy_loss(prediction["logits"], batch["label"])
  if model_config.num_scenes > 1:  # several scenes: the true scene's head is trained
    prediction = model.select_scene(prediction, batch["scene"])
  parts = losses.posenet_loss(prediction["position"], prediction["orientation"],
                              batch["position"], batch["orientation"], beta=beta)
  if "loss" in params:
    parts = dict(parts)
    parts["loss"] = losses.learned_weighting_loss(
        parts["position_loss"], parts["orientation_loss"], params["loss"]["s_x"],
        params["loss"]["s_q"])
  return parts


def _step_losses(params, step_predictions: dict, batch, beta: float, model_config) -> dict:
  """The task loss parts of every step's prediction, each [N]."""
  return jax.vmap(lambda prediction: _task_loss(params, prediction, batch, beta,
                                                model_config))(step_predictions)


def _combined_loss(params, outputs: model.ModelOutputs, batch, model_config, *, beta: float,
                   step_loss: str) -> dict:
  """The loss to minimise under `step_loss`, and its parts.

  'final' (section 3.3, the default): the final step's loss trains the
  model. The heads of steps 1..N-1 are trained too, on features whose
  gradient is stopped: they read out what the state holds after t steps
  (for the Step-t metrics) without changing the model or the final head.
  'mean' (ours): the mean of all N steps' losses trains everything, so
  early steps are pushed to be useful on their own.

  Several scenes (``num_scenes`` > 1): every head's pose loss is that of the
  true scene's head, and the scene classifier's cross-entropy is added to the
  loss with weight 1 ('scene_loss', 'scene_accuracy'; MS-Transformer's
  sum of pose loss and scene NLL).

  Returns:
    The final step's parts ('loss' replaced by the combined loss) plus
    'final_loss' and, when N > 1, 'step_heads_loss' (mean loss of heads
    1..N-1).
  """
  parts = dict(_task_loss(params, outputs.prediction, batch, beta, model_config))
  parts["final_loss"] = parts["loss"]
  if model_config.num_scenes > 1:
    scene = losses.cross_entropy_loss(outputs.prediction["scene_logits"], batch["scene"])
    parts["scene_loss"], parts["scene_accuracy"] = scene["loss"], scene["accuracy"]
  parts = _with_scene_loss(parts)
  steps = model.num_steps(model_config)
  if steps < 2:
    return parts
  if step_loss == "mean":
    step_parts = _step_losses(params, outputs.step_predictions, batch, beta, model_config)
    parts["step_heads_loss"] = jnp.mean(step_parts["loss"][:-1])
    parts["loss"] = _with_scene_loss({**parts, "loss": jnp.mean(step_parts["loss"])})["loss"]
    return parts
  probes = model.step_heads(params, jax.lax.stop_gradient(outputs.features), model_config)
  early = jax.tree.map(lambda x: x[:-1], probes)
  step_parts = _step_losses(params, early, batch, beta, model_config)
  parts["step_heads_loss"] = jnp.mean(step_parts["loss"])
  parts["loss"] = parts["loss"] + parts["step_heads_loss"]
  return parts


def _with_scene_loss(parts: dict) -> dict:
  """'loss' plus 'scene_loss' when there is one (several scenes)."""
  if "scene_loss" not in parts:
    return parts
  return {**parts, "loss": parts["loss"] + parts["scene_loss"]}


def make_loss_fn(config, model_config: model.ModelConfig) -> Callable:
  """``loss_fn(params, model_state, batch, key, temperature) -> (loss, (parts, outputs, state))``.

  With ``freeze_backbone`` the backbone runs in inference mode with no
  backward pass through it.
  """
  frozen, beta, step_loss = config.freeze_backbone, config.beta, config.step_loss

  def loss_fn(params, model_state, batch, key, temperature):
    if frozen:
      # Frozen backbone: inference-mode statistics and no backward pass through it.
      taps, backbone_state = model.apply_backbone(
          jax.lax.stop_gradient(params), model_state, batch["image"], train=False,
          config=model_config)
      outputs, core_state = model.apply_head(params, model_state, taps, key=key,
                                             temperature=temperature, train=True,
                                             config=model_config)
      new_state = {"backbone": backbone_state, "core": core_state}
    else:
      outputs, new_state = model.apply_model(params, model_state, batch["image"], key=key,
                                             temperature=temperature, train=True,
                                             config=model_config)
    parts = _combined_loss(params, outputs, batch, model_config, beta=beta, step_loss=step_loss)
    return parts["loss"], (parts, outputs, new_state)

  return loss_fn


def all_finite(tree) -> jax.Array:
  """True when every number of `tree` is finite (elementwise: no norm to overflow)."""
  leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def make_train_step(config, model_config: model.ModelConfig) -> Callable:
  """The pure train step ``(state, batch, rng) -> (state, metrics)``.

  Per-step randomness is ``fold_in(rng, step)``, so a resumed run draws the
  same Gumbel noise as an uninterrupted one. A step whose loss or gradients
  or new params are not finite leaves params, statistics and optimiser state unchanged
  (and is counted), decided inside the step without a host sync.
  """
  optimizer = make_optimizer(config)
  temperature_fn = temperature_schedule(config)
  learning_rate_fn = learning_rate_schedule(config)
  loss_fn = make_loss_fn(config, model_config)

  def train_step(state: TrainState, batch, rng):
    key = jax.random.fold_in(rng, state.step)
    temperature = temperature_fn(state.step)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (parts, outputs, new_model_state)), grads = grad_fn(
        state.params, state.model_state, batch, key, temperature)
    updates, new_opt_state = optimizer.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)

    grad_norm = optax.tree.norm(grads)
    # Finite loss and gradients can still give non-finite params (an infinite
    # learning rate): the new params are checked too.
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & all_finite(new_params)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    consecutive = jnp.where(finite, 0, state.consecutive_nonfinite + 1)
    new_state = TrainState(
        step=state.step + 1,
        params=keep(new_params, state.params),
        model_state=keep(new_model_state, state.model_state),
        opt_state=keep(new_opt_state, state.opt_state),
        consecutive_nonfinite=consecutive,
        max_consecutive_nonfinite=jnp.maximum(state.max_consecutive_nonfinite, consecutive),
        skipped_steps=state.skipped_steps + (~finite).astype(jnp.int32))
    metrics = {name: value for name, value in parts.items()}
    metrics.update(
        temperature=temperature, learning_rate=learning_rate_fn(state.step),
        l2_grads=grad_norm, l2_params=optax.tree.norm(new_state.params),
        nonfinite=(~finite).astype(jnp.int32),
        # [N, k]: how often each layer was chosen at each step in this batch.
        layer_counts=jnp.sum(outputs.layer_choices, axis=1),
        # [N]: the batch's mean entropy of the distribution each choice is drawn
        # from (softmax of the logits, before the noise): how settled the choice is.
        layer_entropy=jnp.mean(gumbel.choice_entropy(outputs.layer_logits), axis=1))
    if "loss" in state.params:
      metrics.update(s_x=state.params["loss"]["s_x"], s_q=state.params["loss"]["s_q"])
    return new_state, metrics

  return train_step
