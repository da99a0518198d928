"""Data parallelism with `jax.jit` and shardings: one code path for 1 CPU,
N GPUs or many hosts.

The mesh has one axis, ``'data'``, over every device of every process.
Batches are split along it; parameters and optimiser state are replicated.
Each process loads only its own slice of the global batch
(`process_batch_slice`) and `shard_batch` assembles the global array.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lsattn.errors import LsattnError

DATA_AXIS = "data"


def initialize_distributed(requested: bool, heartbeat_timeout_seconds: int = 100) -> None:
  """Starts `jax.distributed` when asked by the config or the environment.

  On clusters (SLURM, Open MPI, Cloud TPU) `jax.distributed.initialize()`
  finds the coordinator itself; elsewhere set ``JAX_COORDINATOR_ADDRESS``,
  ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``.

  Args:
    heartbeat_timeout_seconds: a process silent for this long counts as dead
      and the job's coordination service stops every other process (JAX's
      ``heartbeat_timeout_seconds``; config ``heartbeat_timeout_seconds``).
      A peer that dies during a collective is noticed at once (see
      `stop_on_peer_failure`); this bounds the other waits.
  """
  from_environment = "JAX_COORDINATOR_ADDRESS" in os.environ
  if not (requested or from_environment):
    return
  kwargs = {}
  if from_environment:
    kwargs = dict(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                  num_processes=int(os.environ.get("JAX_NUM_PROCESSES", "1")),
                  process_id=int(os.environ.get("JAX_PROCESS_ID", "0")))
  jax.distributed.initialize(**kwargs, heartbeat_timeout_seconds=heartbeat_timeout_seconds)


# What JAX raises in a survivor when another process of the job has gone: a
# collective whose peer closed its connection (Gloo on CPU; NCCL, ICI elsewhere)
# or the coordination service's verdict on a silent task.
_PEER_FAILURE_SIGNS = ("gloo", "nccl", "connection closed by peer", "connection reset",
                       "heartbeat", "coordination service", "barrier", "unavailable:",
                       "deadline_exceeded")


def peer_failure(error: BaseException) -> LsattnError | None:
  """The one-line LsattnError for `error` if it says a process of the job died, else None."""
  if jax.process_count() == 1 or not isinstance(error, (jax.errors.JaxRuntimeError,
                                                         RuntimeError)):
    return None
  text = str(error).strip()
  if not any(sign in text.lower() for sign in _PEER_FAILURE_SIGNS):
    return None
  first = text.splitlines()[0] if text else type(error).__name__
  first = first if len(first) <= 200 else first[:197] + "..."
  return LsattnError(
      f"process {jax.process_index()} of {jax.process_count()} stopped: another process of "
      f"the job died or was stopped ({first}); see its log. Start every process again with "
      f"the same command to resume from the last checkpoint.")


def stop_on_peer_failure(function):
  """Turns a collective failed by a dead peer into `peer_failure`'s one-line error.

  `cli.run_cli` then exits at once (status 2), skipping JAX's shutdown
  barrier, which would wait ``heartbeat_timeout_seconds`` for the dead peer
  and then abort with a C++ stack trace.
  """

  @functools.wraps(function)
  def wrapped(*args, **kwargs):
    try:
      return function(*args, **kwargs)
    except Exception as error:
      stopped = peer_failure(error)
      if stopped is None:
        raise
      raise stopped from None

  return wrapped


def create_mesh(devices=None) -> Mesh:
  """A 1-D mesh over `devices` (default: all devices of all processes)."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the mesh."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, key: str = "batch_size") -> None:
  """The global batch must split evenly over devices and processes."""
  devices = jax.device_count()
  if batch_size % devices:
    raise LsattnError(f"{key}={batch_size} must be divisible by the number of devices "
                      f"({devices})")


def process_batch_slice(batch_size: int) -> slice:
  """This process's rows of a global batch of `batch_size`."""
  per_process = batch_size // jax.process_count()
  start = jax.process_index() * per_process
  return slice(start, start + per_process)


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """This process's rows (numpy) -> global arrays split over the mesh."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def replicate(tree, mesh: Mesh):
  """Puts a pytree on every device (parameters, optimiser state)."""
  return jax.device_put(tree, replicated(mesh))


def to_host(tree):
  """Global arrays -> numpy on every process (replicated or batch-sharded)."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils
  return multihost_utils.process_allgather(tree, tiled=True)
