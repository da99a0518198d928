r"""One command that measures whatever backend jax sees: a GPU, a TPU or this CPU.

  python benchmarks/device_check.py                       # the paper's shapes, 480 s budget
  python benchmarks/device_check.py --budget-s 120        # what fits in 2 minutes
  python benchmarks/device_check.py --backend cuda --json results.jsonl

On a host without network that has jax (with its GPU or TPU plugin), flax,
optax and orbax, install the rest from a folder of wheels, then run it
(docs/accelerators.md)::

  pip install --no-index --find-links=WHEELS -e .

Sections, in this order, each printed as a short table:

1. ``ceiling``: a square matmul (``--matmul-size``) in each ``--dtypes``, on
   the device, in this run (`measure.time_calls`, XLA's FLOP count); on CPU
   also under the steps' compiler options, the faster counting (as
   benchmarks/step_throughput.py does).
2. ``steps``: the train and eval step (`step_throughput.StepMeasurement`,
   state donated, batch over every device) at the paper's shapes
   (configs/default.py: 224x224, batch 40, N = 3, the backbone's four taps)
   for each of ``--backbones`` (GoogLeNet 'caffe' and EfficientNet-Lite0,
   random weights: shapes matter), ``--dtypes`` and ``--modes`` (frozen, end
   to end): compile time, median step time of ``--repeats`` samples,
   images/s, FLOP utilisation against the ceiling of the step's dtype, and
   memory: ``device.memory_stats()['peak_bytes_in_use']`` where the backend
   has it (the process's peak so far, so a later row includes the earlier
   rows' peak), else XLA's compiled memory analysis (temporaries + arguments
   + outputs - aliased, `measure.memory_footprint`).
3. ``pipeline``: the training input pipeline (`lsattn.data.pipeline.TrainBatches`,
   its ``num_threads`` loader threads) at the paper's preset (stored 256x455,
   resize 256x455, crop ``--image-size``, batch ``--batch-size``) on the
   embedded synthetic room, with ``--workers`` threads (default 1, 2, 4, ...
   up to the host's usable cores), beside the images/s of the fastest train
   step measured above.
4. ``demo``: `lsattn.experiment.train_and_evaluate` (what train.py runs) of
   ``--demo-config`` (default configs/demo_pose.py) from scratch to
   ``--demo-steps``: wall time, steps/s and the test split's medians.

``--budget-s`` (default 480): once it is spent no new measurement starts;
the one running ends, and every section says what ran and what did not.
Each measurement appends one JSON object to ``--json`` (default
benchmarks/results/<date>-device-check-<backend>.jsonl) and a last record
(``section`` 'run') lists what ran and what the budget skipped. A
measurement the backend fails (out of memory, say) is a ``failed`` record
and a line; the others still run, and the exit status is 1. Bad input
(an unknown or missing backend, a bad worker count, a budget too small for
any measurement, a missing package) is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "benchmarks"):
  if str(_path) not in sys.path:
    sys.path.insert(0, str(_path))

# Import name -> the package to install (pyproject.toml's dependencies).
PACKAGES = {"jax": "jax", "jaxlib": "jaxlib", "flax": "flax", "optax": "optax",
            "orbax": "orbax-checkpoint", "ml_collections": "ml-collections",
            "tensorflow_datasets": "tensorflow-datasets", "array_record": "array_record",
            "numpy": "numpy", "PIL": "pillow", "skimage": "scikit-image",
            "matplotlib": "matplotlib", "tensorboardX": "tensorboardX", "tqdm": "tqdm",
            "absl": "absl-py", "flatbuffers": "flatbuffers",
            "importlib_resources": "importlib_resources", "etils": "etils"}
INSTALL = "pip install --no-index --find-links=WHEELS -e ."

try:
  import jax
  import numpy as np

  import measure
  import input_pipeline
  import step_throughput
  from lsattn import backbones, experiment
  from lsattn.data import datasets, pipeline
  from lsattn.data.synthetic import room
  from lsattn.errors import LsattnError
except ModuleNotFoundError as _error:
  _top = (_error.name or "").split(".")[0]
  if _top in ("lsattn", "measure", "input_pipeline", "step_throughput", "configs"):
    raise
  print(f"device_check: missing package {PACKAGES.get(_top, _top)!r} (import {_top!r}); "
        f"install lsattn's dependencies with: {INSTALL}", file=sys.stderr)
  raise SystemExit(2)

SECTIONS = ("ceiling", "steps", "pipeline", "demo")
BACKENDS = ("cpu", "gpu", "cuda", "rocm", "tpu")
MODES = ("frozen", "end_to_end")
DTYPES = ("float32", "bfloat16")
# The least budget any measurement fits in: the ceiling's matmuls alone take
# seconds to compile and time on a busy 2-core CPU.
MIN_BUDGET_S = 10.0
PAPER_RESIZE = (256, 455)


class UsageError(Exception):
  """Bad input: printed as one line, exit status 2."""


class Budget:
  """Seconds left of ``--budget-s``; once spent, no new measurement starts."""

  def __init__(self, seconds: float):
    self.seconds, self.start = seconds, time.perf_counter()
    self.ran: list[str] = []
    self.skipped: list[str] = []
    self.failed: list[str] = []

  def elapsed(self) -> float:
    return time.perf_counter() - self.start

  def allows(self, what: str) -> bool:
    if self.elapsed() >= self.seconds:
      self.skipped.append(what)
      return False
    self.ran.append(what)
    return True


# ----------------------------------------------------------------------------- arguments


def _positive_ints(flag: str, text: str) -> list[int]:
  try:
    values = [int(v) for v in text.split(",") if v.strip()]
  except ValueError:
    values = []
  if not values or any(v < 1 for v in values):
    raise UsageError(f"{flag}={text!r}: expected positive whole numbers, comma separated "
                     f"(e.g. 1,2,4)")
  return values


def _choices(flag: str, text: str, allowed) -> list[str]:
  values = [v.strip() for v in text.split(",") if v.strip()]
  unknown = [v for v in values if v not in allowed]
  if unknown or not values:
    raise UsageError(f"{flag}={text!r}: expected a comma list of {', '.join(allowed)}")
  return values


def default_workers(cores: int) -> list[int]:
  """1, 2, 4, ... up to `cores`, and `cores` itself."""
  counts, count = [], 1
  while count < cores:
    counts.append(count)
    count *= 2
  return counts + [cores]


def usable_cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--backend", help=f"one of {', '.join(BACKENDS)} (default: jax's own "
                                        f"choice); must be present on this host")
  parser.add_argument("--budget-s", type=float, default=480.0,
                      help="seconds after which no new measurement starts")
  parser.add_argument("--image-size", type=int, default=224, help="crop side (paper: 224)")
  parser.add_argument("--batch-size", type=int, default=40, help="global batch (paper: 40)")
  parser.add_argument("--steps", type=int, default=3, help="recurrent steps N (paper: 3)")
  parser.add_argument("--backbones", default="caffe,efficientnet_lite0",
                      help="comma list of lsattn/backbones members")
  parser.add_argument("--dtypes", default="float32,bfloat16", help="comma list")
  parser.add_argument("--modes", default="frozen,end_to_end", help="comma list")
  parser.add_argument("--repeats", type=int, default=5, help="timed samples per step")
  parser.add_argument("--warmup", type=int, default=1, help="untimed calls after the first")
  parser.add_argument("--matmul-size", type=int,
                      help="side of the ceiling's matmul (default 2048 on CPU, 8192 elsewhere)")
  parser.add_argument("--workers", help="input pipeline thread counts, comma list (default "
                                        "1,2,4,... up to the host's usable cores)")
  parser.add_argument("--pipeline-batches", type=int, default=10,
                      help="timed batches per repeat of the pipeline")
  parser.add_argument("--pipeline-repeats", type=int, default=3)
  parser.add_argument("--data-dir", default="runs/data",
                      help="where the embedded dataset is built (once) and reused")
  parser.add_argument("--scene-frames", type=int, default=0,
                      help="frames per sequence of a small synthetic room built under "
                           "--data-dir (0: the embedded room as the demo builds it)")
  parser.add_argument("--demo-config", default="configs/demo_pose.py",
                      help="config[:arg] of the demo training")
  parser.add_argument("--demo-steps", type=int, default=200, help="demo training steps")
  parser.add_argument("--sections", default=",".join(SECTIONS), help="comma list")
  parser.add_argument("--json", help="append the records here (default "
                                     "benchmarks/results/<date>-device-check-<backend>.jsonl)")
  parser.add_argument("--tag", default="", help="free text stored in every record")
  args = parser.parse_args(argv)
  if args.backend is not None and args.backend not in BACKENDS:
    raise UsageError(f"--backend={args.backend!r}: unknown backend; expected one of "
                     f"{', '.join(BACKENDS)}")
  if not args.budget_s >= MIN_BUDGET_S:
    raise UsageError(f"--budget-s={args.budget_s:g}: too small for any measurement; give at "
                     f"least {MIN_BUDGET_S:g} s (the ceiling's matmuls alone take seconds)")
  for flag in ("image_size", "batch_size", "steps", "repeats", "pipeline_batches",
               "pipeline_repeats", "demo_steps"):
    if getattr(args, flag) < 1:
      raise UsageError(f"--{flag.replace('_', '-')}={getattr(args, flag)}: expected a "
                       f"positive whole number")
  if args.scene_frames < 0 or args.warmup < 0:
    raise UsageError("--scene-frames and --warmup: expected 0 or more")
  args.workers = (_positive_ints("--workers", args.workers) if args.workers is not None
                  else default_workers(usable_cores()))
  args.backbones = _choices("--backbones", args.backbones, backbones.names())
  args.dtypes = _choices("--dtypes", args.dtypes, DTYPES)
  args.modes = _choices("--modes", args.modes, MODES)
  args.sections = _choices("--sections", args.sections, SECTIONS)
  return args


def select_backend(name: str | None) -> str:
  """Makes `name` jax's only platform; the backend jax then uses."""
  if name is not None:
    jax.config.update("jax_platforms", name)
  try:
    return jax.default_backend()
  except Exception as error:  # jax 0.10 raises RuntimeError, or AssertionError for a missing plugin
    first = str(error).strip().splitlines()[0] if str(error).strip() else "no such backend"
    raise UsageError(f"--backend={name}: jax cannot start it on this host ({first[:200]}); "
                     f"install its jax plugin, or leave --backend out") from None


