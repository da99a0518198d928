r"""Train and eval step throughput of the real model, against the machine's own ceiling.

  python benchmarks/step_throughput.py --image-size 224 --batch-size 8 --json out.jsonl
  python benchmarks/step_throughput.py --image-size 112 --batch-size 8 \
      --sweep steps --sweep scan --json out.jsonl

For every configuration: the jitted train step (`training.make_train_step`,
state donated, batch split over a mesh of ``--devices`` devices as in
`lsattn.experiment`) and eval step (`lsattn.evaluation.loop.make_eval_step`) are lowered and
compiled (each timed on its own), run once (timed: first run), warmed up, then
timed ``--repeats`` times over ``--iters`` calls each, with
`jax.block_until_ready`. Reported: median ms/step with min, max and quartiles,
images/s, XLA's FLOP count of the compiled step (``cost_analysis()``) and the
achieved GFLOP/s, and XLA's memory analysis of each compiled step
(``memory_analysis()``: temporaries, arguments, outputs, aliased outputs, in
bytes; None where the backend gives none), the step's footprint (temporaries +
arguments + outputs - aliased, `measure.memory_footprint`) and XLA's
``peak_memory_in_bytes`` (``peak_memory_bytes``; on CPU the arguments and
outputs only).

``--kernels cpu,generic`` and ``--remat none,both`` (comma lists) measure
every configuration with each value of ``config.kernels`` and ``config.remat``
(lsattn/runs/compilation.py); each record names the value asked for and the
kernels it resolved to. ``--backbone`` sets the base configuration's
``config.backbone`` (lsattn/backbones); ``--sweep backbone`` and ``--sweep
kernels`` measure several around the base, so that ``--backbone
efficientnet_lite0 --sweep backbone --sweep kernels`` measures GoogLeNet
('caffe') and EfficientNet-Lite0 with the base's kernels and
EfficientNet-Lite0 with each kernels value, without GoogLeNet's 'generic'.

``--interleave`` compiles every configuration first (and runs each once),
then times them in turn, one sample of each step per round, ``--repeats``
rounds (A B A B, `measure.time_interleaved`): on a shared machine a change
of load falls on all of them alike. Records then hold the load average at
the start of each round (``round_load_average``) and every sample
(``ms_samples``), so ratios can pair samples of the same round; the printed
ratios give both the ratio of medians and the median per-round ratio.

In the same process the machine's ceiling is measured once (benchmarks/measure.py):
a large float32 matmul and GoogLeNet's dominant convolutions (forward, and
forward+backward) through XLA, under XLA's default compiler options and under
those the steps are compiled with (config.xla_cpu_ynn_fusions, see
lsattn/runs/compilation.py); the ceiling is the faster matmul of the two.
Utilisation = achieved GFLOP/s / ceiling matmul GFLOP/s.

The base configuration is ``--config`` (default configs/default.py, the
paper's pose model); flags override its fields. ``--sweep`` (repeatable) runs
a family of configurations around that base (identical ones are measured once
per run); ``--values NAME=V1,V2`` replaces a sweep's values. One JSON object
per configuration is appended to ``--json``; ``--report FILE`` prints the
tables of saved records. Timings are wall clock and this process's CPU time:
on a shared machine the CPU time is the steadier measure of the work.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import pathlib
import statistics
import sys
import time

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from lsattn.nn import compute_options
from lsattn import backbones, model, training  # noqa: E402
from lsattn.evaluation import loop as eval_loop
from lsattn.nn import core
from lsattn.runs import compilation, parallel
from measure import (compile_timed, load_average, machine_description,  # noqa: E402
                     measure_ceiling, memory_footprint, summarise, time_calls,
                     time_interleaved)

SWEEPS = ("steps", "layers", "batch", "frozen", "baseline", "scan", "ynn", "backbone",
          "kernels")
SWEEP_DEFAULTS = {
    "steps": "1,2,3,4,5,6,7,8",
    "layers": "1,2,3,4",
    "batch": "1,2,4,8,16",
    "frozen": "frozen,end_to_end",
    "baseline": "posenet,layer_spatial",
    "scan": "1,2,4,8",
    # config.xla_cpu_ynn_fusions values, '+' for ',' ('none' = '').
    "ynn": "xla_default,dot+reduce,none",
    "backbone": "caffe,efficientnet_lite0",
    "kernels": "cpu,generic",
}


# ----------------------------------------------------------------------------- model

def _step_options(config, platform=None):
  """The steps' compiler options for a config's kernels and YNNPACK fusions."""
  return compilation.step_compiler_options(config.kernels, config.xla_cpu_ynn_fusions, platform)



def load_config(spec: str):
  """'path/to/config.py[:arg]' -> its get_config(arg) (as train.py reads it)."""
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("benchmark_config", ROOT / path
                                                       if not os.path.isabs(path) else path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


@dataclasses.dataclass(frozen=True)
class Setting:
  """One benchmark configuration (None = keep the base config's value)."""
  batch_size: int | None = None
  image_size: int | None = None
  num_steps: int | None = None
  layers: tuple[str, ...] | None = None
  frozen: bool | None = None
  dtype: str | None = None
  unroll: int | None = None
  variant: str | None = None
  hidden_size: int | None = None
  ynn_fusions: str | None = None  # config.xla_cpu_ynn_fusions
  kernels: str | None = None  # config.kernels
  remat: str | None = None  # config.remat
  backbone: str | None = None  # config.backbone


def apply_setting(base, setting: Setting):
  config = base.copy_and_resolve_references()
  fields = {"batch_size": "batch_size", "image_size": "image_size",
            "num_steps": "num_recurrent_steps", "layers": "candidate_layers",
            "frozen": "freeze_backbone", "dtype": "dtype", "unroll": "scan_unroll",
            "variant": "model_variant", "ynn_fusions": "xla_cpu_ynn_fusions",
            "kernels": "kernels", "remat": "remat", "backbone": "backbone"}
  for name, key in fields.items():
    value = getattr(setting, name)
    if value is not None:
      config[key] = value
  if setting.hidden_size is not None:
    config.hidden_size = config.projection_size = setting.hidden_size
  return config


def fake_batch(batch_size: int, image_size: int, seed: int = 0) -> dict:
  """A pose batch of the pipeline's shapes (ARCHITECTURE.md)."""
  rng = np.random.default_rng(seed)
  orientation = rng.standard_normal((batch_size, 4)).astype(np.float32)
  orientation /= np.linalg.norm(orientation, axis=1, keepdims=True)
  orientation *= np.where(orientation[:, :1] < 0, -1.0, 1.0).astype(np.float32)
  return {"image": (rng.standard_normal((batch_size, image_size, image_size, 3)) * 50
                    ).astype(np.float32),
          "position": rng.standard_normal((batch_size, 3)).astype(np.float32),
          "orientation": orientation}


def initial_state(config, model_config, image_size: int, init: str) -> training.TrainState:
  """The train state: `training.create_train_state` ('library'), or ('fast') the same
  pytree filled on the host without compiling the initialisers.

  'fast' exists because eager initialisation compiles every initialiser and
  GoogLeNet op one at a time (tens of seconds on a busy 2-core CPU); step
  timings do not depend on the values, which are still sensible: LeCun-normal
  kernels, zero biases, unit scales and variances, zero optimiser moments.
  """
  key = jax.random.key(config.seed)
  create_fn = lambda k: training.create_train_state(k, config, model_config,
                                                    (image_size, image_size, 3))
  if init == "library":
    return create_fn(key)
  if init != "fast":
    raise ValueError(f"Unsupported init {init!r}")
  rng = np.random.default_rng(config.seed)

  def fill(path, leaf):
    names = [str(getattr(entry, "key", getattr(entry, "name", ""))) for entry in path]
    if names[0] == "params" and len(leaf.shape) >= 2:
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(leaf.dtype)
    if names[0] in ("params", "model_state") and names[-1] in ("scale", "var"):
      return np.ones(leaf.shape, leaf.dtype)
    return np.zeros(leaf.shape, leaf.dtype)

  abstract = jax.eval_shape(create_fn, key)
  return jax.tree_util.tree_map_with_path(fill, abstract)


class TrainStepRunner:
  """The compiled train step of one config with its (donated) state, ready to call.

  Attributes:
    config, model_config: what is measured.
    mesh: devices the batch is split over (parameters replicated).
    batch: a fake pose batch of the config's shapes, on the mesh.
    init_s: seconds to build the initial state.
    compile: {'lower_s', 'compile_s', 'flops'} of the train step.
  """

  def __init__(self, config, *, devices: int | None = None, init: str = "library"):
    self.config = config
    self.model_config = model.ModelConfig.from_config(config)
    self.mesh = parallel.create_mesh(jax.devices()[:devices] if devices else None)
    self.replicated = parallel.replicated(self.mesh)
    start = time.perf_counter()
    self.state = parallel.replicate(
        initial_state(config, self.model_config, config.image_size, init), self.mesh)
    jax.block_until_ready(self.state)
    self.init_s = time.perf_counter() - start
    self.batch = self.shard(fake_batch(config.batch_size, config.image_size))
    self.rng = jax.random.key(1)
    self.compiler_options = _step_options(config)
    train_jit = jax.jit(training.make_train_step(config, self.model_config), donate_argnums=0,
                        out_shardings=(self.replicated, self.replicated),
                        compiler_options=self.compiler_options)
    self.compile, self.compiled = compile_timed(train_jit, (self.state, self.batch, self.rng))

  def shard(self, batch: dict) -> dict:
    """Host (numpy) batch -> arrays split over the mesh."""
    return parallel.shard_batch(batch, self.mesh)

  def __call__(self, batch: dict | None = None):
    """One train step (on the fake batch by default); returns (state, metrics)."""
    self.state, metrics = self.compiled(self.state, self.batch if batch is None else batch,
                                        self.rng)
    return self.state, metrics


def scan_keeps_loop(num_steps: int, unroll: int) -> bool:
  """Whether `jax.lax.scan(length=num_steps, unroll=unroll)` compiles to a while loop.

  jax unrolls completely only for unroll=0 or unroll == length > 1: a scan of
  length 1 with unroll=1 (or True) keeps a one-trip while loop. XLA's cost
  analysis counts a while loop's body once, whatever its trip count.
  """
  return unroll != 0 and not (unroll != 1 and unroll == num_steps)


def describe(runner: TrainStepRunner) -> dict:
  model_config, config = runner.model_config, runner.config
  uses_core = model_config.variant != "posenet"
  unroll = core._unroll(model_config.core) if uses_core else None
  return {
      "variant": model_config.variant, "batch_size": config.batch_size,
      "image_size": config.image_size,
      "num_steps": model_config.core.num_steps if uses_core else 0,
      "layers": list(model_config.layers), "frozen": bool(config.freeze_backbone),
      "dtype": model_config.dtype, "hidden_size": model_config.core.hidden_size,
      "scan_unroll": model_config.core.scan_unroll,
      "scan_unroll_effective": unroll,
      "scan_while_loop": uses_core and scan_keeps_loop(model_config.core.num_steps, unroll),
      "backbone": model_config.backbone, "devices": runner.mesh.size,
      "xla_cpu_ynn_fusions": config.xla_cpu_ynn_fusions,
      "compiler_options": runner.compiler_options,
      "kernels": config.kernels,
      "kernels_effective": compute_options.resolve_kernels(config.kernels),
      "remat": config.remat,
  }


class StepMeasurement:
  """One config's train (and eval) step, compiled and run once on creation, then timed
  in samples: alone (`measure_config`) or in turn with others (`--interleave`).

  Attributes:
    calls: 'train' (and 'eval') -> a function running that step once.
    entries: the same keys -> compile times, FLOPs, memory and first-run time.
  """

  def __init__(self, config, *, devices: int | None, eval_step: bool, init: str):
    self.config = config
    self.runner = runner = TrainStepRunner(config, devices=devices, init=init)
    self.record = {"config": describe(runner), "init": init, "init_s": runner.init_s}
    self.entries, self.calls = {"train": dict(runner.compile)}, {"train": runner}
    if eval_step:
      eval_jit = jax.jit(eval_loop.make_eval_step(runner.model_config),
                         out_shardings=runner.replicated,
                         compiler_options=runner.compiler_options)
      # The train step donates the state: read the parameters at every call.
      eval_args = lambda: (runner.state.params, runner.state.model_state, runner.batch["image"])
      self.entries["eval"], eval_compiled = compile_timed(eval_jit, eval_args())
      self.calls["eval"] = lambda: eval_compiled(*eval_args())
    for part, call_fn in self.calls.items():
      start = time.perf_counter()
      jax.block_until_ready(call_fn())
      self.entries[part]["first_run_s"] = time.perf_counter() - start

  def result(self, samples: dict, *, matmul_gflops: float | None) -> dict:
    """The JSON-able record, from part -> (wall seconds, CPU seconds) per sample."""
    record = dict(self.record)
    for part, entry in self.entries.items():
      wall, cpu = samples[part]
      entry = dict(entry, ms=summarise(wall), cpu_ms=summarise(cpu),
                   ms_samples=[1e3 * s for s in wall], cpu_ms_samples=[1e3 * s for s in cpu])
      _rates(entry, self.config.batch_size, matmul_gflops)
      record[part] = entry
    record["loss_finite"] = bool(np.isfinite(float(self.runner()[1]["loss"])))
    return record


def measure_config(config, *, repeats: int, iters: int, warmup: int, devices: int | None,
                   eval_step: bool = True, matmul_gflops: float | None = None,
                   init: str = "library") -> dict:
  """Compiles and times the train (and eval) step of one config; a JSON-able record."""
  measurement = StepMeasurement(config, devices=devices, eval_step=eval_step, init=init)
  samples = {part: time_calls(call_fn, warmup=warmup, repeats=repeats, iters=iters)
             for part, call_fn in measurement.calls.items()}
  record = measurement.result(samples, matmul_gflops=matmul_gflops)
  record.update(repeats=repeats, iters=iters, warmup=warmup, interleaved=False)
  return record


def _rates(entry: dict, batch_size: int, matmul_gflops: float | None) -> None:
  seconds = entry["ms"]["median"] / 1e3
  entry["images_per_s"] = batch_size / seconds
  entry["gflops_per_s"] = entry["flops"] / seconds / 1e9 if entry["flops"] else None
  entry["utilisation"] = (entry["gflops_per_s"] / matmul_gflops
                          if entry["gflops_per_s"] and matmul_gflops else None)


# ----------------------------------------------------------------------------- sweeps


def sweep_settings(name: str, values: str, base: Setting, taps: tuple[str, ...]
                   ) -> list[Setting]:
  """The configurations of one sweep around `base`; `taps`: the backbone's, shallow to deep."""
  items = [v.strip() for v in values.split(",") if v.strip()]
  replace = lambda **kw: dataclasses.replace(base, **kw)
  if name == "steps":
    return [replace(num_steps=int(v)) for v in items]
  if name == "layers":
    # Suffixes of the taps (GoogLeNet: 3b/4c/4e/5b): every set needs the backbone up
    # to its deepest tap, so only the attention core's work changes with their number.
    return [replace(layers=taps[len(taps) - int(v):]) for v in items]
  if name == "batch":
    return [replace(batch_size=int(v)) for v in items]
  if name == "frozen":
    return [replace(frozen=(v == "frozen")) for v in items]
  if name == "baseline":
    return [replace(variant=v) for v in items]
  if name == "ynn":
    return [replace(ynn_fusions="" if v == "none" else v.replace("+", ",")) for v in items]
  if name == "backbone":
    return [replace(backbone=v) for v in items]
  if name == "kernels":
    return [replace(kernels=v) for v in items]
  if name == "scan":
    return [replace(num_steps=int(v), unroll=unroll) for v in items
            for unroll in sorted({1, int(v)})]
  raise ValueError(f"Unsupported sweep {name!r}; choose from {SWEEPS}")


def linear_fit(xs, ys) -> dict:
  """Least-squares y = a + b x, with the largest relative residual."""
  xs, ys = np.asarray(xs, float), np.asarray(ys, float)
  slope, intercept = np.polyfit(xs, ys, 1)
  fitted = intercept + slope * xs
  return {"intercept": float(intercept), "slope": float(slope),
          "max_relative_residual": float(np.max(np.abs(ys - fitted) / ys)),
          "r2": float(1 - np.sum((ys - fitted) ** 2) / max(np.sum((ys - ys.mean()) ** 2), 1e-30))}


# ----------------------------------------------------------------------------- output


def _fmt(value, spec=".1f"):
  return "-" if value is None else format(value, spec)


def _unroll_cell(config: dict) -> str:
  unroll = config["scan_unroll_effective"]
  if unroll is None:
    return "-"
  loop = config.get("scan_while_loop", scan_keeps_loop(config["num_steps"], unroll))
  return f"{unroll}{' L' if loop else ''}"


def _ynn_cell(config: dict) -> str:
  """The run's config.xla_cpu_ynn_fusions ('?' for records that predate the key)."""
  value = config.get("xla_cpu_ynn_fusions")
  if config.get("kernels_effective") == "generic":
    return "off"  # generic kernels compile without the CPU options
  return "?" if value is None else (value.replace(",", "+") or "none")


def _temp_mb(entry: dict) -> float | None:
  """The compiled step's temporaries in MB (None: not measured, or no analysis)."""
  memory = entry.get("memory") or {}
  temp = memory.get("temp_size_in_bytes")
  return None if temp is None else temp / 1e6


def _footprint_mb(entry: dict) -> float | None:
  """The compiled step's footprint in MB (`measure.memory_footprint`; None: not measured)."""
  footprint = memory_footprint(entry.get("memory"))
  return None if footprint is None else footprint / 1e6


def print_ratios(records: list[dict]) -> None:
  """Each configuration's step time over the run's first one: the ratio of medians and,
  for interleaved runs, the median of the per-round ratios (samples seconds apart)."""
  if len(records) < 2:
    return
  first = records[0]
  print(f"\nratios to the first configuration ({_label(first['config'])}): ratio of medians, "
        f"and [median of per-round ratios] when interleaved")
  for record in records[1:]:
    cells = []
    for part in ("train", "eval"):
      for measure in ("ms", "cpu_ms"):
        this, base = (record.get(part) or {}).get(measure), (first.get(part) or {}).get(measure)
        if not this or not base:
          continue
        kind = "wall" if measure == "ms" else "cpu"
        cell = f"{part} {kind} {this['median'] / base['median']:.2f}x"
        this_s = record[part].get(f"{measure}_samples")
        base_s = first[part].get(f"{measure}_samples")
        if record.get("interleaved") and first.get("interleaved") and this_s and base_s:
          cell += f" [{statistics.median(a / b for a, b in zip(this_s, base_s)):.2f}x]"
        cells.append(cell)
    print(f"  {_label(record['config'])}: " + ", ".join(cells))


def _label(config: dict) -> str:
  return (f"{config.get('backbone', '?')} {config['variant']} {config['image_size']}px "
          f"B{config['batch_size']} N{config['num_steps']} "
          f"{'frozen' if config['frozen'] else 'end to end'} "
          f"kernels={config.get('kernels_effective', '?')} remat={config.get('remat', '?')}")


def print_table(records: list[dict], ceiling: dict) -> None:
  # Records before 2026-11-25 measured the ceiling under XLA's defaults only.
  variants = ceiling.get("variants", {"xla_default": ceiling})
  for label, kernels in variants.items():
    chosen = " (the ceiling)" if len(variants) > 1 and label == ceiling.get(
        "ceiling_options") else ""
    print(f"\ncompiler options {label}{chosen}: matmul {ceiling['matmul_size']}^2 float32 "
          f"{kernels['matmul_gflops']:.1f} GFLOP/s (best {kernels['matmul_gflops_best']:.1f})")
    for name, conv in kernels["convs"].items():
      print(f"  conv {name} (batch {ceiling['conv_batch']}): forward "
            f"{conv['forward_gflops']:.1f} GFLOP/s, forward+backward "
            f"{conv['forward_backward_gflops']:.1f} GFLOP/s")
  header = ("sweep", "backbone", "variant", "B", "img", "N", "k", "frozen", "dtype", "unroll",
            "ynn", "kernels", "remat", "train ms [min-max]", "cpu ms", "img/s",
            "lower+compile s", "GFLOP/step", "GFLOP/s", "util", "temp MB", "footprint MB",
            "eval ms", "eval cpu ms", "eval img/s", "eval GFLOP/s", "eval util",
            "eval footprint MB", "eval compile s")
  rows = []
  for r in records:
    c, t, e = r["config"], r["train"], r.get("eval")
    rows.append((
        r.get("sweep", "-"), c.get("backbone", "?"), c["variant"], str(c["batch_size"]),
        str(c["image_size"]),
        str(c["num_steps"]), str(len(c["layers"])), "y" if c["frozen"] else "n", c["dtype"],
        _unroll_cell(c), _ynn_cell(c), c.get("kernels_effective", "?"), c.get("remat", "?"),
        f"{t['ms']['median']:.0f} [{t['ms']['min']:.0f}-{t['ms']['max']:.0f}]",
        _fmt(t.get("cpu_ms") and t["cpu_ms"]["median"], ".0f"),
        _fmt(t["images_per_s"]), f"{t['lower_s']:.1f}+{t['compile_s']:.1f}",
        _fmt(t["flops"] and t["flops"] / 1e9), _fmt(t["gflops_per_s"]),
        _fmt(t["utilisation"] and 100 * t["utilisation"], ".0f") + "%",
        _fmt(_temp_mb(t)), _fmt(_footprint_mb(t)), _fmt(e and e["ms"]["median"], ".0f"),
        _fmt(e and e.get("cpu_ms") and e["cpu_ms"]["median"], ".0f"),
        _fmt(e and e["images_per_s"]), _fmt(e and e["gflops_per_s"]),
        _fmt(e and e["utilisation"] and 100 * e["utilisation"], ".0f") + ("%" if e else ""),
        _fmt(e and _footprint_mb(e)), _fmt(e and e["lower_s"] + e["compile_s"])))
  widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
  line = lambda cells: "  ".join(cell.rjust(w) for cell, w in zip(cells, widths))
  print(line(header))
  for row in rows:
    print(line(row))
  if any(row[9].endswith("L") for row in rows):
    print("L: the N steps run in a while loop; XLA's cost analysis counts its body once, so "
          "GFLOP/step, GFLOP/s and util of these rows are undercounts.")


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="configs/default.py",
                      help="base config file[:arg], relative to the repository root")
  parser.add_argument("--batch-size", type=int)
  parser.add_argument("--image-size", type=int)
  parser.add_argument("--steps", type=int, help="N, recurrent steps")
  parser.add_argument("--layers", help="candidate layers, comma list (e.g. 3b,4c,4e,5b)")
  frozen = parser.add_mutually_exclusive_group()
  frozen.add_argument("--frozen", dest="frozen", action="store_true", default=None)
  frozen.add_argument("--end-to-end", dest="frozen", action="store_false")
  parser.add_argument("--dtype", choices=("float32", "bfloat16"))
  parser.add_argument("--unroll", type=int,
                      help="CoreConfig.scan_unroll: 0 = auto (full unroll on CPU), 1 = one "
                           "loop body")
  parser.add_argument("--variant", choices=model.MODEL_VARIANTS)
  parser.add_argument("--hidden-size", type=int, help="Conv-LSTM and projection width")
  parser.add_argument("--ynn-fusions", help="config.xla_cpu_ynn_fusions (e.g. dot,reduce; '' = "
                                            "none; xla_default = XLA's choice)")
  parser.add_argument("--kernels", default="",
                      help="config.kernels values, comma list (auto, cpu, generic): every "
                           "configuration is measured with each (default: the config's)")
  parser.add_argument("--remat", default="",
                      help="config.remat values, comma list (none, blocks, steps, both): every "
                           "configuration is measured with each (default: the config's)")
  parser.add_argument("--backbone", choices=backbones.names(),
                      help="config.backbone of the base configuration (--sweep backbone "
                           "measures several)")
  parser.add_argument("--interleave", action="store_true",
                      help="compile every configuration first, then time them in turn, one "
                           "sample each per round (A B A B), --repeats rounds")
  parser.add_argument("--devices", type=int, help="devices in the mesh (default: all)")
  parser.add_argument("--repeats", type=int, default=5, help="timed samples per step")
  parser.add_argument("--iters", type=int, default=1, help="calls per timed sample")
  parser.add_argument("--warmup", type=int, default=1, help="untimed calls after the first")
  parser.add_argument("--init", choices=("library", "fast"), default="library",
                      help="initial state: training.create_train_state, or host-filled "
                           "(same shapes, no initialiser compiles; see initial_state)")
  parser.add_argument("--no-eval", dest="eval_step", action="store_false",
                      help="time the train step only")
  parser.add_argument("--sweep", action="append", choices=SWEEPS, default=[],
                      help="repeatable; without it the base configuration alone is measured")
  parser.add_argument("--values", action="append", default=[],
                      help="NAME=V1,V2 (repeatable) replaces sweep NAME's values; a bare "
                           "V1,V2 applies to a single --sweep")
  parser.add_argument("--matmul-size", type=int, default=2048)
  parser.add_argument("--conv-batch", type=int, default=8)
  parser.add_argument("--ceiling-repeats", type=int, default=10)
  parser.add_argument("--json", help="append one JSON object per configuration to this file")
  parser.add_argument("--tag", default="", help="free text stored in every record")
  parser.add_argument("--report", help="print the table of a JSON-lines file and exit (no "
                                       "measurement)")
  args = parser.parse_args(argv)
  values = {}
  for item in args.values:
    name, _, listed = item.rpartition("=")
    if not name and len(args.sweep) != 1:
      parser.error("a bare --values needs exactly one --sweep (else write NAME=V1,V2)")
    values[name or args.sweep[0]] = listed
  if set(values) - set(args.sweep):
    parser.error(f"--values for sweeps not requested: {sorted(set(values) - set(args.sweep))}")
  args.values = values
  return args


