"""XLA compiler options for the jitted train, eval and prediction steps.

On CPU, XLA (jaxlib 0.10) hands dots, reductions and convolutions to the
YNNPACK library by default. On GoogLeNet's and the Conv-LSTM's shapes,
YNNPACK's convolutions run slower than XLA's own (Eigen) kernels, while its
dots and reductions are the faster ones. So by default lsattn keeps YNNPACK
for dots and reductions only (the measurements: benchmarks/README.md,
"Results: current code"). The config key ``xla_cpu_ynn_fusions`` chooses;
other backends ignore it, and a jaxlib without the option falls back to
XLA's defaults with a warning.

Two more choices of how (never what) the steps compute live here: which
kernels the model uses (``config.kernels``: `resolve_kernels` is the one
place that decides, and 'generic' also drops the options above) and which
parts recompute their activations in the backward pass (``config.remat``,
`remat_parts`, `REMAT_POLICY`).
"""

from __future__ import annotations

import functools
import os
import pathlib
import warnings

import jax
import numpy as np

from lsattn.errors import LsattnError

# XLA's per-compile option and the names it accepts (xla/backends/cpu/*fusion*).
YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
YNN_FUSION_KINDS = ("dot", "reduce", "eltwise", "individual_dot", "individual_convolution")
XLA_DEFAULT = "xla_default"

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


# JAX's persistent compilation cache: a run (and every resume) reuses what an
# earlier run with the same programs compiled, instead of compiling again.
CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"


def use_compilation_cache(config) -> str | None:
  """Turns on JAX's persistent compilation cache in ``config.compilation_cache_dir``.

  Call before the first compilation. ``''`` turns it off. A folder set in
  the environment (``JAX_COMPILATION_CACHE_DIR``, read by JAX itself) wins.

  Returns:
    The cache folder, or None when off.

  Raises:
    LsattnError: the folder cannot be created (names the key and the path).
  """
  if os.environ.get(CACHE_ENV):
    return os.environ[CACHE_ENV]
  folder = config.compilation_cache_dir
  if not folder:
    return None
  path = pathlib.Path(folder).expanduser()
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as error:
    raise LsattnError(f"config.compilation_cache_dir = {folder!r}: cannot create {path} "
                      f"({error.strerror}); choose another folder, or '' for no cache") from None
  jax.config.update("jax_compilation_cache_dir", str(path))
  return str(path)


def parse_ynn_fusions(value: str) -> tuple[str, ...] | None:
  """'dot,reduce' -> ('dot', 'reduce'); '' -> () (no YNNPACK); 'xla_default' -> None."""
  if not isinstance(value, str):
    raise LsattnError(f"config.xla_cpu_ynn_fusions = {value!r}: expected a comma list of "
                      f"{YNN_FUSION_KINDS}, '' or {XLA_DEFAULT!r}")
  if value.strip() == XLA_DEFAULT:
    return None
  kinds = tuple(kind.strip() for kind in value.split(",") if kind.strip())
  unknown = [kind for kind in kinds if kind not in YNN_FUSION_KINDS]
  if unknown:
    raise LsattnError(f"config.xla_cpu_ynn_fusions = {value!r}: unknown kind(s) {unknown}; "
                      f"expected a comma list of {YNN_FUSION_KINDS}, '' (none) or "
                      f"{XLA_DEFAULT!r} (XLA's own choice)")
  return kinds


def cpu_options(ynn_fusions: str) -> dict[str, str]:
  """The compiler options that give YNNPACK exactly the `ynn_fusions` op kinds."""
  kinds = parse_ynn_fusions(ynn_fusions)
  if kinds is None:
    return {}
  return {YNN_OPTION: ",".join(f"LIBRARY_FUSION_TYPE_{kind.upper()}" for kind in kinds)}


@functools.cache
def _accepted(options: tuple[tuple[str, str], ...]) -> bool:
  """Whether this jaxlib's CPU compiler knows `options` (a tiny probe compile)."""
  try:
    jax.jit(lambda x: x + 1).lower(np.zeros(2, np.float32)).compile(
        compiler_options=dict(options))
  except Exception as error:  # XLA reports unknown options as a runtime error.
    warnings.warn(f"this jaxlib rejects the compiler options {dict(options)} "
                  f"({type(error).__name__}: {str(error)[:200]}); compiling with XLA's "
                  f"defaults instead", RuntimeWarning, stacklevel=3)
    return False
  return True


def step_compiler_options(config, platform: str | None = None) -> dict[str, str] | None:
  """`jax.jit(..., compiler_options=...)` for a run's steps on `platform`.

  None (XLA's defaults) off CPU, with ``config.kernels`` resolving to
  'generic', when the config asks for XLA's default, or when this jaxlib
  does not know the option.
  """
  platform = platform or jax.default_backend()
  if platform != "cpu" or resolve_kernels(config.kernels, platform) != "cpu":
    return None
  options = cpu_options(config.xla_cpu_ynn_fusions)
  if not options or not _accepted(tuple(sorted(options.items()))):
    return None
  return options
