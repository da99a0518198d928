"""Measuring tools shared by the benchmarks: machine description, timing, ceilings.

The ceiling is what XLA achieves on this machine for the work the model is
made of: a large float32 matmul and GoogLeNet's largest convolutions, forward
and forward+backward. Timings are wall clock and this process's CPU time.
"""

from __future__ import annotations

import os
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np


def machine_description() -> dict:
  """CPU model, cores, jax version, backend and devices."""
  cpu_model = ""
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu_model = line.split(":", 1)[1].strip()
        break
  except OSError:
    cpu_model = platform.processor()
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  import jaxlib
  return {
      "cpu_model": cpu_model,
      "cpu_count": os.cpu_count(),
      "usable_cores": usable,
      "load_average_at_start": load_average(),
      "jax": jax.__version__,
      "jaxlib": jaxlib.__version__,
      "backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
      "python": platform.python_version(),
  }


def load_average() -> list[float]:
  """1, 5 and 15 minute load averages (empty where the OS does not report them)."""
  try:
    return list(os.getloadavg())
  except (AttributeError, OSError):
    return []


def summarise(seconds: list[float]) -> dict:
  """Median, min, max and quartiles of per-call times, in milliseconds."""
  ms = np.asarray(seconds) * 1e3
  q1, median, q3 = np.percentile(ms, [25, 50, 75])
  return {"median": float(median), "min": float(ms.min()), "max": float(ms.max()),
          "q1": float(q1), "q3": float(q3), "n": int(ms.size)}


def xla_flops(compiled) -> float | None:
  """FLOPs XLA counts for a compiled computation (dict or [dict] by jax version)."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # Some backends do not implement it.
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  return float(analysis["flops"])


MEMORY_FIELDS = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes",
                 "alias_size_in_bytes")


def xla_memory(compiled) -> dict[str, int | None] | None:
  """XLA's memory analysis of a compiled computation (bytes), None where the
  backend gives none. temp: the program's own buffers (activations kept for
  the backward pass, workspaces); alias: outputs that reuse donated inputs."""
  try:
    analysis = compiled.memory_analysis()
  except Exception:  # Some backends do not implement it.
    return None
  if analysis is None:
    return None
  return {name: (None if getattr(analysis, name, None) is None
                 else int(getattr(analysis, name))) for name in MEMORY_FIELDS}


def time_calls(call_fn, *, warmup: int, repeats: int, iters: int
               ) -> tuple[list[float], list[float]]:
  """Seconds per call, wall clock and this process's CPU time (all threads).

  `repeats` samples, each the mean of `iters` blocked calls. On a shared
  machine the wall time also counts other processes' use of the cores; the
  CPU time counts only the work done here (it is the cores in use times the
  wall time when the machine is idle).
  """
  for _ in range(warmup):
    jax.block_until_ready(call_fn())
  wall, cpu = [], []
  for _ in range(repeats):
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(iters):
      out = call_fn()
    jax.block_until_ready(out)
    wall.append((time.perf_counter() - start) / iters)
    cpu.append((time.process_time() - start_cpu) / iters)
  return wall, cpu


def xla_peak_memory(compiled) -> int | None:
  """XLA's ``peak_memory_in_bytes`` of a compiled computation; None where the backend
  gives none. On the CPU backend (jaxlib 0.10) it is the entry's arguments plus its
  non-aliased outputs, without the temporaries (checked on small programs and on the
  steps): there `memory_footprint` is the step's memory."""
  try:
    peak = getattr(compiled.memory_analysis(), "peak_memory_in_bytes", None)
  except Exception:  # Some backends do not implement it.
    return None
  return None if peak is None else int(peak)


def memory_footprint(memory: dict | None) -> int | None:
  """Bytes a compiled step holds while it runs, from `xla_memory`: temporaries,
  arguments and outputs, counting outputs that reuse donated arguments once. XLA's
  CPU backend allocates the temporaries as one block per execution."""
  if not memory or any(memory.get(name) is None for name in MEMORY_FIELDS):
    return None
  return (memory["temp_size_in_bytes"] + memory["argument_size_in_bytes"]
          + memory["output_size_in_bytes"] - memory["alias_size_in_bytes"])


def time_interleaved(call_fns: dict, *, warmup: int, repeats: int, iters: int
                     ) -> tuple[dict[object, tuple[list[float], list[float]]], list[list[float]]]:
  """`time_calls` for several functions in turn (A B A B ...), for comparisons on a
  shared machine: `repeats` rounds, each one sample (the mean of `iters` blocked
  calls) of every function in order, so a change of load during the run falls on
  all of them alike and per-round ratios pair samples taken seconds apart.

  Returns:
    name -> (wall seconds, CPU seconds), one per round; and the load average
    at the start of each round.
  """
  for call_fn in call_fns.values():
    for _ in range(warmup):
      jax.block_until_ready(call_fn())
  samples = {name: ([], []) for name in call_fns}
  loads = []
  for _ in range(repeats):
    loads.append(load_average())
    for name, call_fn in call_fns.items():
      wall, cpu = time_calls(call_fn, warmup=0, repeats=1, iters=iters)
      samples[name][0].extend(wall)
      samples[name][1].extend(cpu)
  return samples, loads


