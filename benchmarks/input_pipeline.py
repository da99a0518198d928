r"""Images/s of the training input pipeline, against what the train step consumes.

  python benchmarks/input_pipeline.py --data-dir runs/data \
      --step-json benchmarks/results/2026-11-25-cpu.jsonl
  python benchmarks/input_pipeline.py --data-dir runs/data --sizes demo --measure-step

Builds (once; about 30 s) or reuses the embedded synthetic scene
``seven_scenes/synthetic_room`` (`datasets.prepare`; stored as 256x455 JPEGs
like every pose dataset), then times `pipeline.TrainBatches.iterate`
(decode, resize, mean subtraction, random crop, batching on ``--threads``
loader threads, ``--prefetch`` batches ahead) at each size preset:

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
import statistics
import sys
import time

import jax
import numpy as np

import measure  # benchmarks/ is on sys.path when this script runs
import step_throughput
from lsattn.data import datasets, pipeline

PRESETS = {
    "demo": {"resize_size": (128, 228), "image_size": 112, "batch_size": 16,
             "config": "configs/demo_pose.py"},
    "paper": {"resize_size": (256, 455), "image_size": 224, "batch_size": 40,
              "config": "configs/default.py"},
}


def time_pipeline(batches: pipeline.TrainBatches, *, num_batches: int, repeats: int) -> dict:
  """Images/s of `batches.iterate`: `repeats` runs of `num_batches` after a first batch."""
  first_s, rates, cpu_ms = [], [], []
  images = num_batches * batches.batch_size
  for repeat in range(repeats):
    iterator = batches.iterate(repeat * (num_batches + 1))
    start = time.perf_counter()
    next(iterator)
    first_s.append(time.perf_counter() - start)
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(num_batches):
      next(iterator)
    rates.append(images / (time.perf_counter() - start))
    cpu_ms.append((time.process_time() - start_cpu) * 1e3 / images)
    iterator.close()
  return {"images_per_s": statistics.median(rates), "images_per_s_min": min(rates),
          "images_per_s_max": max(rates), "cpu_ms_per_image": statistics.median(cpu_ms),
          "first_batch_s": statistics.median(first_s), "repeats": repeats,
          "batches_per_repeat": num_batches}


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
  parser.add_argument("--repeats", type=int, default=3)
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
    record = {"benchmark": "input_pipeline", "date": date, "tag": args.tag, "preset": name,
              "dataset": args.dataset, "train_examples": len(split),
              "stored_size": list(np.asarray(split.image(0)).shape),
              "resize_size": list(preset["resize_size"]), "image_size": preset["image_size"],
              "batch_size": batch_size, "threads": args.threads, "prefetch": args.prefetch,
              "prepare_s": prepare_s, "split_s": split_s,
              "pipeline": time_pipeline(batches, num_batches=args.batches,
                                        repeats=args.repeats)}
    step = None
    if args.step_json:
      step = step_from_json(args.step_json, preset["image_size"], batch_size)
    if step is None and args.measure_step:
      config = step_throughput.load_config(args.step_config or preset["config"])
      config.batch_size, config.image_size = batch_size, preset["image_size"]
      step = measure_step(config, batches, repeats=args.step_repeats,
                          fed_steps=args.fed_steps, init=args.init)
    record["step"] = step
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
    print(f"{record['preset']}: pipeline {record['pipeline']['images_per_s']:.1f} images/s "
          f"({record['resize_size'][0]}x{record['resize_size'][1]} -> {record['image_size']}, "
          f"batch {record['batch_size']}); " + (
              f"train step {step['images_per_s']:.1f} images/s ({step['source']}); ratio "
              f"{record['pipeline_over_step']:.1f}x" if step else "no step measurement"),
          file=sys.stderr)
  return records


if __name__ == "__main__":
  main()
