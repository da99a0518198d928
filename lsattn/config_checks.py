"""Checks of a run's config before any compute: every problem names its key.

A config must have exactly the keys of ``configs/default.py`` (their
defaults: `lsattn.defaults`, so the check holds in an installed copy; an unknown
key is almost always a typo that would otherwise be silently ignored), and
each value must be in range.
"""

from __future__ import annotations

import pathlib

from lsattn import backbones, compilation, defaults, model, training
from lsattn.data import pipeline
from lsattn.errors import LsattnError

def _require(condition: bool, key: str, value, expected: str) -> None:
  if not condition:
    raise LsattnError(f"config.{key} = {value!r}: expected {expected}")


def check_config(config) -> model.ModelConfig:
  """Raises LsattnError on an unknown key or a bad value; returns the model config."""
  known = set(defaults.get_config().keys())
  unknown = sorted(set(config.keys()) - known)
  if unknown:
    raise LsattnError(f"unknown config key(s) {unknown}; the keys are those of "
                      f"configs/default.py: {sorted(known)}")
  for key in ("num_train_steps", "batch_size", "eval_batch_size", "log_every_steps",
              "eval_every_steps", "checkpoint_every_steps", "keep_checkpoints",
              "max_consecutive_nonfinite", "image_size", "heartbeat_timeout_seconds"):
    value = config[key]
    _require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, key, value,
             "an integer >= 1")
  for key in ("learning_rate", "temperature_init", "temperature_final"):
    _require(isinstance(config[key], (int, float)) and config[key] > 0, key, config[key],
             "a number > 0")
  _require(isinstance(config.beta, (int, float)) and config.beta >= 0, "beta", config.beta,
           "a number >= 0")
  _require(config.warmup_steps >= 0, "warmup_steps", config.warmup_steps, "an integer >= 0")
  _require(config.temperature_decay_steps >= 0, "temperature_decay_steps",
           config.temperature_decay_steps, "an integer >= 0")
  _require(config.learning_rate_schedule in training.LEARNING_RATE_SCHEDULES,
           "learning_rate_schedule", config.learning_rate_schedule,
           f"one of {training.LEARNING_RATE_SCHEDULES}")
  _require(config.temperature_schedule in training.TEMPERATURE_SCHEDULES,
           "temperature_schedule", config.temperature_schedule,
           f"one of {training.TEMPERATURE_SCHEDULES}")
  _require(config.nonfinite_policy in training.NONFINITE_POLICIES, "nonfinite_policy",
           config.nonfinite_policy, f"one of {training.NONFINITE_POLICIES}")
  resize = tuple(config.resize_size)
  _require(len(resize) == 2 and all(isinstance(v, int) and v > 0 for v in resize),
           "resize_size", config.resize_size, "two positive integers (H, W)")
  member = backbones.get(config.backbone)
  _require(config.image_size >= member.min_image_size, "image_size", config.image_size,
           f"at least {member.min_image_size} (backbone {member.name!r} downsamples "
           f"{member.min_image_size}x)")
  _require(config.image_size <= min(resize), "image_size", config.image_size,
           f"at most min(resize_size) = {min(resize)}")
  _require(config.channel_mean == () or len(config.channel_mean) == 3, "channel_mean",
           config.channel_mean, "() (the dataset's mean) or three numbers (R, G, B)")
  pipeline.check_flip(config.task, config.random_flip)
  for key in ("eval_retrieval_baselines", "eval_figures"):
    _require(isinstance(config[key], bool), key, config[key], "True or False")
  for key in ("data_dir", "manual_dir"):  # a file there fails deep in tfds otherwise
    _require(not (config[key] and pathlib.Path(config[key]).expanduser().is_file()), key,
             config[key], "a folder, not a file")
  _require(config.step_loss in training.STEP_LOSSES, "step_loss", config.step_loss,
           f"one of {training.STEP_LOSSES}")
  compilation.parse_ynn_fusions(config.xla_cpu_ynn_fusions)
  _require(config.kernels in compilation.KERNELS, "kernels", config.kernels,
           f"one of {compilation.KERNELS}")
  _require(config.remat in compilation.REMATS, "remat", config.remat,
           f"one of {compilation.REMATS}")
  if backbones.is_weights_name(config.backbone_weights):
    backbones.weights_file(config.backbone, config.backbone_weights)  # a name it declares
  try:
    return model.ModelConfig.from_config(config)
  except LsattnError as error:
    raise LsattnError(f"config: {error}") from None
