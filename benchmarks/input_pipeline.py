r"""Images/s of the training input pipeline, against what the train step consumes.

  python benchmarks/input_pipeline.py --data-dir runs/data \
      --step-json benchmarks/results/2026-11-25-cpu.jsonl
  python benchmarks/input_pipeline.py --data-dir runs/data --sizes demo --measure-step
  python benchmarks/input_pipeline.py --data-dir runs/data --loaders threads,grain:1,grain:2

Builds (once; about 30 s) or reuses the embedded synthetic scene
``seven_scenes/synthetic_room`` (`datasets.prepare`; stored as 256x455 JPEGs
like every pose dataset), then times the training loaders (decode, resize, mean subtraction, random
crop, batching) at each size preset: ``--loaders`` names them, ``threads``
(`pipeline.TrainBatches.iterate`, ``--threads`` loader threads, ``--prefetch``
batches ahead) and ``grain:W`` (`grain_loader.iterate` with W worker processes,
each with ``--threads`` threads reading ``--prefetch`` batches ahead). With
several loaders the repeats are interleaved (A B A B ...) and each record
gives its median ratios to the first loader's repeat of the same round
(``vs_first``). CPU ms per image counts this process and its live children
(grain's workers), from /proc.

* ``demo``: resize 128x228, crop 112, batch 16 (configs/demo_pose.py);
* ``paper``: resize 256x455, crop 224, batch 40 (configs/default.py);
* ``custom``: ``--resize H,W --image-size S`` (added when both are given).

The train step's consumption at the same image size comes from
``--step-json`` (records of benchmarks/step_throughput.py; the one with the
same image and batch size is preferred) or, with ``--measure-step``, is
measured here on the preset's config. With ``--measure-step`` the real
training loop (pipeline feeding the jitted step, sharing the CPU) is timed
too. Prints one JSON object per preset (and appends it to ``--json``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import statistics
import sys
import time

import jax
import numpy as np

import measure  # benchmarks/ is on sys.path when this script runs
import step_throughput
from lsattn.data import datasets, grain_loader, pipeline

PRESETS = {
    "demo": {"resize_size": (128, 228), "image_size": 112, "batch_size": 16,
             "config": "configs/demo_pose.py"},
    "paper": {"resize_size": (256, 455), "image_size": 224, "batch_size": 40,
              "config": "configs/default.py"},
}


def _children_cpu_s() -> float:
  """User + system seconds of this process's live descendants (grain's workers), from /proc."""
  ticks = os.sysconf("SC_CLK_TCK")
  parents: dict[int, list[tuple[int, float]]] = {}
  for entry in pathlib.Path("/proc").iterdir():
    if not entry.name.isdigit():
      continue
    try:
      fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # gone meanwhile
      continue
    parents.setdefault(int(fields[1]), []).append(
        (int(entry.name), (int(fields[11]) + int(fields[12])) / ticks))
  total, todo = 0.0, [os.getpid()]
  while todo:
    for pid, seconds in parents.get(todo.pop(), ()):
      total += seconds
      todo.append(pid)
  return total


def _cpu_s() -> float:
  return time.process_time() + _children_cpu_s()


def parse_loader(text: str) -> tuple[str, int]:
  """'threads' -> ('threads', 0); 'grain:W' -> ('grain', W)."""
  name, _, workers = text.partition(":")
  if name == "threads" and not workers:
    return name, 0
  if name == "grain" and workers.isdigit():
    return name, int(workers)
  raise SystemExit(f"--loaders: {text!r} is not 'threads' or 'grain:W' (W worker processes)")


def iterate_fn(batches: pipeline.TrainBatches, loader: tuple[str, int]):
  name, workers = loader
  if name == "threads":
    return batches.iterate
  return lambda start_step: grain_loader.iterate(batches, start_step, workers)


def time_repeat(iterate, start_step: int, *, num_batches: int, batch_size: int,
                warmup_batches: int = 0) -> dict:
  """One repeat: a fresh iterator from `start_step`, its first batch (with any worker's
  start), `warmup_batches` more (what the loader made ahead while the first was awaited,
  so the timed batches are made at its steady rate), then `num_batches` timed."""
  images = num_batches * batch_size
  start = time.perf_counter()
  iterator = iterate(start_step)
  next(iterator)
  first_s = time.perf_counter() - start
  for _ in range(warmup_batches):
    next(iterator)
  start, start_cpu = time.perf_counter(), _cpu_s()
  for _ in range(num_batches):
    next(iterator)
  seconds, cpu_s = time.perf_counter() - start, _cpu_s() - start_cpu
  iterator.close()
  return {"images_per_s": images / seconds, "cpu_ms_per_image": cpu_s * 1e3 / images,
          "first_batch_s": first_s}


def summarise(runs: list[dict], num_batches: int) -> dict:
  rates, cpu_ms = [r["images_per_s"] for r in runs], [r["cpu_ms_per_image"] for r in runs]
  return {"images_per_s": statistics.median(rates), "images_per_s_min": min(rates),
          "images_per_s_max": max(rates), "cpu_ms_per_image": statistics.median(cpu_ms),
          "cpu_ms_per_image_min": min(cpu_ms), "cpu_ms_per_image_max": max(cpu_ms),
          "first_batch_s": statistics.median(r["first_batch_s"] for r in runs),
          "repeats": len(runs), "batches_per_repeat": num_batches}


def time_pipeline(batches: pipeline.TrainBatches, *, num_batches: int, repeats: int,
                  warmup_batches: int = 0) -> dict:
  """Images/s of `batches.iterate`: `repeats` runs of `num_batches` after a first batch."""
  return time_loaders(batches, [("threads", 0)], num_batches=num_batches, repeats=repeats,
                      warmup_batches=warmup_batches)[0]


def time_loaders(batches: pipeline.TrainBatches, loaders: list[tuple[str, int]], *,
                 num_batches: int, repeats: int, warmup_batches: int = 0) -> list[dict]:
  """Each loader's `summarise`d repeats, interleaved (round r: every loader once, from the
  same step), with the median over rounds of each ratio to the first loader's."""
  runs = [[] for _ in loaders]
  for repeat in range(repeats):
    for index, loader in enumerate(loaders):
      runs[index].append(time_repeat(
          iterate_fn(batches, loader), repeat * (num_batches + warmup_batches + 1),
          num_batches=num_batches, batch_size=batches.batch_size,
          warmup_batches=warmup_batches))
  results = []
  for index in range(len(loaders)):
    result = summarise(runs[index], num_batches)
    result["warmup_batches"] = warmup_batches
    if index:
      result["vs_first"] = {
          key: statistics.median(mine[key] / first[key]
                                 for mine, first in zip(runs[index], runs[0]))
          for key in ("images_per_s", "cpu_ms_per_image")}
    results.append(result)
  return results


