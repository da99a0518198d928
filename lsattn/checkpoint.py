"""Checkpoints with orbax: save every K steps, keep the last n, resume.

A checkpoint ``<workdir>/checkpoints/<step>/`` holds two items:

* ``state``: the whole `TrainState` (params, batch-norm statistics, optimiser
  state, step, non-finite counters). The data position and the Gumbel noise
  are pure functions of (seed, step), so the step is all a resume needs.
* ``meta``: JSON with the *shape signature* of the run (everything that fixes
  the shapes of the state) and free-form facts (channel mean, dataset).

Orbax writes a step into a temporary folder and renames it when complete, so
an interrupted save is never taken for a checkpoint; leftovers are removed
when the manager starts.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from lsattn.errors import LsattnError


def shape_signature(config, model_config, image_shape) -> dict[str, Any]:
  """The config values that fix the train state's shapes, as JSON data."""
  signature = dataclasses.asdict(model_config)
  signature["core"].pop("scan_unroll")  # how the loop compiles, not what it computes
  signature["image_shape"] = list(image_shape)
  signature["freeze_backbone"] = bool(config.freeze_backbone)
  signature["learned_loss_weighting"] = bool(config.learned_loss_weighting)
  return _jsonable(signature)


def _jsonable(value):
  if isinstance(value, dict):
    return {key: _jsonable(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(item) for item in value]
  return value


def create_manager(workdir: str | pathlib.Path, *, save_every: int, keep: int
                   ) -> ocp.CheckpointManager:
  directory = pathlib.Path(workdir).expanduser().resolve() / "checkpoints"
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, save_interval_steps=save_every, create=True,
      enable_async_checkpointing=False, cleanup_tmp_directories=True)
  return ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))


def save(manager: ocp.CheckpointManager, step: int, state, meta: dict, *,
         force: bool = False) -> bool:
  """Saves `state` at `step` (if due, or `force`); True if it saved."""
  return manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    meta=ocp.args.JsonSave(meta)),
                      force=force)


def read_meta(manager: ocp.CheckpointManager, step: int) -> dict:
  path = manager.directory / str(step)
  try:
    restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
  except Exception as error:  # orbax raises many types for damaged files
    raise LsattnError(f"checkpoint {path} is unreadable ({type(error).__name__}: {error}); "
                      f"delete that folder to resume from an earlier step") from None
  return restored.meta


def restore_latest(manager: ocp.CheckpointManager, abstract_state, signature: dict):
  """(state, meta, step) of the latest checkpoint, or None if there is none.

  Raises:
    LsattnError: the checkpoint was written by a run with different shapes
      (names the keys), or its files are damaged (names the folder).
  """
  step = manager.latest_step()
  if step is None:
    return None
  meta = read_meta(manager, step)
  saved = meta.get("signature", {})
  if saved != signature:
    changed = sorted(key for key in set(saved) | set(signature)
                     if saved.get(key) != signature.get(key))
    details = "; ".join(f"{key}: checkpoint {saved.get(key)!r}, config {signature.get(key)!r}"
                        for key in changed)
    raise LsattnError(f"cannot resume from {manager.directory / str(step)}: the config changes "
                      f"the model's shapes ({details}). Use a new --workdir, or restore the "
                      f"old values.")
  path = manager.directory / str(step)
  try:
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
  except Exception as error:
    raise LsattnError(f"checkpoint {path} is unreadable ({type(error).__name__}: {error}); "
                      f"delete that folder to resume from an earlier step") from None
  return restored.state, meta, step


def abstract_like(state, sharding=None):
  """ShapeDtypeStructs of `state` (optionally placed with `sharding`)."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)
