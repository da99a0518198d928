r"""One model for three scenes against one model per scene, same total steps (issue 34, part 2).

  python benchmarks/multiscene.py                      # the study: 3 seeds, 12 runs
  python benchmarks/multiscene.py --report benchmarks/results/2026-12-06-multiscene.jsonl

Data: lsattn's three embedded rooms (`lsattn.data.synthetic.rooms`), each
written smaller than the demo's (`ROOM_FILES`: 3 training and 1 test sequence
of 60 frames at 120x160) so that the study fits a loaded 2-core CPU. Every run
goes through ``train.py``'s code (`experiment.train_and_evaluate`): the whole
training split, the fixed budget below, the last checkpoint evaluated once on
the test split.

For each seed: one multi-scene model (``config.scenes`` = the three rooms,
``scene_sampling='equal'``) trained for 3 x `STEPS_PER_SCENE` steps, and one
model per room trained for `STEPS_PER_SCENE` steps each: the same total number
of training steps and images seen, and the same images per scene. Compared:
the mean over the three rooms of the per-room median translation and rotation
errors (the multi-scene run's ``mean_over_scenes``; for the per-scene models
the mean of their three medians), and for the multi-scene model its scene
accuracy and its oracle (each image through its true room's head).

The budget and recipe (`BUDGET`) were fixed in this file, committed, before
the first run: the demos' frozen EfficientNet-Lite0 with ImageNet weights
(configs/demo_pose.py: beta, learning rate and schedule), smaller images,
hidden size and steps than the demo so that 12 runs fit in well under an hour
on the shared machine. Nothing here is tuned on test numbers. What we expect,
written before the first run: one model for three rooms that look nothing
alike should classify the rooms almost perfectly and regress within each
about as well as separate models, perhaps slightly worse (its core is shared
by three tasks) or slightly better (it sees three times the images through
one core); the gap is likely within the spread over seeds.

Records (one JSON line per run, with the machine and commit) go to
``benchmarks/results/<date>-multiscene.jsonl``; runs already recorded with the
same budget are skipped, so an interrupted study resumes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SEEDS = (0, 1, 2)
STEPS_PER_SCENE = 150
ROOMS = ("synthetic_study", "synthetic_hall", "synthetic_gallery")
ROOM_FILES = {"frames_per_sequence": 60, "image_size": (120, 160),
              "train_sequences": (1, 2, 3), "test_sequences": (4,)}
BUDGET = {"batch_size": 16, "image_size": 64, "resize_size": (72, 96), "hidden_size": 32,
          "projection_size": 32, "num_recurrent_steps": 2, "warmup_steps": 10,
          "eval_batch_size": 40, "log_every_steps": 50, "checkpoint_every_steps": 1000}


def make_config(seed: int, scenes: tuple[str, ...], *, data_dir: str, manual_dir: str):
  """configs/demo_multiscene.py's recipe at the study's budget, for `scenes` (one or all)."""
  from configs import demo_multiscene
  config = demo_multiscene.get_config()
  names = tuple(f"seven_scenes/{name}" for name in scenes)
  config.scenes = names if len(names) > 1 else ()
  config.dataset = names[0]
  config.seed = seed
  config.data_dir, config.manual_dir = data_dir, manual_dir
  for key, value in BUDGET.items():
    config[key] = value
  config.num_train_steps = STEPS_PER_SCENE * len(names)
  config.eval_figures = False
  config.eval_retrieval_baselines = False
  return config


def _git(*args) -> str:
  result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
  return result.stdout.strip()


def run_one(seed: int, scenes: tuple[str, ...], *, workdir: pathlib.Path,
            data_dir: pathlib.Path, manual_dir: pathlib.Path) -> dict:
  from lsattn import experiment
  config = make_config(seed, scenes, data_dir=str(data_dir), manual_dir=str(manual_dir))
  kind = "multi" if len(scenes) > 1 else "single"
  run_dir = workdir / kind / "+".join(scenes) / f"seed{seed}"
  shutil.rmtree(run_dir, ignore_errors=True)  # a partial run would resume and mis-time
  started = datetime.datetime.now(datetime.timezone.utc)
  start = time.perf_counter()
  with contextlib.redirect_stdout(sys.stderr):
    result = experiment.train_and_evaluate(config, run_dir)
  return {"benchmark": "multiscene", "kind": kind, "scenes": list(scenes), "seed": seed,
          "steps_per_scene": STEPS_PER_SCENE, "budget": BUDGET, "room_files": ROOM_FILES,
          "num_train_steps": config.num_train_steps,
          "wall_time_s": round(time.perf_counter() - start, 2),
          "started": started.isoformat(timespec="seconds"), "metrics": result}


def _key(record: dict) -> tuple:
  return (record["kind"], tuple(record["scenes"]), record["seed"], record["steps_per_scene"],
          json.dumps(record["budget"], sort_keys=True))


def study(output: pathlib.Path, workdir: pathlib.Path) -> None:
  import measure
  from lsattn.data.synthetic import rooms
  manual = workdir / "manual"
  manual.mkdir(parents=True, exist_ok=True)
  for name in ROOMS:  # the same files for every seed (the rooms' own seed 0)
    if not (manual / name).is_dir():
      staging = workdir / "staging"
      shutil.rmtree(staging, ignore_errors=True)
      rooms.write_synthetic_room(staging, name, seed=0, **ROOM_FILES)
      (staging / name).rename(manual / name)
  # The code a run executes is what the study imported at its start: read the commit then.
  commit = _git("rev-parse", "HEAD")
  uncommitted = bool(_git("status", "--porcelain", "--untracked-files=no"))
  done = {_key(r) for r in read_records(output)} if output.exists() else set()
  plan = [(seed, ROOMS) for seed in SEEDS] + [(seed, (name,)) for seed in SEEDS
                                               for name in ROOMS]
  for seed, scenes in plan:
    kind = "multi" if len(scenes) > 1 else "single"
    if (kind, scenes, seed, STEPS_PER_SCENE, json.dumps(BUDGET, sort_keys=True)) in done:
      continue
    record = run_one(seed, scenes, workdir=workdir, data_dir=workdir / "data",
                     manual_dir=manual)
    record["machine"] = measure.machine_description()
    record["commit"], record["uncommitted_changes"] = commit, uncommitted
    with open(output, "a") as handle:
      handle.write(json.dumps(record) + "\n")
    print(json.dumps({k: record[k] for k in ("kind", "scenes", "seed", "wall_time_s")}),
          flush=True)


def read_records(path: pathlib.Path) -> list[dict]:
  records = []
  for number, line in enumerate(path.read_text().splitlines(), start=1):
    if line.strip():
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError as error:
        raise SystemExit(f"{path}:{number}: not a JSON object ({error})") from None
  return [r for r in records if r.get("benchmark") == "multiscene"]


def _mean_sd(values) -> str:
  values = [float(v) for v in values]
  sd = statistics.stdev(values) if len(values) > 1 else 0.0
  return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def report(path: pathlib.Path) -> str:
  """The comparison as a Markdown table: mean ± sample sd over seeds."""
  records = read_records(path)
  seeds = sorted({r["seed"] for r in records})
  rows = {"multi": {"t": [], "r": [], "ot": [], "or": [], "acc": []},
          "single": {"t": [], "r": []}}
  per_room = {name: {"multi": [], "single": []} for name in ROOMS}
  for seed in seeds:
    multi = [r for r in records if r["kind"] == "multi" and r["seed"] == seed]
    singles = [r for r in records if r["kind"] == "single" and r["seed"] == seed]
    if len(multi) != 1 or len(singles) != len(ROOMS):
      continue  # an incomplete seed is left out of the table
    mean = multi[0]["metrics"]["mean_over_scenes"]
    rows["multi"]["t"].append(mean["median_translation_m"])
    rows["multi"]["r"].append(mean["median_rotation_deg"])
    rows["multi"]["ot"].append(mean["oracle_median_translation_m"])
    rows["multi"]["or"].append(mean["oracle_median_rotation_deg"])
    rows["multi"]["acc"].append(multi[0]["metrics"]["scene_accuracy"])
    rows["single"]["t"].append(statistics.fmean(r["metrics"]["median_translation_m"]
                                                for r in singles))
    rows["single"]["r"].append(statistics.fmean(r["metrics"]["median_rotation_deg"]
                                                for r in singles))
    for r in singles:
      per_room[r["scenes"][0]]["single"].append(r["metrics"]["median_translation_m"])
    for name in ROOMS:
      per_room[name]["multi"].append(
          multi[0]["metrics"]["per_scene"][name]["median_translation_m"])
  complete = len(rows["single"]["t"])
  lines = [f"Seeds complete: {complete} of {len(SEEDS)}; {STEPS_PER_SCENE} steps per scene; "
           f"budget {json.dumps(BUDGET)}; rooms {json.dumps(ROOM_FILES)}", "",
           "| model | mean over rooms of median translation (m) | of median rotation (deg) "
           "| scene accuracy |", "| --- | --- | --- | --- |"]
  if complete:
    lines.append(f"| one model per room ({STEPS_PER_SCENE} steps each) | "
                 f"{_mean_sd(rows['single']['t'])} | {_mean_sd(rows['single']['r'])} | - |")
    lines.append(f"| one model for three rooms ({3 * STEPS_PER_SCENE} steps) | "
                 f"{_mean_sd(rows['multi']['t'])} | {_mean_sd(rows['multi']['r'])} | "
                 f"{_mean_sd(rows['multi']['acc'])} |")
    lines.append(f"| the same, oracle (true room's head) | {_mean_sd(rows['multi']['ot'])} | "
                 f"{_mean_sd(rows['multi']['or'])} | - |")
    lines += ["", "| room | per-room model, median translation (m) | multi-scene model |",
              "| --- | --- | --- |"]
    lines += [f"| {name} | {_mean_sd(per_room[name]['single'])} | "
              f"{_mean_sd(per_room[name]['multi'])} |" for name in ROOMS]
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--report", type=pathlib.Path, help="print the table of a records file")
  parser.add_argument("--output", type=pathlib.Path, default=ROOT / "benchmarks" / "results" /
                      f"{datetime.date.today().isoformat()}-multiscene.jsonl")
  parser.add_argument("--workdir", type=pathlib.Path, default=ROOT / "runs" / "multiscene_study")
  args = parser.parse_args()
  if args.report:
    print(report(args.report))
    return
  args.workdir.mkdir(parents=True, exist_ok=True)
  study(args.output, args.workdir)
  print(report(args.output))


if __name__ == "__main__":
  main()