def report(path: str) -> list[dict]:
  """Prints the tables of saved records, one per run (records sharing a ceiling)."""
  records = [json.loads(line) for line in open(path)]
  records = [r for r in records if r.get("benchmark") == "step_throughput"]
  runs: dict = {}
  for record in records:
    runs.setdefault((record["date"], record["tag"]), []).append(record)
  for (date, tag), run in runs.items():
    print(f"\n== {date} {tag}: {run[0]['machine']['cpu_model']}, "
          f"{run[0]['machine']['usable_cores']} cores, jax {run[0]['machine']['jax']}")
    print_table(run, run[0]["ceiling"])
    print_ratios(run)
    print_fits(run)
  return records


def print_fits(records: list[dict]) -> None:
  """Linear fits of train ms against N, the number of layers and the batch size."""
  for name, x_fn in (("steps", lambda c: c["num_steps"]), ("layers", lambda c: len(c["layers"])),
                     ("batch", lambda c: c["batch_size"])):
    chosen = [r for r in records if r["sweep"] == name]
    if len(chosen) < 3:
      continue
    xs = [x_fn(r["config"]) for r in chosen]
    for measure in ("ms", "cpu_ms"):
      if all(measure in r["train"] for r in chosen):
        fit = linear_fit(xs, [r["train"][measure]["median"] for r in chosen])
        print(f"train {measure} vs {name}: {fit['intercept']:.0f} + {fit['slope']:.1f} x "
              f"(r2 {fit['r2']:.3f}, largest residual "
              f"{100 * fit['max_relative_residual']:.0f}%)")


