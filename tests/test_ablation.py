"""benchmarks/ablation.py: the --quick study end to end, and the report of hand-made records.

The quick study runs as a user runs it (a subprocess), at tiny shapes, on a
slice that takes every code path: PoseNet and the full model on the pose
study, the full model on the texture half of the known-answer benchmark (the
classification path and the cue-scale data). Every variant's config is
checked without training. Its numbers mean nothing; the test checks what the
records and the table hold. The report's arithmetic is checked on hand-made
records.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "ablation.py"


def _load_ablation():
  spec = importlib.util.spec_from_file_location("ablation", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


ablation = _load_ablation()
QUICK_VARIANTS = ("posenet", "layer_spatial")


def _run(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=900)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
  root = tmp_path_factory.mktemp("ablation")
  # The tiny setting: the study's code path; the settings' configs are checked below, and
  # a run of the pretrained backbone in tests/test_demo_path.py.
  args = ("--quick", "--setting", "tiny", "--studies", "pose,texture",
          "--variants", ",".join(QUICK_VARIANTS),
          "--workdir", str(root / "work"), "--out-dir", str(root / "out"), "--tag", "t")
  result = _run(*args)
  assert result.returncode == 0, f"ablation --quick failed:\n{result.stdout}\n{result.stderr}"
  records = [json.loads(line) for line in (root / "out" / "t-ablation.jsonl").read_text()
             .splitlines()]
  return {"root": root, "args": args, "result": result, "records": records}


@pytest.mark.parametrize("setting", ablation.SETTINGS.values(), ids=ablation.SETTINGS)
def test_every_variant_config_is_valid(setting):
  from lsattn import config_checks
  for study in ablation.STUDIES:
    budget = ablation.FULL[study.task]
    for variant in study.variants(setting):
      config = ablation.make_config(study, variant, 0, budget, data_dir="unused",
                                    num_classes=4 if study.task == "classification" else 0,
                                    setting=setting)
      model_config = config_checks.check_config(config)
      assert config.num_train_steps == budget.num_train_steps
      assert (config.backbone, config.backbone_weights, config.freeze_backbone,
              config.backbone_learning_rate_scale) == (
          setting.backbone, setting.backbone_weights, setting.freeze_backbone,
          setting.backbone_learning_rate_scale)
      assert model_config.layers == (
          (variant.removeprefix("spatial_"),) if variant.startswith("spatial_") else
          setting.layers[-1:] if variant in ("posenet", "lstm_posenet", "googlenet") else
          setting.layers)


def test_settings_layers_are_table_3s_strides():
  from lsattn import backbones
  for setting in ablation.SETTINGS.values():
    member = backbones.get(setting.backbone)
    strides = [member.strides[member.taps.index(layer)] for layer in setting.layers]
    assert strides == [8, 16, 32], setting.name
  assert ablation.SETTINGS["pretrained"].layer_names == ("Stage-4", "Stage-6", "Head")
  assert ablation.SETTINGS["random_googlenet"].layer_names == ("Conv-3B", "Conv-4E", "Conv-5B")


def test_quick_writes_one_record_per_run(quick):
  records = quick["records"]
  expected = {("pose", "posenet"), ("pose", "layer_spatial"), ("texture", "layer_spatial")}
  assert {(r["study"], r["variant"]) for r in records} == expected
  assert len(records) == len(expected)
  for record in records:
    task = record["task"]
    assert record["seed"] == 0 and record["quick"] is True and record["setting"] == "tiny"
    assert record["budget"] == json.loads(json.dumps(
        dataclasses.asdict(ablation.QUICK[task])))
    assert record["wall_time_s"] > 0 and record["machine"]["usable_cores"] >= 1
    assert len(record["commit"]) == 40 and isinstance(record["uncommitted_changes"], bool)
    metrics = record["metrics"]
    assert metrics["protocol"] == "whole_train_split_last_checkpoint"
    assert metrics["checkpoint_step"] == ablation.QUICK[task].num_train_steps
    recurrent = record["variant"] not in ("posenet", "lstm_posenet", "googlenet")
    steps = ablation.QUICK[task].num_recurrent_steps if recurrent else 0
    assert len(metrics["per_step"]) == steps
    if task == "pose":
      for key in ("within_0.05m_5deg", "within_0.1m_10deg", "baseline_median_translation_m"):
        assert 0 <= metrics[key]
      assert record["dataset"] == "seven_scenes/synthetic_room"
    else:
      assert record["dataset"] == "mit67/synthetic_texture"
      assert len(metrics["confusion_matrix"]) == 4
    dynamics = record["choice_dynamics"]
    if record["variant"] not in ablation.SELECTING_VARIANTS:
      assert dynamics == []
    else:  # the run's layer_choice_dynamics.jsonl: a row at the last step (3 < 20)
      assert [row["step"] for row in dynamics] == [ablation.QUICK[task].num_train_steps]
      for shares in dynamics[0]["share"]:
        assert sum(shares) == pytest.approx(1.0)
    if record["variant"] in ablation.SELECTING_VARIANTS:
      frequencies = metrics["layer_selection_frequency"]
      assert len(frequencies) == steps
      for step in frequencies:
        assert set(step) == set(ablation.SETTINGS[record["setting"]].layer_names)
        assert sum(step.values()) == pytest.approx(1.0)
  # stdout: the data facts, every record, then the summary, one JSON object per line.
  lines = [json.loads(line) for line in quick["result"].stdout.splitlines()]
  assert lines[0]["benchmark"] == "ablation_data"
  assert [line for line in lines if line["benchmark"] == "ablation"] == records
  assert lines[-1]["benchmark"] == "ablation_summary" and lines[-1]["runs"] == len(records)


def test_quick_table_and_figures(quick):
  out = quick["root"] / "out"
  table = (out / "t-ablation.md").read_text()
  rows = [line for line in table.splitlines() if line.startswith("| ")]
  for variant in QUICK_VARIANTS:
    assert any(row.startswith(f"| {variant} | 1 | ") for row in rows), variant
  assert any(row.startswith("| mean training pose |") for row in rows)
  assert sum(row.startswith("| chance | - | 0.250 |") for row in rows) == 1  # texture: 4 classes
  pose_steps = [row for row in rows if row.split("|")[1].strip() in ("1", "2", "3")
                and row.count("|") == 4]
  assert len(pose_steps) == 3  # per-step rows of the full pose model
  frequency_rows = [row for row in rows if row.startswith(("| pose | layer", "| texture | layer"))
                    and row.count("|") == 7]
  assert len(frequency_rows) == 3 + 2  # layer + spatial: N = 3 pose steps, 2 texture steps
  for name in ("errors", "layers", "dynamics"):
    assert (out / f"t-ablation-{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  dynamics_rows = [row for row in rows if row.startswith(("| pose | layer_spatial | 1 | ",
                                                          "| texture | layer_spatial | 1 | "))
                   and row.endswith(" | 3 |")]
  assert len(dynamics_rows) == 2, rows  # the dynamics table: one row per study


def test_quick_rerun_skips_recorded_runs(quick):
  path = quick["root"] / "out" / "t-ablation.jsonl"
  before = path.read_text()
  result = _run(*quick["args"])
  assert result.returncode == 0, result.stderr
  assert path.read_text() == before
  assert result.stderr.count("skipped") == len(quick["records"])


def _record(study, task, variant, seed, **metrics):
  budget = dataclasses.asdict(ablation.FULL[task])
  return {"benchmark": "ablation", "study": study, "task": task, "variant": variant,
          "seed": seed, "dataset": study, "budget": budget, "wall_time_s": 60.0,
          "started": f"2026-11-30T10:0{seed}:00+00:00", "commit": "0" * 40,
          "machine": {"cpu_model": "test cpu", "usable_cores": 2, "jax": "x"},
          "metrics": metrics}


def _pose_metrics(translation, rotation, steps=()):
  return {"median_translation_m": translation, "median_rotation_deg": rotation,
          "baseline_median_translation_m": 0.5, "baseline_median_rotation_deg": 20.0,
          "within_0.05m_5deg": 0.1, "within_0.1m_10deg": 0.3,
          "per_step": [{"median_translation_m": t, "median_rotation_deg": r, "step": i + 1}
                       for i, (t, r) in enumerate(steps)],
          "layer_selection_frequency": [{"Conv-3B": 1.0, "Conv-4E": 0.0, "Conv-5B": 0.0},
                                        {"Conv-3B": 0.0, "Conv-4E": 0.5, "Conv-5B": 0.5}]
          if steps else []}


def _classification_metrics(accuracy, frequency_3b):
  return {"accuracy": accuracy, "mean_class_accuracy": accuracy,
          "confusion_matrix": [[1, 0, 0, 0]] * 4,
          "per_step": [{"accuracy": accuracy / 2, "step": 1}, {"accuracy": accuracy, "step": 2}],
          "layer_selection_frequency": [
              {"Conv-3B": frequency_3b, "Conv-4E": 1 - frequency_3b, "Conv-5B": 0.0}] * 2}


def test_report_of_hand_made_records(tmp_path):
  records = [
      _record("pose", "pose", "posenet", 0, **_pose_metrics(0.2, 10.0)),
      _record("pose", "pose", "posenet", 1, **_pose_metrics(0.4, 14.0)),
      _record("pose", "pose", "layer_spatial", 0,
              **_pose_metrics(0.1, 5.0, steps=[(0.3, 9.0), (0.1, 5.0)])),
      _record("pose", "pose", "layer_spatial", 1,
              **_pose_metrics(0.3, 7.0, steps=[(0.5, 11.0), (0.3, 7.0)])),
      _record("texture", "classification", "layer_spatial", 0, **_classification_metrics(0.5, 1.0)),
      _record("texture", "classification", "layer_spatial", 1, **_classification_metrics(0.7, 0.0)),
  ]
  table = ablation.report(records)
  rows = table.splitlines()
  # mean and sample standard deviation over the two seeds; x mean pose = median / 0.5 m.
  assert "| posenet | 2 | 0.300 ± 0.141 | 12.00 ± 2.83 | 0.60 ± 0.28 | 0.100 ± 0.000 " \
         "| 0.300 ± 0.000 |" in rows
  assert "| layer_spatial | 2 | 0.200 ± 0.141 | 6.00 ± 1.41 | 0.40 ± 0.28 | 0.100 ± 0.000 " \
         "| 0.300 ± 0.000 |" in rows
  assert "| mean training pose | - | 0.500 | 20.00 | 1.00 | - | - |" in rows
  assert "| 1 | 0.400 ± 0.141 | 10.00 ± 1.41 |" in rows  # the full model's step 1
  assert "| layer_spatial | 2 | 0.600 ± 0.141 | 0.600 ± 0.141 |" in rows
  assert "| chance | - | 0.250 | 0.250 |" in rows
  assert "| texture | layer_spatial | 1 | 0.50 ± 0.71 | 0.50 ± 0.71 | 0.00 ± 0.00 |" in rows
  assert "| pose | layer_spatial | 2 | 0.00 ± 0.00 | 0.50 ± 0.00 | 0.50 ± 0.00 |" in rows
  assert "6 runs, seeds [0, 1]. Sum of run times 6.0 min" in table

  source = tmp_path / "x-ablation.jsonl"
  source.write_text("".join(json.dumps(r) + "\n" for r in records))
  assert ablation.main(["--report", str(source), "--out-dir", str(tmp_path / "out")]) == 0
  assert (tmp_path / "out" / "x-ablation.md").read_text() == table + "\n"
  assert (tmp_path / "out" / "x-ablation-layers.png").stat().st_size > 0


def test_report_retrieval_rows_of_a_walks_study():
  knn = [{"knn_pixels_median_translation_m": 0.45, "knn_pixels_median_rotation_deg": 9.0,
          "knn_features_median_translation_m": features, "knn_features_median_rotation_deg": 12.0}
         for features in (0.2, 0.4)]
  records = [_record("walks", "pose", variant, seed, **_pose_metrics(0.3, 8.0), **knn[seed])
             for variant in ("posenet", "layer_spatial") for seed in (0, 1)]
  rows = ablation.report(records).splitlines()
  assert any(row.startswith("### walks: `seven_scenes/synthetic_walks`") for row in rows)
  # pixels: one lookup, the same in every run; features: each run's frozen backbone.
  assert "| nearest training image, pixels | - | 0.450 ± 0.000 | 9.00 ± 0.00 " \
         "| 0.90 ± 0.00 | - | - |" in rows
  assert "| nearest training image, features (each run's deepest tap) | - | 0.300 ± 0.115 " \
         "| 12.00 ± 0.00 | 0.60 ± 0.23 | - | - |" in rows


def test_bad_arguments_are_named(tmp_path):
  result = _run("--studies", "pose,nope")
  assert result.returncode == 2 and "'nope'" in result.stderr
  result = _run("--variants", "layer_spatial,spatial_9z")
  assert result.returncode == 2 and "'spatial_9z'" in result.stderr
  with pytest.raises(SystemExit, match="no such file"):
    ablation.main(["--report", str(tmp_path / "missing.jsonl")])
  mixed = [_record("pose", "pose", "posenet", seed, **_pose_metrics(0.2, 10.0))
           for seed in (0, 1)]
  mixed[1]["setting"] = "pretrained"
  with pytest.raises(SystemExit, match=r"several settings \['pretrained', 'random_googlenet'\]"):
    ablation.report(mixed)
  result = _run("--plan", "budget_x4", "--seeds", "0")
  assert result.returncode == 2 and "--plan budget_x4 fixes its runs: drop --seeds" in result.stderr
  result = _run("--budget-scale", "0")
  assert result.returncode == 2
  assert "--budget-scale: expected an integer >= 1, got 0" in result.stderr
  broken = tmp_path / "broken.jsonl"
  broken.write_text('{"benchmark": "ablation"}\nnot json\n')
  with pytest.raises(SystemExit, match=r"broken.jsonl:2: not a JSON object"):
    ablation.main(["--report", str(broken), "--out-dir", str(tmp_path)])


def test_plans_run_known_variants_each_seed_once():
  for plan in ablation.PLANS.values():
    setting = ablation.SETTINGS[plan.setting]
    studies = {study.name: study for study in ablation.STUDIES}
    assert len(set(plan.runs)) == len(plan.runs), plan.name
    for study, variant, seed in plan.runs:
      assert variant in studies[study].variants(setting) and seed in (0, 1, 2), plan.name
    per_seed = collections.Counter(seed for _, _, seed in plan.runs)
    assert len(set(per_seed.values())) == 1 and set(per_seed) == {0, 1, 2}, plan.name
  x4, end_to_end = ablation.PLANS["budget_x4"], ablation.PLANS["end_to_end"]
  assert (x4.setting, x4.budget_scale) == ("pretrained", 4)
  assert [run[:2] for run in x4.runs[:4]] == [("pose", v) for v in ablation.KEY_POSE_VARIANTS]
  assert ablation.SETTINGS[end_to_end.setting].freeze_backbone is False
  pose = next(study for study in ablation.STUDIES if study.name == "pose")
  e2e_setting = ablation.SETTINGS["end_to_end"]
  assert {v for s, v, _ in end_to_end.runs if s == "pose"} == set(pose.variants(e2e_setting))
  assert ablation.scaled(ablation.FULL["pose"], 4).num_train_steps == 1600
  longer = ablation.scaled(ablation.FULL["pose"], 4)
  assert longer.warmup_steps == ablation.FULL["pose"].warmup_steps


def _dynamics_row(step, shares, entropy):
  return {"step": step, "train_steps": 20, "choices": 320, "layers": ["a", "b", "c"],
          "share": shares, "entropy": entropy}


def test_settled_at_is_the_first_step_of_the_final_unbroken_run():
  mixed, a, b = [0.4, 0.3, 0.3], [0.95, 0.05, 0.0], [0.0, 0.92, 0.08]
  rows = [_dynamics_row(20, [mixed, mixed], [1.0, 1.0]),
          _dynamics_row(40, [a, b], [0.2, 0.3]),
          _dynamics_row(60, [a, mixed], [0.2, 0.9]),  # step 2 unsettles: the run restarts
          _dynamics_row(80, [a, b], [0.1, 0.2]),
          _dynamics_row(100, [a, b], [0.1, 0.1])]
  assert ablation.settled_at(rows) == 80
  assert ablation.settled_at(rows[:3]) is None  # the last row is not settled
  switched = rows[:2] + [_dynamics_row(60, [b, b], [0.1, 0.1])]  # step 1 ends on tap b
  assert ablation.settled_at(switched) == 60
  assert ablation.settled_at([]) is None


def test_compare_puts_record_files_side_by_side(tmp_path):
  paths = []
  for name, setting, translations in (("frozen", "pretrained", (0.2, 0.4)),
                                      ("e2e", "end_to_end", (0.1, 0.1))):
    records = [_record("pose", "pose", "layer_spatial", seed, **_pose_metrics(t, 5.0))
               for seed, t in enumerate(translations)]
    for record in records:
      record["setting"] = setting
    paths.append(tmp_path / f"{name}.jsonl")
    paths[-1].write_text("".join(json.dumps(r) + "\n" for r in records))
  table = ablation.compare(ablation.read_files(paths)).splitlines()
  assert "| variant | pretrained, 400 pose steps | end_to_end, 400 pose steps |" in table
  assert ("| layer_spatial | 0.300 ± 0.141 / 5.00 ± 0.00 (2) "
          "| 0.100 ± 0.000 / 5.00 ± 0.00 (2) |") in table
  with pytest.raises(SystemExit, match="no such file"):
    ablation.read_files([tmp_path / "missing.jsonl"])
  assert ablation.main(["--compare", ",".join(map(str, paths)), "--tag", "both",
                        "--out-dir", str(tmp_path / "out")]) == 0
  assert (tmp_path / "out" / "both-compare.md").read_text().splitlines() == table
  assert (tmp_path / "out" / "both-compare.png").read_bytes()[:4] == b"\x89PNG"


def test_walks_diagnosis_changes_one_thing_per_experiment():
  import walks_diagnosis  # benchmarks/walks_diagnosis.py (benchmarks/ is on sys.path now)
  from lsattn import config_checks
  reference, _ = walks_diagnosis.experiment_config("reference", "walks", 0, ROOT / "unused")
  assert reference.dataset == "seven_scenes/synthetic_walks"
  assert reference.model_variant == "layer_spatial" and reference.freeze_backbone
  for name, (budget_changes, config_changes) in walks_diagnosis.EXPERIMENTS.items():
    config, _ = walks_diagnosis.experiment_config(name, "walks", 0, ROOT / "unused")
    config_checks.check_config(config)
    # The study checkpoints and evaluates once, at its last step: those follow the budget.
    follows_steps = {"eval_every_steps", "checkpoint_every_steps"}
    changed = {key for key in reference.keys() if config[key] != reference[key]} - follows_steps
    assert changed == set(budget_changes) | set(config_changes), name


def test_report_names_each_machine_and_commit_of_appended_records():
  records = [_record("pose", "pose", "posenet", seed, **_pose_metrics(0.2, 10.0))
             for seed in (0, 1, 2)]
  header = ablation.report(records).splitlines()[2]
  assert "Commit 0000000000." in header and "runs)" not in header, header  # one of each
  records[2] = dict(records[2], commit="f" * 40, machine={"cpu_model": "other", "usable_cores": 2,
                                                             "jax": "0.10.2"})
  header = ablation.report(records).splitlines()[2]
  assert f"{'f' * 10} (1 runs)" in header and "(2 runs)" in header, header
  assert "other, 2 cores, jax 0.10.2 (1 runs)" in header, header
