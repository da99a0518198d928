"""Checkpoints with orbax: save every K steps, keep the last n, resume.

A checkpoint ``<workdir>/checkpoints/<step>/`` holds two items:

* ``state``: the whole `TrainState` (params, batch-norm statistics, optimiser
  state, step, non-finite counters). The data position and the Gumbel noise
  are pure functions of (seed, step), so the step is all a resume needs.
* ``meta``: JSON with the *shape signature* of the run (everything that fixes
  the shapes of the state), free-form facts (channel mean, dataset) and a
  CRC-32 of every array of ``state`` (``checksums``), computed on the host when
  saving and compared when restoring: a damaged step is refused by name, and
  a resume falls back to the previous intact step, saying so (the damaged
  folder is kept as ``<step>.damaged``). Checkpoints saved before lsattn
  recorded checksums restore as they are.

Orbax writes a step into a temporary folder (``<step>.orbax-checkpoint-tmp``)
and renames it when complete, so an interrupted save (killed process, full
disk) is never taken for a checkpoint; leftovers are removed when the manager
starts, and old steps are deleted only after the new one is complete. A save
that fails for lack of disk space raises `LsattnError` naming the folder and
the space the checkpoint needs (orbax's own logged tracebacks of the failed
writes are held back: the line says it all).
See RELIABILITY.md (its tests pass `create_manager` an orbax temporary-path
class that pauses a save before the rename, to kill the process mid-save).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import pathlib
import shutil
import sys
import threading
import zlib
from typing import Any

import jax
import numpy as np
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


CHECKSUM = "crc32"  # of each array's bytes (C order): damage, not tampering, is the threat
DAMAGED_SUFFIX = ".damaged"


def _leaf_name(path) -> str:
  """A key path as 'params/core/w': the same for the saved `TrainState`'s attributes and a
  partial restore's dict keys."""
  parts = []
  for key in path:
    for attribute in ("key", "name", "idx"):
      if hasattr(key, attribute):
        parts.append(str(getattr(key, attribute)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def _host_value(leaf) -> np.ndarray | None:
  """The whole array on this host; None when this process holds only part of it."""
  if isinstance(leaf, jax.Array):
    if leaf.is_fully_replicated:
      return np.asarray(leaf.addressable_data(0))
    if not leaf.is_fully_addressable:
      return None
  return np.asarray(leaf)


def checksums(state) -> dict[str, str]:
  """{array name: CRC-32 of its bytes} of every array of `state` this host holds whole."""
  result = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    value = _host_value(leaf)
    if value is not None:
      result[_leaf_name(path)] = f"{zlib.crc32(np.ascontiguousarray(value).tobytes()):08x}"
  return result


def _nbytes(state) -> int:
  return sum(int(np.prod(np.shape(leaf))) * np.dtype(leaf.dtype).itemsize
             for leaf in jax.tree.leaves(state))


def save(manager: ocp.CheckpointManager, step: int, state, meta: dict, *,
         force: bool = False) -> bool:
  """Saves `state` at `step` (if due, or `force`); True if it saved.

  The meta gets the arrays' checksums (`checksums`), verified by `restore_latest`.

  Raises:
    LsattnError: the files could not be written (full disk, permissions);
      the previous checkpoint is left intact.
  """
  if not (force or manager.should_save(step)):
    return False
  meta = dict(meta, checksums={"algorithm": CHECKSUM, "arrays": checksums(state)})
  try:
    with _write_errors_held_back():
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
    if reason == NO_SPACE:
      free = shutil.disk_usage(manager.directory).free
      reason = (f"{NO_SPACE} in {manager.directory}: the checkpoint needs about "
                f"{_nbytes(state) / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free")
    advice = ("Free disk space (a save needs room for one more checkpoint: the oldest is "
              "deleted only after the new one is complete)" if NO_SPACE in reason else
              "Check that the folder is writable and has free space")
    raise LsattnError(f"could not write checkpoint {manager.directory / str(step)} ({reason}); "
                      f"{kept}. {advice}, then run the same command again: it resumes from "
                      f"the last complete checkpoint.") from None


class _WriteErrorFilter(logging.Filter):
  """Drops orbax's logged failures of a write (absl ERROR records, with tracebacks, from
  its writer threads): `save` raises one line for them."""

  def filter(self, record: logging.LogRecord) -> bool:
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
      text += str(record.exc_info[1])
    return not ("os_error_code" in text or "No space left on device" in text
                or "Permission denied" in text)


@contextlib.contextmanager
def _write_errors_held_back():
  logger, held_back = logging.getLogger("absl"), _WriteErrorFilter()
  logger.addFilter(held_back)
  try:
    yield
  finally:
    logger.removeFilter(held_back)


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
  try:
    return _read_meta(manager, step)
  except Exception as error:  # orbax raises many types for damaged files
    raise LsattnError(str(_Damaged(manager.directory / str(step),
                                   f"is unreadable ({_describe(error)})"))) from None


def _read_meta(manager: ocp.CheckpointManager, step: int) -> dict:
  return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta


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
                   partial: bool = False, fall_back: bool = False):
  """(state, meta, step) of the latest checkpoint, or None if there is none.

  Args:
    abstract_state: the shapes to restore (`abstract_like`).
    partial: `abstract_state` is a dict of some of the saved state's entries
      (e.g. params and batch-norm statistics, without the optimiser's): only
      those are read, and returned as a dict.
    fall_back: a damaged latest step (unreadable, or an array whose checksum
      is not the one saved) is renamed ``<step>.damaged``, saying so, and the
      step before it is restored instead (a resume of a single process);
      False, or a job of several processes, refuses it.

  Raises:
    LsattnError: the checkpoint was written by a run with different shapes
      (names the keys), or its files are damaged (names the folder; not with
      `fall_back` in a single process: when every step is damaged, None).
  """
  while True:
    step = manager.latest_step()
    if step is None:
      return None
    try:
      return _restore_step(manager, step, abstract_state, signature, partial)
    except _Damaged as damaged:
      # A job of several processes refuses: they would each rename the folder.
      if not fall_back or jax.process_count() > 1:
        raise LsattnError(str(damaged)) from None
      path = manager.directory / str(step)
      aside = path.with_name(path.name + DAMAGED_SUFFIX)
      shutil.rmtree(aside, ignore_errors=True)  # an earlier damaged copy of that step
      path.rename(aside)
      manager.reload()
      print(f"Warning: {damaged.reason}. Kept it as {aside}; resuming from the step "
            f"before it.", file=sys.stderr)


class _Damaged(Exception):
  """A checkpoint step whose files are damaged; the message says which and what to do."""

  def __init__(self, path: pathlib.Path, what: str):
    self.reason = f"checkpoint {path} {what}"
    super().__init__(f"{self.reason}; delete that folder to resume from an earlier step")


def _restore_step(manager: ocp.CheckpointManager, step: int, abstract_state, signature: dict,
                  partial: bool):
  path = manager.directory / str(step)
  try:
    meta = _read_meta(manager, step)
  except Exception as error:  # orbax raises many types for damaged files
    raise _Damaged(path, f"is unreadable ({_describe(error)})") from None
  saved = meta.get("signature", {})
  if saved != signature:
    changed = sorted(key for key in set(saved) | set(signature)
                     if saved.get(key) != signature.get(key))
    details = "; ".join(f"{key}: checkpoint {saved.get(key)!r}, config {signature.get(key)!r}"
                        for key in changed)
    raise LsattnError(f"cannot resume from {path}: the config changes "
                      f"the model's shapes ({details}). Use a new --workdir, or restore the "
                      f"old values.")
  try:
    with _quiet_helper_threads():
      restored = manager.restore(step, args=ocp.args.Composite(state=_restore_args(
          abstract_state, partial)))
  except Exception as error:
    raise _Damaged(path, f"is unreadable ({_describe(error)})") from None
  _verify(restored.state, meta, path)
  return restored.state, meta, step


def _verify(state, meta: dict, path: pathlib.Path) -> None:
  """Raises `_Damaged` naming the arrays of `state` whose checksum is not the saved one.

  A checkpoint saved before lsattn recorded checksums has none to compare.
  """
  recorded = meta.get("checksums")
  if not isinstance(recorded, dict) or recorded.get("algorithm") != CHECKSUM:
    return
  saved = recorded.get("arrays", {})
  now = checksums(state)
  differing = sorted(name for name, value in now.items()
                     if name in saved and saved[name] != value)
  if differing:
    shown = ", ".join(differing[:3]) + (f" and {len(differing) - 3} more"
                                        if len(differing) > 3 else "")
    raise _Damaged(path, f"is damaged: {len(differing)} of its arrays are not what was "
                         f"saved (checksums differ): {shown}")


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