def make_plan(args, base_config) -> list[tuple[str, Setting]]:
  """(sweep, Setting) of every configuration the arguments ask for, in measuring order."""
  base = Setting(batch_size=args.batch_size, image_size=args.image_size, num_steps=args.steps,
                 layers=tuple(args.layers.split(",")) if args.layers else None,
                 frozen=args.frozen, dtype=args.dtype, unroll=args.unroll,
                 variant=args.variant, hidden_size=args.hidden_size,
                 ynn_fusions=args.ynn_fusions, backbone=args.backbone)
  plan = [("base", base)] if not args.sweep else [
      (name, setting) for name in args.sweep
      for setting in sweep_settings(name, args.values.get(name, SWEEP_DEFAULTS[name]), base,
                                    backbones.get(args.backbone or base_config.backbone).taps)]
  listed = lambda flag: [v.strip() for v in flag.split(",") if v.strip()] or [None]
  # --kernels and --remat multiply the plan; the kernels sweep's own value wins.
  return [(name, dataclasses.replace(setting, kernels=setting.kernels or k, remat=r))
          for name, setting in plan for k in listed(args.kernels) for r in listed(args.remat)]


def main(argv=None) -> list[dict]:
  args = parse_args(argv)
  if args.report:
    return report(args.report)
  base_config = load_config(args.config)
  plan = make_plan(args, base_config)

  machine = machine_description()
  print(f"{machine['cpu_model']}, {machine['usable_cores']} usable cores, jax {machine['jax']} "
        f"({machine['backend']}, {len(machine['devices'])} device(s)), load "
        f"{machine['load_average_at_start']}", flush=True)
  start = time.perf_counter()
  # The matmul ceiling under XLA's defaults and under every option set the steps use.
  option_sets = {"xla_default": None}
  for _, setting in plan:
    config = apply_setting(base_config, setting)
    options = _step_options(config)
    if options is not None:
      option_sets[config.xla_cpu_ynn_fusions.replace(",", "+") or "none"] = options
  ceiling = measure_ceiling(matmul_size=args.matmul_size, conv_batch=args.conv_batch,
                            repeats=args.ceiling_repeats, option_sets=option_sets)
  print(f"ceiling measured in {time.perf_counter() - start:.1f} s: matmul "
        f"{ceiling['matmul_gflops']:.1f} GFLOP/s ({ceiling['ceiling_options']})", flush=True)
  date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  measured = []
  for sweep, setting in plan:
    config = apply_setting(base_config, setting)
    # scan_unroll=0 means "auto": compare configurations by what is compiled.
    resolved = config.copy_and_resolve_references()
    resolved.scan_unroll = core._unroll(model.ModelConfig.from_config(config).core)
    resolved.kernels = compute_options.resolve_kernels(config.kernels)  # 'auto' likewise
    measured.append((sweep, config, json.dumps(resolved.to_dict(), sort_keys=True, default=str)))
  cache = measure_interleaved(measured, args, ceiling["matmul_gflops"]) if args.interleave else {}
  records = []
  for sweep, config, key in measured:
    if key not in cache:
      start, load_before = time.perf_counter(), load_average()
      cache[key] = measure_config(config, repeats=args.repeats, iters=args.iters,
                                  warmup=args.warmup, devices=args.devices,
                                  eval_step=args.eval_step, init=args.init,
                                  matmul_gflops=ceiling["matmul_gflops"])
      cache[key]["wall_s"] = time.perf_counter() - start
      cache[key]["load_average"] = {"before": load_before, "after": load_average()}
    record = {"benchmark": "step_throughput", "date": date, "tag": args.tag, "sweep": sweep,
              "base_config": args.config, **cache[key], "ceiling": ceiling, "machine": machine}
    records.append(record)
    t = record["train"]
    print(f"[{sweep}] {record['config']}: train {t['ms']['median']:.0f} ms "
          f"({t['images_per_s']:.1f} img/s), compile {t['lower_s'] + t['compile_s']:.1f} s, "
          f"{cache[key]['wall_s']:.0f} s wall", flush=True)
    if args.json:
      with open(args.json, "a") as file:
        file.write(json.dumps(record) + "\n")
  print_table(records, ceiling)
  print_ratios(records)
  print_fits(records)
  return records