# ----------------------------------------------------------------------------- sections


def measure_ceiling(size: int, dtypes: list[str], option_sets: dict, repeats: int) -> dict:
  """GFLOP/s of a `size`^2 matmul per dtype; the faster of `option_sets` counts."""
  rng = np.random.default_rng(0)
  result = {"matmul_size": size, "dtypes": {}}
  for dtype in dtypes:
    a = jax.device_put(rng.standard_normal((size, size), np.float32).astype(dtype))
    b = jax.device_put(rng.standard_normal((size, size), np.float32).astype(dtype))
    variants = {}
    for label, options in option_sets.items():
      kwargs = {"compiler_options": options} if options else {}
      matmul = jax.jit(jax.numpy.matmul).lower(a, b).compile(**kwargs)
      seconds, _ = measure.time_calls(lambda: matmul(a, b), warmup=2, repeats=repeats, iters=1)
      variants[label] = {"ms": measure.summarise(seconds),
                         "gflops": 2.0 * size ** 3 / statistics.median(seconds) / 1e9,
                         "xla_flops": measure.xla_flops(matmul)}
    best = max(variants, key=lambda label: variants[label]["gflops"])
    result["dtypes"][dtype] = {"gflops": variants[best]["gflops"], "options": best,
                               "variants": variants}
  return result


