"""XLA compiler options for the jitted train, eval and prediction steps.

On CPU, XLA (jaxlib 0.10) hands dots, reductions and convolutions to the
YNNPACK library by default. On GoogLeNet's and the Conv-LSTM's shapes,
YNNPACK's convolutions run slower than XLA's own (Eigen) kernels, while its
dots and reductions are the faster ones. So by default lsattn keeps YNNPACK
for dots and reductions only (the measurements: benchmarks/results/2026-11-25-cpu.md,
"Results: current code"). The config key ``xla_cpu_ynn_fusions`` chooses;
other backends ignore it, and a jaxlib without the option falls back to
XLA's defaults with a warning.

Which kernels the model uses (``kernels``) and what remat recomputes are
the model's choices (`lsattn.nn.compute_options`); 'generic' kernels also
drop the options above. The persistent compilation cache is opened here.

Everything CPU-only is chosen by the platform the program runs on: the
options above only for a CPU backend, 'auto' kernels and the scan's unroll
when traced (for the platforms of `export_for`, not the host's, when a
program is lowered for another platform). lsattn sets no collective
implementation: JAX picks Gloo on CPU and NCCL or ICI elsewhere at run time.
"""

from __future__ import annotations

import functools
import os
import pathlib
import warnings

import jax
import numpy as np

from lsattn.errors import LsattnError
from lsattn.nn.compute_options import lowering_for, resolve_kernels

# XLA's per-compile option and the names it accepts (xla/backends/cpu/*fusion*).
YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
YNN_FUSION_KINDS = ("dot", "reduce", "eltwise", "individual_dot", "individual_convolution")
XLA_DEFAULT = "xla_default"

# JAX's persistent compilation cache: a run (and every resume) reuses what an
# earlier run with the same programs compiled, instead of compiling again.
CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"


def use_compilation_cache(folder: str) -> str | None:
  """Turns on JAX's persistent compilation cache in `folder` (``config.compilation_cache_dir``).

  Call before the first compilation. ``''`` turns it off. A folder set in
  the environment (``JAX_COMPILATION_CACHE_DIR``, read by JAX itself) wins.

  Returns:
    The cache folder, or None when off.

  Raises:
    LsattnError: the folder cannot be created (names the key and the path).
  """
  if os.environ.get(CACHE_ENV):
    return os.environ[CACHE_ENV]
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


def step_compiler_options(kernels: str, ynn_fusions: str,
                          platform: str | None = None) -> dict[str, str] | None:
  """`jax.jit(..., compiler_options=...)` for a run's steps on `platform`.

  Args:
    kernels: ``config.kernels``.
    ynn_fusions: ``config.xla_cpu_ynn_fusions``.
    platform: the backend the steps run on (None: JAX's default backend).

  Returns:
    None (XLA's defaults) off CPU, with `kernels` resolving to 'generic',
    when `ynn_fusions` asks for XLA's default, or when this jaxlib does not
    know the option.
  """
  platform = platform or jax.default_backend()
  if platform != "cpu" or resolve_kernels(kernels, platform) != "cpu":
    return None
  options = cpu_options(ynn_fusions)
  if not options or not _accepted(tuple(sorted(options.items()))):
    return None
  return options


def export_for(function, platforms, *args, **jit_kwargs) -> jax.export.Exported:
  """``jax.export`` of `function` for `platforms`, traced with their choices.

  `function` is traced afresh inside `compute_options.lowering_for(platforms)`,
  so 'auto' kernels and the scan's auto unroll are those of `platforms`, not
  of the host that lowers (a CPU-only machine can lower for 'cuda' and
  'tpu'). No compiler option travels with an export: the platform that runs
  it compiles it with its own defaults.

  Args:
    function: a pure function (not jitted: it is jitted here, with `jit_kwargs`).
    platforms: e.g. ('cuda',), ('tpu',), ('cpu', 'cuda').
    *args: its arguments, arrays or `jax.ShapeDtypeStruct`s (symbolic shapes allowed).
  """
  platforms = tuple(platforms)

  @functools.wraps(function)
  def traced(*call_args, **call_kwargs):  # a new function: no trace cached for another platform
    return function(*call_args, **call_kwargs)

  with lowering_for(platforms):
    return jax.export.export(jax.jit(traced, **jit_kwargs), platforms=platforms)(*args)
