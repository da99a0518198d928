"""Checkpoints with orbax: save every K steps, keep the last n, resume.

A checkpoint ``<workdir>/checkpoints/<step>/`` holds two items:

* ``state``: the whole `TrainState` (params, batch-norm statistics, optimiser
  state, step, non-finite counters). The data position and the Gumbel noise
  are pure functions of (seed, step), so the step is all a resume needs.
* ``meta``: JSON with the *shape signature* of the run (everything that fixes
  the shapes of the state) and free-form facts (channel mean, dataset).

Orbax writes a step into a temporary folder (``<step>.orbax-checkpoint-tmp``)
and renames it when complete, so an interrupted save (killed process, full
disk) is never taken for a checkpoint; leftovers are removed when the manager
starts, and old steps are deleted only after the new one is complete. A save
that fails for lack of disk space raises `LsattnError` naming the folder.
See RELIABILITY.md (its tests pass `create_manager` an orbax temporary-path
class that pauses a save before the rename, to kill the process mid-save).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import pathlib
import sys
import threading
from typing import Any

import jax
import orbax.checkpoint as ocp

from lsattn import config_schema
from lsattn.errors import LsattnError


def shape_signature(config, model_config, image_shape) -> dict[str, Any]:
  """What fixes the train state's shapes, as JSON data: each key the schema gives a
  signature path (`config_schema.signature_paths`), at that path, its value resolved by
  the model config (layer names in place of () and '').

  Keys of how a run computes (kernels, remat, scan_unroll) and the torchvision
  input remapping (no shape) have no path, so a run resumes under other values.
  """
  resolved = _flatten(dataclasses.asdict(model_config))
  resolved["image_shape"] = list(image_shape)
  signature: dict[str, Any] = {}
  for key, paths in config_schema.signature_paths().items():
    for path in paths:
      *parents, leaf = path.split(".")
      folder = signature
      for parent in parents:
        folder = folder.setdefault(parent, {})
      folder[leaf] = resolved[path] if path in resolved else config[key]
  return config_schema.jsonable(signature)


def _flatten(values: dict, prefix: str = "") -> dict[str, Any]:
  """{'core': {'num_steps': 3}} -> {'core.num_steps': 3} (and the top-level entries)."""
  flat = {}
  for name, value in values.items():
    flat[prefix + name] = value
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{name}."))
  return flat


NO_SPACE = "no space left on device"


def create_manager(workdir: str | pathlib.Path, *, save_every: int, keep: int,
                   folder: str = "checkpoints",
                   temporary_path_class: type | None = None) -> ocp.CheckpointManager:
  """Checkpoints under <workdir>/<folder> ('best_checkpoint' holds the best on validation).

  Args:
    temporary_path_class: orbax's class for a save in progress (None: its
      default, an atomic rename); the reliability tests pass one that pauses.
  """
  directory = pathlib.Path(workdir).expanduser().resolve() / folder
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, save_interval_steps=save_every, create=True,
      enable_async_checkpointing=False, cleanup_tmp_directories=True,
      temporary_path_class=temporary_path_class)
  return ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))


def save(manager: ocp.CheckpointManager, step: int, state, meta: dict, *,
         force: bool = False) -> bool:
  """Saves `state` at `step` (if due, or `force`); True if it saved.

  Raises:
    LsattnError: the files could not be written (full disk, permissions);
      the previous checkpoint is left intact.
  """
  try:
    return manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                      meta=ocp.args.JsonSave(meta)),
                        force=force)
  except Exception as error:
    if not _is_write_error(error):
      raise
    previous = manager.latest_step()
    kept = (f"the previous checkpoint {manager.directory / str(previous)} is intact"
            if previous is not None else "no earlier checkpoint exists")
    reason = _describe(error)
    advice = ("Free disk space (a save needs room for one more checkpoint: the oldest is "
              "deleted only after the new one is complete)" if reason == NO_SPACE else
              "Check that the folder is writable and has free space")
    raise LsattnError(f"could not write checkpoint {manager.directory / str(step)} ({reason}); "
                      f"{kept}. {advice}, then run the same command again: it resumes from "
                      f"the last complete checkpoint.") from None


def _causes(error: BaseException):
  """`error` and the exceptions it was raised from, outermost first."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def _is_write_error(error: BaseException) -> bool:
  # Python writers raise OSError; TensorStore (the array writer) raises
  # ValueError carrying the OS error: "... No space left on device [os_error_code='28']".
  return any(isinstance(cause, OSError) or "os_error_code" in str(cause)
             for cause in _causes(error))


def _describe(error: BaseException) -> str:
  """NO_SPACE, or the first line of the innermost cause (orbax wraps it in long dumps)."""
  causes = list(_causes(error))
  if any(getattr(cause, "errno", None) == errno.ENOSPC or "No space left on device" in str(cause)
         for cause in causes):
    return NO_SPACE
  innermost = causes[-1]
  lines = str(innermost).strip().splitlines() or [""]
  text = f"{type(innermost).__name__}: {lines[0]}"
  return text if len(text) <= 300 else text[:297] + "..."