def device_memory() -> dict | None:
  """The first device's allocator statistics, where the backend keeps them (not CPU)."""
  try:
    stats = jax.local_devices()[0].memory_stats()
  except Exception:  # Backends without the call.
    return None
  return dict(stats) if stats else None


def step_config(args, backbone: str, dtype: str, mode: str):
  config = step_throughput.load_config("configs/default.py")
  config.backbone = backbone
  config.candidate_layers = ()  # the member's taps (four for GoogLeNet and Lite0)
  config.fixed_layer = ""
  config.backbone_weights = ""  # random: shapes matter
  config.dtype = dtype
  config.freeze_backbone = mode == "frozen"
  config.image_size, config.batch_size = args.image_size, args.batch_size
  config.num_recurrent_steps = args.steps
  return config


def measure_step(config, args, ceiling: dict) -> dict:
  """One configuration's train and eval step (`step_throughput.StepMeasurement`)."""
  start = time.perf_counter()
  measurement = step_throughput.StepMeasurement(config, devices=None, eval_step=True,
                                                init="fast")
  samples = {part: measure.time_calls(call, warmup=args.warmup, repeats=args.repeats, iters=1)
             for part, call in measurement.calls.items()}
  gflops = ceiling["dtypes"].get(config.dtype, {}).get("gflops")
  record = measurement.result(samples, matmul_gflops=gflops)
  record["wall_s"] = time.perf_counter() - start
  record["ceiling_gflops"] = gflops
  memory = device_memory()
  record["device_memory"] = memory
  for part in ("train", "eval"):
    entry = record[part]
    footprint = measure.memory_footprint(entry.get("memory"))
    if memory and memory.get("peak_bytes_in_use") is not None:
      entry["peak_bytes"], entry["peak_source"] = int(memory["peak_bytes_in_use"]), \
          "device.memory_stats peak_bytes_in_use (process peak so far)"
    else:
      entry["peak_bytes"], entry["peak_source"] = footprint, "XLA memory analysis footprint"
  del measurement
  return record


