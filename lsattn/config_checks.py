"""Checks of a run's config before any compute: every problem names its key.

A config must have exactly the keys of the schema (`lsattn.config_schema.KEYS`, so
the check holds in an installed copy; an unknown key is almost always a typo
that would otherwise be silently ignored), each value in its key's declared
domain (`config_schema.check_values`: types, choices, ranges, finite numbers), and
the keys that constrain each other consistent (here).
"""

from __future__ import annotations

import pathlib

from lsattn import backbones, config_schema, model
from lsattn.data import datasets, pipeline, scenes
from lsattn.errors import LsattnError
from lsattn.runs import compilation


def _require(condition: bool, key: str, value, expected: str) -> None:
  if not condition:
    raise LsattnError(f"config.{key} = {value!r}: expected {expected}")


def check_config(config) -> model.ModelConfig:
  """Raises LsattnError on an unknown key or a bad value; returns the model config."""
  known = set(config_schema.BY_NAME)
  unknown = sorted(set(config.keys()) - known)
  if unknown:
    raise LsattnError(f"unknown config key(s) {unknown}; the keys are those of "
                      f"configs/default.py: {sorted(known)}")
  config_schema.check_values(config)
  resize = tuple(config.resize_size)
  member = backbones.get(config.backbone)
  _require(config.image_size >= member.min_image_size, "image_size", config.image_size,
           f"at least {member.min_image_size} (backbone {member.name!r} downsamples "
           f"{member.min_image_size}x)")
  _require(config.image_size <= min(resize), "image_size", config.image_size,
           f"at most min(resize_size) = {min(resize)}")
  _require(not (config.freeze_backbone and config.backbone_learning_rate_scale != 1.0),
           "backbone_learning_rate_scale", config.backbone_learning_rate_scale,
           "1.0 with freeze_backbone=True (a frozen backbone gets no updates to scale)")
  pipeline.check_flip(config.task, config.random_flip)
  datasets.check_ground_truth(config.dataset, config.ground_truth)
  scenes.scene_names(config.dataset, config.scenes)  # several scenes: one dataset's, known
  for key in ("data_dir", "manual_dir"):  # a file there fails deep in tfds otherwise
    _require(not (config[key] and pathlib.Path(config[key]).expanduser().is_file()), key,
             config[key], "a folder, not a file")
  compilation.parse_ynn_fusions(config.xla_cpu_ynn_fusions)
  if backbones.is_weights_name(config.backbone_weights):
    backbones.weights_file(config.backbone, config.backbone_weights)  # a name it declares
  try:
    return model.ModelConfig.from_config(config)
  except LsattnError as error:
    raise LsattnError(f"config: {error}") from None