def measure_interleaved(measured: list, args, matmul_gflops: float) -> dict:
  """--interleave: every distinct configuration compiled (and run once), then all timed
  in turn, --repeats rounds (`measure.time_interleaved`); key -> record."""
  measurements, prepared = {}, {}
  for _, config, key in measured:
    if key not in measurements:
      start, load_before = time.perf_counter(), load_average()
      measurements[key] = StepMeasurement(config, devices=args.devices,
                                          eval_step=args.eval_step, init=args.init)
      prepared[key] = {"wall_s": time.perf_counter() - start,
                       "load_average": {"before": load_before, "after": load_average()}}
      print(f"compiled {describe(measurements[key].runner)} in {prepared[key]['wall_s']:.0f} s",
            flush=True)
  calls = {(key, part): call_fn for key, measurement in measurements.items()
           for part, call_fn in measurement.calls.items()}
  start = time.perf_counter()
  samples, loads = time_interleaved(calls, warmup=args.warmup, repeats=args.repeats,
                                    iters=args.iters)
  timing_s = time.perf_counter() - start
  records = {}
  for key, measurement in measurements.items():
    records[key] = measurement.result({part: samples[(key, part)] for part in measurement.calls},
                                      matmul_gflops=matmul_gflops)
    records[key].update(repeats=args.repeats, iters=args.iters, warmup=args.warmup,
                        interleaved=True, round_load_average=loads, interleaved_timing_s=timing_s,
                        **prepared[key])
  return records


if __name__ == "__main__":
  main()