def prepare_scene(args) -> tuple:
  """(builder, data_dir, manual_dir, seconds): the embedded synthetic room, built once in
  --data-dir (a small one with --scene-frames); seconds to write and build it (or reuse)."""
  start = time.perf_counter()
  return (*_prepare_scene(args), time.perf_counter() - start)


def _prepare_scene(args):
  dataset = "seven_scenes/synthetic_room"
  data_dir = pathlib.Path(args.data_dir)
  if not args.scene_frames:
    return datasets.prepare(dataset, data_dir), str(data_dir), ""
  data_dir = data_dir / f"device_check_frames{args.scene_frames}"
  manual = data_dir / "manual"
  if not (manual / "synthetic_room").is_dir():
    room.write_synthetic_seven_scenes(manual, frames_per_sequence=args.scene_frames,
                                      image_size=(48, 64), train_sequences=(1,),
                                      test_sequences=(2,))
  return datasets.prepare(dataset, data_dir, manual), str(data_dir), str(manual)


def measure_pipeline(builder, args, workers: int) -> dict:
  split = pipeline.Split(builder, "train")
  options = pipeline.ImageOptions(resize_size=PAPER_RESIZE, image_size=args.image_size,
                                  channel_mean=tuple(builder.info.metadata["channel_mean"]))
  batches = pipeline.TrainBatches(split, task="pose", options=options,
                                  batch_size=args.batch_size, seed=0, num_threads=workers,
                                  prefetch=2)
  timed = input_pipeline.time_pipeline(batches, num_batches=args.pipeline_batches,
                                       repeats=args.pipeline_repeats)
  return {"workers": workers, "resize_size": list(PAPER_RESIZE), "image_size": args.image_size,
          "batch_size": args.batch_size, "train_examples": len(split), **timed}


def run_demo(args, data_dir: str, manual_dir: str) -> dict:
  config = step_throughput.load_config(args.demo_config)
  config.num_train_steps = args.demo_steps
  config.data_dir = data_dir
  if manual_dir:
    config.manual_dir = manual_dir
  config.log_every_steps = min(config.log_every_steps, args.demo_steps)
  config.checkpoint_every_steps = config.eval_every_steps = args.demo_steps
  with tempfile.TemporaryDirectory(prefix="device_check_demo_") as workdir:
    start = time.perf_counter()
    metrics = experiment.train_and_evaluate(config, workdir)
    wall_s = time.perf_counter() - start
  medians = {key: value for key, value in _flat(metrics).items()
             if "median" in key and isinstance(value, (int, float))}
  return {"config": args.demo_config, "backbone": config.backbone,
          "image_size": config.image_size, "batch_size": config.batch_size,
          "steps": args.demo_steps, "wall_s": wall_s, "steps_per_s": args.demo_steps / wall_s,
          "medians": medians, "metrics": metrics}


