"""The dataset table over scenes (lsattn.evaluation.tables, eval.py --runs): the mean
row is the mean over scenes of the per-scene numbers, not the last scene's nor the pooled
median; runs that cannot share a table are refused, each named. The runs' metrics.json
files are written here as eval writes them."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from lsattn import LsattnError
from lsattn.evaluation import tables

ROOT = pathlib.Path(__file__).resolve().parent.parent
# scene: (median m, median deg, within 5 cm / 5 deg, 10 cm / 5 deg, 50 cm / 5 deg, frames)
SCENES = {"chess": (0.10, 4.0, 0.2, 0.4, 0.9, 2000),
          "fire": (0.30, 10.0, 0.0, 0.1, 0.5, 2000),
          "heads": (0.05, 3.0, 0.6, 0.8, 1.0, 1000)}


def _run(root: pathlib.Path, scene: str, values=None, **extra) -> pathlib.Path:
  """A run folder whose eval/metrics.json holds a scene's numbers."""
  median_m, median_deg, within_5, within_10, within_50, frames = values or SCENES[scene]
  result = {"dataset": f"seven_scenes/{scene}", "median_translation_m": median_m,
            "median_rotation_deg": median_deg, "mean_translation_m": 2 * median_m,
            "mean_rotation_deg": 2 * median_deg, "within_0.05m_5deg": within_5,
            "within_0.1m_5deg": within_10, "within_0.5m_5deg": within_50,
            "num_examples": frames, "split": "test", **extra}
  workdir = root / f"{scene}_{extra.get('ground_truth', 'old')}"
  (workdir / "eval").mkdir(parents=True)
  (workdir / "eval" / "metrics.json").write_text(json.dumps(result))
  return workdir


def test_the_mean_is_over_scenes_of_the_per_scene_numbers(tmp_path):
  runs = [_run(tmp_path, scene, ground_truth="sfm") for scene in SCENES]
  table = tables.scene_table(runs)
  assert (table.builder, table.ground_truth) == ("seven_scenes", "sfm")
  assert list(table.scenes) == list(SCENES)
  assert table.scenes["fire"]["median_translation_m"] == 0.30
  assert table.mean["median_translation_m"] == pytest.approx(0.15)  # not heads' 0.05
  assert table.mean["median_rotation_deg"] == pytest.approx(17 / 3)  # not the middle 4.0
  assert table.mean["within_0.05m_5deg"] == pytest.approx(0.8 / 3)
  assert table.mean["within_0.1m_5deg"] == pytest.approx(1.3 / 3)
  assert table.mean["within_0.5m_5deg"] == pytest.approx(2.4 / 3)
  assert table.mean["num_examples"] == 5000

  text = tables.format_table(table).splitlines()
  assert "SfM pseudo ground truth" in text[0]
  assert text[-1].split("|")[1:-1] == [" mean ", " 0.150 ", " 5.67 ", " 0.267 ", " 0.433 ",
                                       " 0.800 ", " 5000 "]
  assert text[-2].startswith("| heads | 0.050 | 3.00 |")
  written = tables.write_table(tmp_path / "table.json", table)
  assert json.loads(written.read_text())["mean"]["median_translation_m"] == pytest.approx(0.15)


def test_runs_from_before_the_ground_truth_key_are_dslam(tmp_path):
  table = tables.scene_table([_run(tmp_path, "chess"),
                              _run(tmp_path, "fire", ground_truth="dslam")])
  assert table.ground_truth == "dslam" and "D-SLAM" in tables.format_table(table)


def _mixed_ground_truths(root):
  return [_run(root, "chess", ground_truth="dslam"), _run(root, "fire", ground_truth="sfm")]


def _two_datasets(root):
  cambridge = _run(root, "chess")
  metrics = cambridge / "eval" / "metrics.json"
  metrics.write_text(metrics.read_text().replace("seven_scenes/chess",
                                                 "cambridge_landmarks/shop_facade"))
  return [_run(root, "fire"), cambridge]


def _one_scene_twice(root):
  first = _run(root, "chess", ground_truth="sfm")
  again = root / "again"
  (again / "eval").mkdir(parents=True)
  (again / "eval" / "metrics.json").write_text((first / "eval" / "metrics.json").read_text())
  return [first, _run(root, "fire", ground_truth="sfm"), again]


def _not_evaluated(root):
  (root / "fresh").mkdir()
  return [_run(root, "chess"), root / "fresh"]


def _classification(root):
  run = root / "mit"
  (run / "eval").mkdir(parents=True)
  (run / "eval" / "metrics.json").write_text(json.dumps({"dataset": "mit67/full",
                                                         "accuracy": 0.7}))
  return [run]


BAD_TABLES = {"mixed-ground-truths": (_mixed_ground_truths, ["chess_dslam", "fire_sfm",
                                                             "ground truth"]),
              "two-datasets": (_two_datasets, ["fire_old", "cambridge_landmarks/shop_facade"]),
              "one-scene-twice": (_one_scene_twice, ["chess_sfm", "again", "'chess'"]),
              "not-evaluated": (_not_evaluated, ["fresh/eval/metrics.json", "eval.py"]),
              "classification": (_classification, ["mit/eval/metrics.json", "pose run"])}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_runs_that_cannot_share_a_table_are_named(tmp_path, case):
  make, named = BAD_TABLES[case]
  with pytest.raises(LsattnError) as error:
    tables.scene_table(make(tmp_path))
  for part in named:
    assert part in str(error.value)


def test_eval_py_runs_prints_the_table_and_writes_it(tmp_path):
  runs = ",".join(str(_run(tmp_path, scene)) for scene in SCENES)
  result = subprocess.run([sys.executable, str(ROOT / "eval.py"), f"--runs={runs}",
                           f"--table={tmp_path / 'seven_scenes.md'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1].startswith("| mean | 0.150 | 5.67 |")
  assert (tmp_path / "seven_scenes.md").read_text().strip() == result.stdout.strip()
  both = subprocess.run([sys.executable, str(ROOT / "eval.py"), f"--runs={runs}",
                         f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
  assert both.returncode == 2
  assert both.stderr.strip() == ("error: give --workdir (evaluate a run) or --runs (a table "
                                 "over runs), one of them")
