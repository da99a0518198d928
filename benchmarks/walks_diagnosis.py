r"""Why position is hard on the walks scene: one change at a time, measured.

  python benchmarks/walks_diagnosis.py [--experiments reference,trained_backbone,...]
      [--seeds 0] [--scene walks|room]

The full model (layer + spatial) with the evidence study's pose budget
(`ablation.FULL['pose']`: 400 steps, batch 16, 80x80 crops, hidden 32,
frozen random GoogLeNet, beta 3) on ``seven_scenes/synthetic_walks``, and
the same with ONE thing changed per experiment (``EXPERIMENTS``): the
backbone trained, larger images, four times the steps, beta. Nothing here
changes the scene. Each run is trained through train.py's code and
evaluated with its last checkpoint on the test walk AND on the training
walks (centre crops, no augmentation): a model whose training error is as
high as its test error has not fitted the training walks (features, size,
budget); one that fits them and not the test walk has not generalised.

Records (one JSON line each, to stdout and ``--out``): experiment, the
changes, seed, wall time, test and training-split median errors, the
mean-pose and retrieval baselines. Budgets and seeds are fixed here before
any run; the numbers are reported as measured (README, "Results").
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import shutil
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "benchmarks"):
  if str(_path) not in sys.path:
    sys.path.insert(0, str(_path))

import ablation  # noqa: E402  (benchmarks/ablation.py: the study's budget and configs)

# name -> (budget changes, config changes). One change each against `reference`.
EXPERIMENTS = {
    "reference": ({}, {}),
    "trained_backbone": ({}, {"freeze_backbone": False}),
    "image_112": ({"image_size": 112, "resize_size": (120, 160)}, {}),
    "steps_x4": ({"num_train_steps": 1600}, {}),
    "beta_1": ({}, {"beta": 1.0}),
    "beta_10": ({}, {"beta": 10.0}),
}
SCENES = {"walks": "seven_scenes/synthetic_walks", "room": "seven_scenes/synthetic_room"}
VARIANT = "layer_spatial"


def experiment_config(name: str, scene: str, seed: int, data_dir: pathlib.Path):
  """The reference config of the study with experiment `name`'s one change."""
  budget_changes, config_changes = EXPERIMENTS[name]
  budget = dataclasses.replace(ablation.FULL["pose"], **budget_changes)
  study = ablation.Study(scene, SCENES[scene], "pose", "pose")
  config = ablation.make_config(study, VARIANT, seed, budget, data_dir=str(data_dir),
                                setting=ablation.SETTINGS["random_googlenet"])
  for key, value in config_changes.items():
    config[key] = value
  return config, budget


def training_split_errors(config, run_dir: pathlib.Path) -> dict:
  """Median errors of the run's last checkpoint on its own training split (centre crops)."""
  import jax
  from lsattn import experiment
  from lsattn.runs import checkpoint, parallel
  run = experiment.setup(config)
  signature = checkpoint.shape_signature(config, run.model_config, run.image_shape)
  template = jax.eval_shape(lambda: experiment.initial_state(run))
  state, _, _, _ = checkpoint.restore_run(
      run_dir, checkpoint.abstract_like(template, parallel.replicated(run.mesh)), signature)
  _, result = experiment._evaluate(run, state, run.train_split, "train split")
  return {key: result[key] for key in ("median_translation_m", "median_rotation_deg")}


def run_experiment(name: str, scene: str, seed: int, workdir: pathlib.Path) -> dict:
  from lsattn import experiment
  config, budget = experiment_config(name, scene, seed, workdir / "data")
  run_dir = workdir / "runs" / scene / name / f"seed{seed}"
  shutil.rmtree(run_dir, ignore_errors=True)
  start = time.perf_counter()
  with contextlib.redirect_stdout(sys.stderr):
    test = experiment.train_and_evaluate(config, run_dir)
    train = training_split_errors(config, run_dir)
  keys = ("median_translation_m", "median_rotation_deg", "baseline_median_translation_m",
          "baseline_median_rotation_deg", "knn_pixels_median_translation_m",
          "knn_pixels_median_rotation_deg", "knn_features_median_translation_m",
          "knn_features_median_rotation_deg")
  return {"benchmark": "walks_diagnosis", "experiment": name, "scene": scene,
          "dataset": SCENES[scene], "seed": seed, "variant": VARIANT,
          "changes": {**{k: list(v) if isinstance(v, tuple) else v
                         for k, v in EXPERIMENTS[name][0].items()}, **EXPERIMENTS[name][1]},
          "budget": dataclasses.asdict(budget),
          "wall_time_s": round(time.perf_counter() - start, 1),
          "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "test": {key: test[key] for key in keys if key in test},
          "train_split": train}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--experiments", default=",".join(EXPERIMENTS))
  parser.add_argument("--seeds", default="0")
  parser.add_argument("--scene", default="walks", choices=sorted(SCENES))
  parser.add_argument("--workdir", default=str(ROOT / "runs" / "walks_diagnosis"))
  parser.add_argument("--out", default=None, help="append the records to this JSONL file")
  args = parser.parse_args(argv)
  names = [n for n in args.experiments.split(",") if n]
  unknown = sorted(set(names) - set(EXPERIMENTS))
  if unknown:
    parser.error(f"--experiments: unknown {unknown}; expected some of {sorted(EXPERIMENTS)}")
  try:
    seeds = [int(s) for s in args.seeds.split(",")]
  except ValueError:
    parser.error(f"--seeds: expected a comma list of integers, got {args.seeds!r}")
  workdir = pathlib.Path(args.workdir).resolve()
  workdir.mkdir(parents=True, exist_ok=True)
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(workdir / "jax_cache"))
  for seed in seeds:
    for name in names:
      record = run_experiment(name, args.scene, seed, workdir)
      print(json.dumps(record), flush=True)
      if args.out:
        with open(args.out, "a") as file:
          file.write(json.dumps(record) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
