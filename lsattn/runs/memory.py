"""How much memory a run's step may use: the host's and each accelerator's.

`experiment` compares these with `training.memory_needed` before anything is
written or compiled, so a typo that asks for an enormous model
(``hidden_size=1000000``) is one line instead of a hang.
"""

from __future__ import annotations

import os
import pathlib

import jax

# cgroup v2, then v1: a container's limit, when below the machine's memory.
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def host_bytes() -> int:
  """This host's physical memory, or its container's limit when that is lower."""
  total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  for name in _CGROUP_LIMITS:
    try:
      text = pathlib.Path(name).read_text().strip()
    except OSError:
      continue
    if text.isdigit():
      total = min(total, int(text))
  return total


def device_bytes() -> int | None:
  """The memory of the smallest local accelerator (its allocator's limit), or None on
  CPU, where the host's memory is the limit."""
  if jax.default_backend() == "cpu":
    return None
  limits = [(device.memory_stats() or {}).get("bytes_limit") for device in jax.local_devices()]
  limits = [limit for limit in limits if limit]
  return min(limits) if limits else None
