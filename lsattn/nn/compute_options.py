"""How (never what) the model computes: the kernels by backend and what remat recomputes.

Two choices that change speed and memory, never results: which formulation of
the backend-sensitive ops the model uses (``kernels``: `resolve_kernels` is
the one place that decides) and which parts recompute their activations in
the backward pass (``remat``: `remat_parts`, `REMAT_POLICY`). The nn pieces
and the backbones read them here; the XLA compiler options that go with
'cpu' kernels are the run's (`lsattn.runs.compilation`).
"""

from __future__ import annotations

import jax

from lsattn.errors import LsattnError

# config.kernels: which formulation of the backend-sensitive ops the model uses.
KERNELS = ("auto", "cpu", "generic")


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
  """
  if kernels not in KERNELS:
    raise LsattnError(f"config.kernels = {kernels!r}: expected one of {KERNELS}")
  if kernels != "auto":
    return kernels
  return "cpu" if (platform or jax.default_backend()) == "cpu" else "generic"


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