def read_meta(manager: ocp.CheckpointManager, step: int) -> dict:
  path = manager.directory / str(step)
  try:
    restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
  except Exception as error:  # orbax raises many types for damaged files
    raise LsattnError(f"checkpoint {path} is unreadable ({_describe(error)}); "
                      f"delete that folder to resume from an earlier step") from None
  return restored.meta


def _no_checkpoint(directory: pathlib.Path, workdir: pathlib.Path) -> LsattnError:
  return LsattnError(f"no checkpoint in {directory}: train first with train.py "
                     f"--workdir={workdir}")


def _reading_manager(workdir: pathlib.Path, folder: str = "checkpoints") -> ocp.CheckpointManager:
  """A manager that never writes to, or cleans, the run folder (training may be running).

  Not orbax's `read_only=True`, which logs warnings on every start: nothing
  here creates folders, removes temporary ones or saves.
  """
  directory = workdir.resolve() / folder
  if not directory.is_dir():
    raise _no_checkpoint(directory, workdir)
  options = ocp.CheckpointManagerOptions(create=False, cleanup_tmp_directories=False,
                                         save_root_metadata=False,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))


def require_checkpoint(workdir: str | pathlib.Path) -> None:
  """Raises the "no checkpoint in …: train first" LsattnError unless the run has one.

  Cheap (no restore): callers check before building datasets or states. Reads
  folder names only (orbax renames a step's folder to its number once complete):
  an orbax manager would start JAX's backend, before a multi-process eval.py has
  called `jax.distributed.initialize`.
  """
  workdir = pathlib.Path(workdir).expanduser()
  directory = workdir.resolve() / "checkpoints"
  if not (directory.is_dir() and any(path.name.isdigit() and path.is_dir()
                                     for path in directory.iterdir())):
    raise _no_checkpoint(directory, workdir)


def restore_run(workdir: str | pathlib.Path, abstract_state, signature: dict, *,
                partial: bool = False, folder: str = "checkpoints"
                ) -> tuple[Any, dict, int, pathlib.Path]:
  """(state, meta, step, folder) of a run's latest checkpoint, for eval.py and predict.py.

  Reads only: the run folder is neither created nor cleaned.

  Raises:
    LsattnError: no checkpoint ("train first"), a config with other shapes,
      or damaged files (see `restore_latest`).
  """
  workdir = pathlib.Path(workdir).expanduser()
  # A manager of its own: one that saved in this process has bound the state's
  # handler to full restores (`restore_latest`'s `partial`).
  manager = _reading_manager(workdir, folder)
  restored = restore_latest(manager, abstract_state, signature, partial=partial)
  if restored is None:
    raise _no_checkpoint(manager.directory, workdir)
  state, meta, step = restored
  return state, meta, step, manager.directory / str(step)


def restore_latest(manager: ocp.CheckpointManager, abstract_state, signature: dict, *,
                   partial: bool = False):
  """(state, meta, step) of the latest checkpoint, or None if there is none.

  Args:
    abstract_state: the shapes to restore (`abstract_like`).
    partial: `abstract_state` is a dict of some of the saved state's entries
      (e.g. params and batch-norm statistics, without the optimiser's): only
      those are read, and returned as a dict.

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
    with _quiet_helper_threads():
      restored = manager.restore(step, args=ocp.args.Composite(state=_restore_args(
          abstract_state, partial)))
  except Exception as error:
    raise LsattnError(f"checkpoint {path} is unreadable ({_describe(error)}); "
                      f"delete that folder to resume from an earlier step") from None
  return restored.state, meta, step


def _restore_args(abstract_state, partial: bool):
  if not partial:
    return ocp.args.StandardRestore(abstract_state)
  return ocp.args.PyTreeRestore(
      item=abstract_state, partial_restore=True,
      restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state))


@contextlib.contextmanager
def _quiet_helper_threads():
  """Silences orbax's helper threads while a restore runs, and only them.

  When a damaged checkpoint fails to read, TensorStore callbacks still
  running on threads the restore started hit orbax's closed event loop and
  print tracebacks ("Event loop is closed") around our one-line error, also
  after the error is raised. So: during the restore, exceptions of threads
  started by it and unraisable exceptions are dropped; after a failed
  restore, only those threads' exceptions and "Event loop is closed"
  unraisables are (the rest reach the previous hooks); after a successful
  one the previous hooks are back.
  """
  thread_hook, unraisable_hook = threading.excepthook, sys.unraisablehook
  before = set(threading.enumerate())
  helpers = None  # the restore's threads still alive when it failed; None while it runs

  def thread_filter(args):
    started_by_restore = (args.thread not in before if helpers is None
                          else args.thread in helpers)
    if not started_by_restore:
      thread_hook(args)

  def unraisable_filter(args):
    if helpers is None or "Event loop is closed" in str(args.exc_value):
      return
    unraisable_hook(args)

  threading.excepthook, sys.unraisablehook = thread_filter, unraisable_filter
  try:
    yield
  except BaseException:
    helpers = set(threading.enumerate()) - before
    raise
  threading.excepthook, sys.unraisablehook = thread_hook, unraisable_hook


def abstract_like(state, sharding=None):
  """ShapeDtypeStructs of `state` (optionally placed with `sharding`)."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)
