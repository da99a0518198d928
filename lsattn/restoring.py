"""Restoring a trained run: written once for eval.py, predict.py and export.py.

`restore(workdir, config)` takes the run's config (its own ``config.json``,
or a given config merged with it by `run_folder.resolve`), checks it, starts
what must start before anything compiles (`start`), and restores from the
run's latest checkpoint what a trained model needs (`TrainedVariables`: the
parameters and batch-norm statistics) onto the device mesh, against the
config's shape signature. The shapes come from the model alone
(`jax.eval_shape` of `model.init_model`): no optimiser is built and its
state is not read, so nothing here depends on training. Evaluation adds the
dataset (`experiment.evaluate`), prediction the image preparation
(`prediction.load_predictor`), export the serving function
(`exporting.export_run`).
"""

from __future__ import annotations

import dataclasses
import pathlib

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections

from lsattn import config_checks, model
from lsattn.runs import checkpoint, compilation, parallel, run_folder


@flax.struct.dataclass
class TrainedVariables:
  """What evaluation, prediction and export read of a checkpoint's train state.

  Attributes:
    params: the model's parameters {'backbone', 'core', 'head', ...} (without
      the learned loss weights, which only training uses).
    model_state: batch-norm statistics {'backbone', 'core'}.
    skipped_steps: int32 [], training updates skipped for non-finite values.
  """
  params: Any
  model_state: Any
  skipped_steps: jax.Array


@dataclasses.dataclass(frozen=True)
class Restored:
  """A run's latest checkpoint and what it was restored with.

  Attributes:
    config: the config used (the run's, with a given config's run-time keys).
    overrides: `run_folder.resolve`'s {key: {'run', 'used'}} ({} when none;
      None for a run without config.json).
    model_config: the checked model of `config`.
    mesh: the device mesh; `state` is replicated over it.
    signature: the shape signature the checkpoint matched.
    state: the restored parameters and statistics.
    meta: the checkpoint's meta (channel mean, class names, dataset).
    step: the checkpoint's step.
    folder: the checkpoint's folder.
  """
  config: ml_collections.ConfigDict
  overrides: dict | None
  model_config: model.ModelConfig
  mesh: jax.sharding.Mesh
  signature: dict
  state: TrainedVariables
  meta: dict
  step: int
  folder: pathlib.Path


def start(config) -> model.ModelConfig:
  """What every command does before anything compiles: checks the config, opens the
  compilation cache, starts a multi-process job, checks the evaluation batch.

  Returns:
    The model config.
  """
  model_config = config_checks.check_config(config)
  compilation.use_compilation_cache(config.compilation_cache_dir)
  parallel.initialize_distributed(config.jax_distributed, config.heartbeat_timeout_seconds)
  parallel.check_batch_size(config.eval_batch_size, "eval_batch_size")
  return model_config


def restore(workdir: str | pathlib.Path, config=None) -> Restored:
  """Restores the latest checkpoint of `workdir` (reading only).

  Args:
    workdir: the run folder.
    config: None to use the run's own config (<workdir>/config.json), or a
      config merged with it by `run_folder.resolve` (keys that change the
      model or its input are refused); required for runs without config.json.

  Raises:
    LsattnError: no checkpoint ("train first", checked before any compute),
      a config that changes the run (keys named), a bad value, or a
      checkpoint of other shapes or with damaged files.
  """
  workdir = run_folder.check_workdir(workdir)
  checkpoint.require_checkpoint(workdir)
  config, overrides = run_folder.resolve(workdir, config)
  model_config = start(config)
  mesh = parallel.create_mesh()
  image_shape = (config.image_size, config.image_size, 3)
  signature = checkpoint.shape_signature(config, model_config, image_shape)
  template = abstract_variables(model_config, image_shape)
  restored, meta, step, folder = checkpoint.restore_run(
      workdir, checkpoint.abstract_like(template, parallel.replicated(mesh)), signature,
      partial=True)
  return Restored(config, overrides, model_config, mesh, signature,
                  TrainedVariables(**restored), meta, int(step), folder)


def abstract_variables(model_config: model.ModelConfig, image_shape) -> dict:
  """The shapes and dtypes of a trained model's `TrainedVariables`, as the dict a
  checkpoint's train state holds them in; from the model alone (the backbone's
  weights file is not read: the checkpoint holds the weights)."""
  params, model_state = jax.eval_shape(
      lambda: model.init_model(jax.random.key(0), model_config, tuple(image_shape)))
  return {"params": params, "model_state": model_state,
          "skipped_steps": jax.ShapeDtypeStruct((), jnp.int32)}
