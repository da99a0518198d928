"""A dataset's table over scenes, as papers print it: per scene, then the mean over scenes.

``scene_table(workdirs)`` reads each run's ``eval/metrics.json`` (written by
train.py's final evaluation or eval.py), one run per scene of one dataset,
all under one ground truth (7-Scenes: D-SLAM or SfM pseudo ground truth,
``config.ground_truth``), and returns a row per scene and the mean row.

The mean row is the mean over scenes of the per-scene numbers: of the
per-scene medians (the average papers print for 7-Scenes and Cambridge), and
of the per-scene fractions within each threshold. It is neither the median
over all test frames pooled nor any one scene's value (a peer's script printed
the last scene's median as the average).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Sequence

import numpy as np

from lsattn.data import datasets
from lsattn.errors import LsattnError
from lsattn.runs import atomic

# (metrics.json key, column title, format) of each column after the scene.
COLUMNS = (("median_translation_m", "median m", "{:.3f}"),
           ("median_rotation_deg", "median deg", "{:.2f}"),
           ("within_0.05m_5deg", "5cm/5deg", "{:.3f}"),
           ("within_0.1m_5deg", "10cm/5deg", "{:.3f}"),
           ("within_0.5m_5deg", "50cm/5deg", "{:.3f}"),
           ("num_examples", "frames", "{:d}"))
GROUND_TRUTH_TITLES = {"dslam": "D-SLAM (the original poses)",
                       "sfm": "SfM pseudo ground truth (Brachmann et al. 2021)"}


@dataclasses.dataclass(frozen=True)
class SceneTable:
  """Rows of a dataset's table.

  Attributes:
    builder: the dataset builder, e.g. 'seven_scenes'.
    ground_truth: 'dslam' or 'sfm' for 7-Scenes scenes, None for datasets with one.
    scenes: {scene: {column key: value}} in the order given, with 'workdir'.
    mean: {column key: mean over scenes}; 'num_examples' is the sum.
  """
  builder: str
  ground_truth: str | None
  scenes: dict[str, dict]
  mean: dict[str, float]


def read_metrics(workdir: str | pathlib.Path) -> dict:
  """A pose run's eval/metrics.json, checked to hold the table's columns."""
  path = pathlib.Path(workdir).expanduser() / "eval" / "metrics.json"
  if not path.is_file():
    raise LsattnError(f"{path} not found: evaluate the run first (python eval.py "
                      f"--workdir={workdir})")
  try:
    result = json.loads(path.read_text())
  except (OSError, ValueError) as error:
    raise LsattnError(f"{path}: unreadable ({error})") from None
  missing = [key for key, _, _ in COLUMNS if key not in result]
  if not isinstance(result.get("dataset"), str) or "median_translation_m" in missing:
    raise LsattnError(f"{path}: not a pose run's evaluation (no dataset or "
                      f"median_translation_m)")
  if missing:
    raise LsattnError(f"{path}: lacks {', '.join(missing)} (written before lsattn reported "
                      f"them): run python eval.py --workdir={workdir} again")
  return result


def _ground_truth(result: dict) -> str | None:
  # Runs from before config.ground_truth existed were all trained on D-SLAM poses.
  if not datasets.has_two_ground_truths(result["dataset"]):
    return None
  return result.get("ground_truth", "dslam")


def scene_table(workdirs: Sequence[str | pathlib.Path]) -> SceneTable:
  """The table of the runs in `workdirs`: one pose run per scene of one dataset, under
  one ground truth.

  Raises:
    LsattnError: no run given, a run without a readable pose evaluation, runs of
      different datasets or ground truths, or two runs of one scene (each named).
  """
  if not workdirs:
    raise LsattnError("no run folders given for the table")
  first = None  # (workdir, dataset, builder, ground truth) of the first run
  scenes: dict[str, dict] = {}
  for workdir in workdirs:
    result = read_metrics(workdir)
    builder, scene = datasets.split_name(result["dataset"])
    ground_truth = _ground_truth(result)
    first = first or (workdir, result["dataset"], builder, ground_truth)
    if (builder, ground_truth) != first[2:]:
      raise LsattnError(f"runs {first[0]} ({first[1]}, ground truth {first[3]}) and {workdir} "
                        f"({result['dataset']}, ground truth {ground_truth}) differ in dataset "
                        f"or ground truth; a table holds one of each")
    if scene in scenes:
      raise LsattnError(f"runs {scenes[scene]['workdir']} and {workdir} are both of scene "
                        f"{scene!r}; give one run per scene")
    scenes[scene] = {**{key: result[key] for key, _, _ in COLUMNS}, "workdir": str(workdir)}
  mean = {key: float(np.mean([row[key] for row in scenes.values()]))
          for key, _, _ in COLUMNS if key != "num_examples"}
  mean["num_examples"] = int(sum(row["num_examples"] for row in scenes.values()))
  return SceneTable(first[2], first[3], scenes, mean)


def format_table(table: SceneTable) -> str:
  """A Markdown table: a title line, a row per scene, then 'mean' (over scenes)."""
  truth = GROUND_TRUTH_TITLES.get(table.ground_truth, "the dataset's poses")
  lines = [f"{table.builder}, ground truth: {truth}; mean: over scenes of the per-scene "
           f"numbers", "",
           "| scene | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
           "| --- |" + " ---: |" * len(COLUMNS)]
  for name, row in [*table.scenes.items(), ("mean", table.mean)]:
    lines.append(f"| {name} | " + " | ".join(form.format(row[key]) for key, _, form in COLUMNS)
                 + " |")
  return "\n".join(lines)


def check_table_path(path: str | pathlib.Path) -> None:
  """Refuses a table file that is neither .json nor .md, or whose folder does not exist."""
  path = pathlib.Path(path).expanduser()
  if path.suffix not in (".json", ".md"):
    raise LsattnError(f"--table={path}: expected a .json or .md file name")
  if not path.parent.is_dir():
    raise LsattnError(f"--table={path}: folder {path.parent} does not exist; create it first")


def write_table(path: str | pathlib.Path, table: SceneTable) -> pathlib.Path:
  """Writes the table as JSON (`.json`) or Markdown (`.md`), whole or not at all."""
  check_table_path(path)
  path = pathlib.Path(path).expanduser()
  text = (json.dumps(dataclasses.asdict(table), indent=2) + "\n" if path.suffix == ".json"
          else format_table(table) + "\n")
  return atomic.write_text(path, text)