def step_from_json(path: str, image_size: int, batch_size: int) -> dict | None:
  """The step_throughput record to compare with: same image size, then same batch
  size, then the 'base' configuration and the paper's model (N=3, 4 layers, end
  to end) preferred."""
  records = []
  with open(path) as file:
    for line in file:
      record = json.loads(line)
      if (record.get("benchmark") == "step_throughput"
          and record["config"]["image_size"] == image_size):
        records.append(record)
  if not records:
    return None
  score = lambda r: (r["config"]["batch_size"] == batch_size, r["sweep"] == "base",
                     r["config"]["variant"] == "layer_spatial", r["config"]["num_steps"] == 3,
                     len(r["config"]["layers"]) == 4, not r["config"]["frozen"],
                     r["config"]["batch_size"])
  best = max(records, key=score)
  cpu_ms = best["train"].get("cpu_ms")
  return {"source": path, "config": best["config"], "sweep": best["sweep"],
          "ms_per_step": best["train"]["ms"]["median"],
          "images_per_s": best["train"]["images_per_s"],
          "cpu_ms_per_image": cpu_ms and cpu_ms["median"] / best["config"]["batch_size"]}


def measure_step(config, batches: pipeline.TrainBatches, *, repeats: int, fed_steps: int,
                 init: str) -> dict:
  """The train step alone (fake batch) and fed by the pipeline (the real loop)."""
  runner = step_throughput.TrainStepRunner(config, init=init)
  jax.block_until_ready(runner())
  alone, alone_cpu = measure.time_calls(runner, warmup=1, repeats=repeats, iters=1)
  iterator = batches.iterate(0)
  jax.block_until_ready(runner(runner.shard(next(iterator))))  # pipeline threads started
  start = time.perf_counter()
  for _ in range(fed_steps):
    out = runner(runner.shard(next(iterator)))
  jax.block_until_ready(out)
  fed_s = (time.perf_counter() - start) / fed_steps
  iterator.close()
  alone_s = statistics.median(alone)
  return {"source": "measured", "config": step_throughput.describe(runner),
          "ms_per_step": alone_s * 1e3, "images_per_s": config.batch_size / alone_s,
          "cpu_ms_per_image": statistics.median(alone_cpu) * 1e3 / config.batch_size,
          "fed_loop": {"steps": fed_steps, "ms_per_step": fed_s * 1e3,
                       "images_per_s": config.batch_size / fed_s,
                       "slowdown_vs_step_alone": fed_s / alone_s}}


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset", default="seven_scenes/synthetic_room")
  parser.add_argument("--data-dir", default="runs/data", help="where tfds keeps built datasets")
  parser.add_argument("--manual-dir", default="",
                      help="source files (default: the synthetic scene, written if missing)")
  parser.add_argument("--sizes", default="demo,paper", help="presets, comma list")
  parser.add_argument("--resize", help="H,W for the 'custom' preset")
  parser.add_argument("--image-size", type=int, help="crop side for the 'custom' preset")
  parser.add_argument("--batch-size", type=int, help="overrides every preset's batch size")
  parser.add_argument("--batches", type=int, default=20, help="timed batches per repeat")
  parser.add_argument("--warmup-batches", type=int, default=0,
                      help="batches taken untimed after the first of each repeat (what a "
                           "loader made ahead while the first was awaited)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--loaders", default="threads",
                      help="comma list of 'threads' and 'grain:W' (W worker processes), "
                           "timed in turn; the first is the reference of vs_first")
  parser.add_argument("--threads", type=int, default=2, help="TrainBatches num_threads")
  parser.add_argument("--prefetch", type=int, default=2, help="TrainBatches prefetch")
  parser.add_argument("--step-json", help="step_throughput.py JSON lines to compare with")
  parser.add_argument("--measure-step", action="store_true",
                      help="measure the train step (and the fed loop) in this process")
  parser.add_argument("--step-config", help="config for --measure-step (default: the preset's)")
  parser.add_argument("--step-repeats", type=int, default=5)
  parser.add_argument("--fed-steps", type=int, default=10)
  parser.add_argument("--init", choices=("library", "fast"), default="library",
                      help="initial state for --measure-step (see step_throughput.py)")
  parser.add_argument("--json", help="append one JSON object per preset to this file")
  parser.add_argument("--tag", default="")
  args = parser.parse_args(argv)
  if bool(args.resize) != bool(args.image_size):
    parser.error("--resize and --image-size go together")
  args.loaders = [parse_loader(text) for text in args.loaders.split(",") if text]
  if not args.loaders:
    parser.error("--loaders names none")
  return args


