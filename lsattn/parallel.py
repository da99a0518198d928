"""Data parallelism with `jax.jit` and shardings: one code path for 1 CPU,
N GPUs or many hosts.

The mesh has one axis, ``'data'``, over every device of every process.
Batches are split along it; parameters and optimiser state are replicated.
Each process loads only its own slice of the global batch
(`process_batch_slice`) and `shard_batch` assembles the global array.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lsattn.errors import LsattnError

DATA_AXIS = "data"


def initialize_distributed(requested: bool) -> None:
  """Starts `jax.distributed` when asked by the config or the environment.

  On clusters (SLURM, Open MPI, Cloud TPU) `jax.distributed.initialize()`
  finds the coordinator itself; elsewhere set ``JAX_COORDINATOR_ADDRESS``,
  ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``.
  """
  from_environment = "JAX_COORDINATOR_ADDRESS" in os.environ
  if not (requested or from_environment):
    return
  kwargs = {}
  if from_environment:
    kwargs = dict(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                  num_processes=int(os.environ.get("JAX_NUM_PROCESSES", "1")),
                  process_id=int(os.environ.get("JAX_PROCESS_ID", "0")))
  jax.distributed.initialize(**kwargs)


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
