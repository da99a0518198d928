"""How (never what) the model computes: the kernels by backend and what remat recomputes.

Two choices that change speed and memory, never results: which formulation of
the backend-sensitive ops the model uses (``kernels``: `resolve_kernels` is
the one place that decides) and which parts recompute their activations in
the backward pass (``remat``: `remat_parts`, `REMAT_POLICY`). The nn pieces
and the backbones read them here; the XLA compiler options that go with
'cpu' kernels are the run's (`lsattn.runs.compilation`).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Sequence

import jax

from lsattn.errors import LsattnError

# config.kernels: which formulation of the backend-sensitive ops the model uses.
KERNELS = ("auto", "cpu", "generic")

# The platforms a program is traced for, when not the backend it is traced on
# (`lowering_for`): tracing runs on the host, so a program exported for 'cuda'
# from a CPU-only machine would otherwise get the CPU's choices baked in.
_LOWERING_FOR: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "lsattn_lowering_for", default=None)


@contextlib.contextmanager
def lowering_for(platforms: Sequence[str]) -> Iterator[tuple[str, ...]]:
  """Functions traced inside make the choices of `platforms`, not of the host's backend.

  For `jax.export` (and any lowering for another platform): 'auto' kernels
  and the scan's auto unroll are decided at trace time, which happens on the
  host's backend. Inside this context they are decided for `platforms`; a
  program for several platforms gets the CPU's choices only when every one
  of them is 'cpu' ('generic' computes the same function everywhere). Trace
  a function not traced before (jax caches a traced function by identity):
  `lsattn.runs.compilation.export_for` does.
  """
  platforms = tuple(platforms)
  if not platforms:
    raise LsattnError("lowering_for: expected at least one platform")
  token = _LOWERING_FOR.set(platforms)
  try:
    yield platforms
  finally:
    _LOWERING_FOR.reset(token)


def target_platforms() -> tuple[str, ...]:
  """The platforms the program being traced is for: `lowering_for`'s, else JAX's backend."""
  return _LOWERING_FOR.get() or (jax.default_backend(),)


def cpu_only(platform: str | None = None) -> bool:
  """Whether the program runs only on CPU: `platform` if given, else `target_platforms()`."""
  return all(name == "cpu" for name in ((platform,) if platform else target_platforms()))


def resolve_kernels(kernels: str, platform: str | None = None) -> str:
  """The one place that decides the kernels: 'auto' -> 'cpu' on CPU, else 'generic'.

  'cpu' is the formulations measured fastest on this CPU (separable max
  pooling with its own VJP, the mask head as one matmul plus shifted sums,
  1x1 convolutions as matmuls, the YNNPACK options below); 'generic' the
  plain XLA ops (``lax.reduce_window`` with XLA's gradient, convolutions, no
  CPU options), the natural choice on GPU and TPU, where the CPU kernels
  were never measured. Both compute the same function (tests/test_kernels.py).
  Called at trace time (like the scan's auto unroll): resolving when the
  config is read would start JAX's backend before ``jax.distributed``.
  Without `platform`, 'auto' is decided for the platforms traced for
  (`target_platforms`: `lowering_for`'s, else JAX's default backend).
  """
  if kernels not in KERNELS:
    raise LsattnError(f"config.kernels = {kernels!r}: expected one of {KERNELS}")
  if kernels != "auto":
    return kernels
  return "cpu" if cpu_only(platform) else "generic"


# config.remat: which parts of the train step recompute their activations in
# the backward pass instead of storing them (`jax.checkpoint`).
REMATS = ("none", "blocks", "steps", "both")
# Save nothing inside a checkpointed part, keep only its inputs. The
# alternative, `dots_with_no_batch_dims_saveable`, would keep no convolution
# (convolutions are not dots), so in the backbone it saves what this saves,
# and in the core the dots it would keep (the mask head's [B, h, w, sum k*k*m]
# taps, 1x1 projections) are as large as the activations they replace. Ours.
REMAT_POLICY = jax.checkpoint_policies.nothing_saveable


def remat_parts(remat: str) -> tuple[bool, bool]:
  """config.remat -> (inception blocks, recurrent steps) under `jax.checkpoint`."""
  if remat not in REMATS:
    raise LsattnError(f"config.remat = {remat!r}: expected one of {REMATS}")
  return remat in ("blocks", "both"), remat in ("steps", "both")