def main(argv=None) -> list[dict]:
  args = parse_args(argv)
  presets = {name: dict(PRESETS[name]) for name in args.sizes.split(",") if name}
  if args.resize:
    height, width = (int(v) for v in args.resize.split(","))
    presets["custom"] = {"resize_size": (height, width), "image_size": args.image_size,
                         "batch_size": 16, "config": "configs/default.py"}
  unknown = sorted(set(presets) - set(PRESETS) - {"custom"})
  if unknown:
    raise SystemExit(f"unknown --sizes {unknown}; choose from {sorted(PRESETS)}")
  start = time.perf_counter()
  builder = datasets.prepare(args.dataset, args.data_dir, args.manual_dir)
  prepare_s = time.perf_counter() - start
  start = time.perf_counter()
  split = pipeline.Split(builder, "train")
  split_s = time.perf_counter() - start
  mean = tuple(builder.info.metadata["channel_mean"])
  machine = measure.machine_description()
  date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  records = []
  for name, preset in presets.items():
    batch_size = args.batch_size or preset["batch_size"]
    options = pipeline.ImageOptions(resize_size=preset["resize_size"],
                                    image_size=preset["image_size"], channel_mean=mean)
    batches = pipeline.TrainBatches(split, task="pose", options=options, batch_size=batch_size,
                                    seed=0, num_threads=args.threads, prefetch=args.prefetch)
    timed = time_loaders(batches, args.loaders, num_batches=args.batches, repeats=args.repeats,
                         warmup_batches=args.warmup_batches)
    step = None
    if args.step_json:
      step = step_from_json(args.step_json, preset["image_size"], batch_size)
    if step is None and args.measure_step:
      config = step_throughput.load_config(args.step_config or preset["config"])
      config.batch_size, config.image_size = batch_size, preset["image_size"]
      step = measure_step(config, batches, repeats=args.step_repeats,
                          fed_steps=args.fed_steps, init=args.init)
    for (loader, workers), timing in zip(args.loaders, timed):
      record = {"benchmark": "input_pipeline", "date": date, "tag": args.tag, "preset": name,
                "dataset": args.dataset, "train_examples": len(split),
                "stored_size": list(np.asarray(split.image(0)).shape),
                "resize_size": list(preset["resize_size"]), "image_size": preset["image_size"],
                "batch_size": batch_size, "loader": loader, "workers": workers,
                "threads": args.threads, "prefetch": args.prefetch, "prepare_s": prepare_s,
                "split_s": split_s, "pipeline": timing, "step": step}
      if len(args.loaders) > 1:
        record["loaders"] = [f"{name}:{count}" if name == "grain" else name
                             for name, count in args.loaders]
      if step is not None:
        ratio = record["pipeline"]["images_per_s"] / step["images_per_s"]
        record["pipeline_over_step"] = ratio
        record["target_3x_met"] = ratio >= 3.0
        if step.get("cpu_ms_per_image"):
          # CPU cost per image, step / pipeline: robust to other users of the cores.
          record["step_over_pipeline_cpu"] = (step["cpu_ms_per_image"]
                                              / record["pipeline"]["cpu_ms_per_image"])
      record["machine"] = machine
      records.append(record)
      print(json.dumps(record), flush=True)
      if args.json:
        with open(args.json, "a") as file:
          file.write(json.dumps(record) + "\n")
  for record in records:
    step = record["step"]
    loader = record["loader"] + (f":{record['workers']}" if record["loader"] == "grain" else "")
    print(f"{record['preset']} {loader}: {record['pipeline']['images_per_s']:.1f} images/s, "
          f"{record['pipeline']['cpu_ms_per_image']:.2f} CPU ms/image "
          f"({record['resize_size'][0]}x{record['resize_size'][1]} -> {record['image_size']}, "
          f"batch {record['batch_size']}); " + (
              f"train step {step['images_per_s']:.1f} images/s ({step['source']}); ratio "
              f"{record['pipeline_over_step']:.1f}x" if step else "no step measurement"),
          file=sys.stderr)
  return records


if __name__ == "__main__":
  main()