def _flat(tree, prefix="") -> dict:
  if not isinstance(tree, dict):
    return {prefix: tree}
  flat = {}
  for key, value in tree.items():
    flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
  return flat


# ----------------------------------------------------------------------------- output


def _fmt(value, spec=".1f") -> str:
  return "-" if value is None else format(value, spec)


def _table(header, rows) -> None:
  widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
            for i, h in enumerate(header)]
  print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
  for row in rows:
    print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def print_section(name: str, records: list[dict], budget: Budget) -> None:
  skipped = [w for w in budget.skipped if w.startswith(name)]
  print(f"\n== {name}: {len(records)} measured"
        + (f", {len(skipped)} not started (budget of {budget.seconds:g} s spent)"
           if skipped else ""), flush=True)
  if name == "ceiling" and records:
    for dtype, entry in records[0]["ceiling"]["dtypes"].items():
      print(f"matmul {records[0]['ceiling']['matmul_size']}^2 {dtype}: "
            f"{entry['gflops']:.1f} GFLOP/s (compiler options {entry['options']})")
  elif name == "steps" and records:
    rows = []
    for r in records:
      c = r["config"]
      for part in ("train", "eval"):
        e = r[part]
        rows.append((c["backbone"], c["dtype"], "frozen" if c["frozen"] else "end to end",
                     part, f"{e['ms']['median']:.1f}", _fmt(e["images_per_s"]),
                     f"{e['lower_s'] + e['compile_s']:.1f}", _fmt(e["gflops_per_s"]),
                     _fmt(e["utilisation"] and 100 * e["utilisation"]) + "%",
                     _fmt(e["peak_bytes"] and e["peak_bytes"] / 2 ** 20, ".0f"),
                     "device" if e["peak_source"].startswith("device") else "xla"))
    _table(("backbone", "dtype", "mode", "step", "ms", "img/s", "compile s", "GFLOP/s",
            "util", "peak MiB", "memory from"), rows)
  elif name == "pipeline" and records:
    _table(("workers", "img/s", "cpu ms/img", "fastest train step img/s", "pipeline/step"),
           [(str(r["pipeline"]["workers"]), f"{r['pipeline']['images_per_s']:.1f}",
             f"{r['pipeline']['cpu_ms_per_image']:.2f}",
             _fmt(r["fastest_step_images_per_s"]), _fmt(r["pipeline_over_step"], ".2f"))
            for r in records])
  elif name == "demo" and records:
    d = records[0]["demo"]
    print(f"{d['config']} ({d['backbone']}, {d['image_size']}px, batch {d['batch_size']}): "
          f"{d['steps']} steps in {d['wall_s']:.1f} s ({d['steps_per_s']:.2f} steps/s, "
          f"compile and evaluation included)")
    for key, value in d["medians"].items():
      print(f"  {key}: {value:.4g}")
  for what in skipped:
    print(f"  not started: {what}")


def main(argv=None) -> list[dict]:
  try:
    args = parse_args(argv)
    backend = select_backend(args.backend)
    return run(args, backend)
  except (UsageError, LsattnError) as error:
    print(f"device_check: {error}", file=sys.stderr)
    raise SystemExit(2)


