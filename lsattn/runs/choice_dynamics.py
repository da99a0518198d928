"""A run's layer-choice dynamics: ``<workdir>/layer_choice_dynamics.jsonl``.

Training appends one JSON object a line at each log step (process 0), in
runs with layer selection only (the baselines and ``spatial_only`` have no
choice: no file). A row holds what the train step reported for the
``train_steps`` steps since the previous row (``log_every_steps``, fewer in
the first row after a resume between two log steps)::

  {"step": 200, "train_steps": 100, "choices": 4000,
   "layers": ["Conv-3B", "Conv-4C", "Conv-4E", "Conv-5B"],
   "share": [[0.31, 0.22, 0.25, 0.22], [0.12, 0.58, 0.18, 0.12]],
   "entropy": [1.37, 1.08]}

``share[t][i]``: the fraction of the ``choices`` made at recurrent step
t + 1 (one per example and train step, Gumbel noise included) that took
layer i, summing to 1 over i; ``entropy[t]``: the mean, over the same
examples, of the entropy (nats, in [0, log k]) of the distribution those
choices are drawn from, the softmax of the selection logits before the
noise (`lsattn.nn.gumbel.choice_entropy`). A value that is not finite is
written as null.

**Resume.** A run resumes from its latest checkpoint, which may be older
than its last row (a crash between a log step and the next save), and
trains those steps again, logging the same rows again. So `keep_until`
keeps the rows up to the resumed step, and also drops an unfinished last
line (a crash while appending), before training appends: the file holds
each log step once. Rows of steps before the run's first log of this file
(a run folder of 0.1) are not made up.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import NamedTuple, Sequence

import numpy as np

from lsattn.runs import atomic

FILE_NAME = "layer_choice_dynamics.jsonl"


class Dynamics(NamedTuple):
  """The rows of a file as arrays (R rows, N recurrent steps, k layers).

  Attributes:
    steps: [R] int, the train step of each row.
    train_steps: [R] int, the train steps each row summarises.
    share: [R, N, k] float, fraction of the choices per layer (nan: null).
    entropy: [R, N] float, mean selection entropy in nats (nan: null).
    layers: the k layer names.
  """
  steps: np.ndarray
  train_steps: np.ndarray
  share: np.ndarray
  entropy: np.ndarray
  layers: tuple[str, ...]


def _number(value: float) -> float | None:
  value = float(value)
  return round(value, 6) if math.isfinite(value) else None  # float32's digits, no more


def row(step: int, train_steps: int, layers: Sequence[str], counts, entropy) -> dict:
  """One line of the file.

  Args:
    step: the train step after which it is logged.
    train_steps: how many train steps `counts` and `entropy` summarise.
    layers: the k layer names.
    counts: [N, k] how often each layer was chosen at each recurrent step.
    entropy: [N] mean selection entropy per recurrent step.
  """
  counts = np.asarray(counts, np.float64)
  entropy = np.asarray(entropy, np.float64)
  if counts.ndim != 2 or counts.shape[1] != len(layers) or entropy.shape != counts.shape[:1]:
    raise ValueError(f"counts [N, {len(layers)}] and entropy [N] expected, got "
                     f"{counts.shape} and {entropy.shape}")
  totals = counts.sum(axis=1, keepdims=True)
  share = counts / np.where(totals > 0, totals, 1.0)
  return {"step": int(step), "train_steps": int(train_steps),
          "choices": int(totals.max(initial=0)), "layers": list(layers),
          "share": [[_number(value) for value in step_share] for step_share in share],
          "entropy": [_number(value) for value in entropy]}


def _complete_rows(path: pathlib.Path) -> tuple[list[str], bool]:
  """(the lines that are whole rows, whether any line was not)."""
  try:
    text = path.read_text(encoding="utf-8")
  except FileNotFoundError:
    return [], False
  kept, dropped = [], False
  for line in text.splitlines(keepends=True):
    try:
      whole = line.endswith("\n") and isinstance(json.loads(line).get("step"), int)
    except (ValueError, AttributeError):
      whole = False
    if whole:
      kept.append(line)
    else:
      dropped = True
  return kept, dropped


def keep_until(path: str | pathlib.Path, step: int) -> None:
  """Keeps the whole rows of steps up to `step` (the step training resumes
  from), rewriting the file atomically if anything else was there."""
  path = pathlib.Path(path)
  lines, dropped = _complete_rows(path)
  kept = [line for line in lines if json.loads(line)["step"] <= step]
  if dropped or len(kept) != len(lines):
    atomic.write_text(path, "".join(kept))


def append(path: str | pathlib.Path, line: dict) -> None:
  """Appends one row: one line, written at once (a crash leaves at most that line unfinished)."""
  with open(path, "a", encoding="utf-8") as handle:
    handle.write(json.dumps(line) + "\n")


def rows(path: str | pathlib.Path) -> list[dict]:
  """The file's whole rows as written, in step order ([] without the file)."""
  lines, _ = _complete_rows(pathlib.Path(path))
  return sorted((json.loads(line) for line in lines), key=lambda item: item["step"])


def read(path: str | pathlib.Path) -> Dynamics | None:
  """The file's whole rows as arrays, in step order; None without any."""
  whole = rows(path)
  if not whole:
    return None
  as_float = lambda values: np.asarray(values, dtype=object).astype(float)  # null -> nan
  return Dynamics(steps=np.array([item["step"] for item in whole]),
                  train_steps=np.array([item["train_steps"] for item in whole]),
                  share=np.stack([as_float(item["share"]) for item in whole]),
                  entropy=np.stack([as_float(item["entropy"]) for item in whole]),
                  layers=tuple(whole[-1]["layers"]))