def compile_timed(jitted, args) -> tuple[dict, object]:
  """Lowers and compiles `jitted` for `args`, each timed; returns (entry, compiled)."""
  start = time.perf_counter()
  lowered = jitted.lower(*args)
  lower_s = time.perf_counter() - start
  start, start_cpu = time.perf_counter(), time.process_time()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  compile_cpu_s = time.process_time() - start_cpu
  return {"lower_s": lower_s, "compile_s": compile_s, "compile_cpu_s": compile_cpu_s,
          "flops": xla_flops(compiled), "memory": xla_memory(compiled),
          "peak_memory_bytes": xla_peak_memory(compiled)}, compiled


def measure_ceiling(*, matmul_size: int, conv_batch: int, repeats: int,
                    option_sets: dict[str, dict | None] | None = None) -> dict:
  """GFLOP/s of a float32 matmul and of GoogLeNet's largest convolutions via XLA.

  Each entry of `option_sets` (label -> XLA compiler options, None = XLA's
  defaults) is measured; the ceiling (top-level ``matmul_gflops``,
  ``matmul_gflops_best``, ``convs``) is the entry whose matmul is fastest, so
  a step compiled with other options is never compared with a slower matmul.
  """
  option_sets = option_sets or {"xla_default": None}
  variants = {label: _measure_kernels(matmul_size, conv_batch, repeats, options)
              for label, options in option_sets.items()}
  best = max(variants, key=lambda label: variants[label]["matmul_gflops"])
  return {"matmul_size": matmul_size, "conv_batch": conv_batch, "ceiling_options": best,
          **variants[best], "variants": variants}


def _measure_kernels(matmul_size: int, conv_batch: int, repeats: int,
                     options: dict | None) -> dict:
  """The matmul and convolution rates under one set of compiler options."""
  compile_kwargs = {"compiler_options": options} if options is not None else {}
  rng = np.random.default_rng(0)
  result = {"compiler_options": options}
  a = jnp.asarray(rng.standard_normal((matmul_size, matmul_size), np.float32))
  b = jnp.asarray(rng.standard_normal((matmul_size, matmul_size), np.float32))
  matmul = jax.jit(jnp.matmul).lower(a, b).compile(**compile_kwargs)
  seconds, _ = time_calls(lambda: matmul(a, b), warmup=2, repeats=repeats, iters=1)
  flops = 2.0 * matmul_size ** 3
  result["matmul_xla_flops"] = xla_flops(matmul)
  result["matmul_ms"] = summarise(seconds)
  result["matmul_gflops"] = flops / statistics.median(seconds) / 1e9
  result["matmul_gflops_best"] = flops / min(seconds) / 1e9
  # (name, spatial size, in channels, out channels, kernel) at 224x224 input: conv2
  # and inception 3b's 3x3 are the backbone's two largest convolutions by FLOPs.
  convs = [("conv2_3x3_56x56_64to192", 56, 64, 192, 3),
           ("inception_3b_3x3_28x28_128to192", 28, 128, 192, 3),
           ("inception_4e_3x3_14x14_160to320", 14, 160, 320, 3)]
  result["convs"] = {}
  for name, size, cin, cout, kernel in convs:
    x = jnp.asarray(rng.standard_normal((conv_batch, size, size, cin), np.float32))
    w = jnp.asarray(rng.standard_normal((kernel, kernel, cin, cout), np.float32) * 0.05)
    conv_fn = lambda x, w: jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    forward = jax.jit(conv_fn).lower(x, w).compile(**compile_kwargs)
    both = jax.jit(jax.grad(lambda x, w: jnp.sum(conv_fn(x, w) ** 2), argnums=(0, 1))
                   ).lower(x, w).compile(**compile_kwargs)
    flops = 2.0 * conv_batch * size * size * kernel * kernel * cin * cout
    fwd_s, _ = time_calls(lambda: forward(x, w), warmup=2, repeats=repeats, iters=1)
    both_s, _ = time_calls(lambda: both(x, w), warmup=2, repeats=repeats, iters=1)
    result["convs"][name] = {
        "forward_gflops": flops / statistics.median(fwd_s) / 1e9,
        "forward_backward_gflops": 3 * flops / statistics.median(both_s) / 1e9,
        "forward_ms": statistics.median(fwd_s) * 1e3,
        "forward_backward_ms": statistics.median(both_s) * 1e3,
        "forward_xla_flops": xla_flops(forward),
    }
  return result