def run(args, backend: str) -> list[dict]:
  budget = Budget(args.budget_s)
  date = datetime.datetime.now(datetime.timezone.utc)
  path = pathlib.Path(args.json or ROOT / "benchmarks" / "results"
                      / f"{date:%Y-%m-%d}-device-check-{backend}.jsonl")
  machine = measure.machine_description()
  machine["device_kind"] = jax.devices()[0].device_kind
  print(f"{machine['backend']}: {len(machine['devices'])} x {machine['device_kind']}; "
        f"host {machine['cpu_model']}, {machine['usable_cores']} usable cores; jax "
        f"{machine['jax']}; budget {args.budget_s:g} s; records -> {path}", flush=True)
  base = {"benchmark": "device_check", "date": date.isoformat(timespec="seconds"),
          "tag": args.tag, "backend": backend}
  records: dict[str, list[dict]] = {name: [] for name in (*SECTIONS, "failed", "run")}

  def emit(section: str, **fields) -> dict:
    record = {**base, "section": section, "elapsed_s": budget.elapsed(), **fields,
              "machine": machine}
    records[section].append(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as file:
      file.write(json.dumps(record, default=str) + "\n")
    return record

  def attempt(what: str, measurement):
    """`measurement()`, or None and a 'failed' record when the backend fails it (out of
    memory, say): the other measurements still run. Bad input (LsattnError) stops."""
    try:
      return measurement()
    except LsattnError:
      raise
    except Exception as error:  # Whatever the device raises: reported, not fatal.
      lines = str(error).strip().splitlines()
      text = f"{type(error).__name__}: {lines[0][:300] if lines else ''}"
      budget.failed.append(what)
      emit("failed", what=what, error=text)
      print(f"  failed: {what}: {text}", flush=True)
      return None

  ceiling = {"matmul_size": None, "dtypes": {}}
  if "ceiling" in args.sections and budget.allows("ceiling"):
    size = args.matmul_size or (2048 if backend == "cpu" else 8192)
    option_sets = {"xla_default": None}
    for dtype in args.dtypes:  # the steps' CPU options, measured too (the faster counts)
      options = step_throughput._step_options(step_config(args, args.backbones[0], dtype,
                                                          args.modes[0]))
      if options:
        option_sets["steps"] = options
    measured = attempt("ceiling", lambda: measure_ceiling(size, args.dtypes, option_sets,
                                                          repeats=max(args.repeats, 3)))
    if measured is not None:
      ceiling = measured
      emit("ceiling", ceiling=ceiling)
  print_section("ceiling", records["ceiling"], budget)

  if "steps" in args.sections:
    for backbone in args.backbones:
      for dtype in args.dtypes:
        for mode in args.modes:
          what = f"steps {backbone} {dtype} {mode}"
          if not budget.allows(what):
            continue
          config = step_config(args, backbone, dtype, mode)
          record = attempt(what, lambda: measure_step(config, args, ceiling))
          if record is None:
            continue
          emit("steps", **record)
          print(f"  {what}: train {record['train']['ms']['median']:.1f} ms, eval "
                f"{record['eval']['ms']['median']:.1f} ms ({record['wall_s']:.0f} s)",
                flush=True)
  print_section("steps", records["steps"], budget)

  fastest = max((r["train"]["images_per_s"] for r in records["steps"]), default=None)
  scene = None
  if "pipeline" in args.sections:
    for workers in args.workers:
      if not budget.allows(f"pipeline {workers} workers"):
        continue
      scene = scene or prepare_scene(args)
      measured = attempt(f"pipeline {workers} workers",
                         lambda: measure_pipeline(scene[0], args, workers))
      if measured is None:
        continue
      emit("pipeline", pipeline=measured, dataset_prepare_s=scene[3],
           fastest_step_images_per_s=fastest,
           pipeline_over_step=fastest and measured["images_per_s"] / fastest)
  print_section("pipeline", records["pipeline"], budget)

  if "demo" in args.sections and budget.allows("demo"):
    scene = scene or prepare_scene(args)
    demo = attempt("demo", lambda: run_demo(args, scene[1], scene[2]))
    if demo is not None:
      emit("demo", demo=demo, dataset_prepare_s=scene[3])
  print_section("demo", records["demo"], budget)

  emit("run", budget_s=args.budget_s, ran=budget.ran, skipped=budget.skipped,
       failed=budget.failed, wall_s=budget.elapsed(), args=vars(args))
  print(f"\nran {len(budget.ran)} measurement(s) in {budget.elapsed():.0f} s; "
        f"{len(budget.skipped)} not started (budget); {len(budget.failed)} failed; records "
        f"appended to {path}")
  if budget.failed:
    raise SystemExit(1)
  return [r for section in records.values() for r in section]


if __name__ == "__main__":
  main()
