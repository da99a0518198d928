"""Layer-choice dynamics: the selection entropy, the run folder's layer_choice_dynamics.jsonl
(which runs write it, its rows, a resume), from a tiny run (configs/test.py)."""

import json
import shutil
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import test as test_config
from lsattn import experiment, model
from lsattn.nn import gumbel
from lsattn.runs import checkpoint, choice_dynamics

LAYERS = ("Conv-3B", "Conv-4C", "Conv-4E", "Conv-5B")  # names of k = 4 layers


def _forcing(params, layer: int):
  """`params` whose layer selection picks `layer` whatever the image and noise:
  logits 50 * one_hot(layer) (Gumbel noise exceeds 50 with probability ~1e-22)."""
  def force(path, leaf):
    names = [key.key for key in path if hasattr(key, "key")]
    if names[:3] != ["core", "select", "logits"]:
      return leaf
    if names[3] == "bias":
      return 50.0 * jax.nn.one_hot(layer, leaf.shape[-1], dtype=leaf.dtype)
    return jnp.zeros_like(leaf)
  return jax.tree_util.tree_map_with_path(force, params)


def test_choice_entropy_is_that_of_the_softmax_and_bounded():
  logits = jnp.array([[0.0, 0.0, 0.0, 0.0], [2.0, -1.0, 0.5, 0.0], [80.0, 0.0, 0.0, 0.0]])
  probabilities = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
  expected = -np.sum(np.where(probabilities > 0, probabilities * np.log(probabilities), 0.0), -1)
  entropy = gumbel.choice_entropy(logits)
  np.testing.assert_allclose(entropy, expected, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(entropy[0], np.log(4), rtol=1e-6)  # uniform: the maximum
  assert 0.0 <= float(entropy[2]) < 1e-20  # one layer always: 0, not nan
  assert gumbel.choice_entropy(logits.astype(jnp.bfloat16)).dtype == jnp.float32


def test_file_keeps_each_step_once_and_drops_an_unfinished_line(tmp_path):
  path = tmp_path / choice_dynamics.FILE_NAME
  counts = np.array([[3, 1, 0, 0], [0, 0, 4, 0]])
  for step in (2, 4, 6):
    choice_dynamics.append(path, choice_dynamics.row(step, 2, LAYERS, counts, [0.5, 0.25]))
  with open(path, "a") as handle:
    handle.write('{"step": 8, "train_st')  # a crash while appending
  first = json.loads(path.read_text().splitlines()[0])
  assert first == {"step": 2, "train_steps": 2, "choices": 4, "layers": list(LAYERS),
                   "share": [[0.75, 0.25, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]],
                   "entropy": [0.5, 0.25]}
  assert choice_dynamics.read(path).steps.tolist() == [2, 4, 6]  # the unfinished line: no row
  choice_dynamics.keep_until(path, 4)  # resumed from the checkpoint of step 4
  assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [2, 4]
  choice_dynamics.append(path, choice_dynamics.row(6, 2, LAYERS, counts, [np.nan, 0.1]))
  read = choice_dynamics.read(path)
  assert read.steps.tolist() == [2, 4, 6] and read.layers == LAYERS
  assert read.share.shape == (3, 2, 4) and np.isnan(read.entropy[2, 0])  # written as null
  np.testing.assert_allclose(read.share.sum(axis=2), 1.0)
  choice_dynamics.keep_until(path, 0)  # a fresh start: no row survives
  assert path.read_text() == "" and choice_dynamics.read(path) is None
  assert choice_dynamics.read(tmp_path / "absent.jsonl") is None


@pytest.mark.parametrize("variant, logged", [("layer_spatial", True), ("layer_only", True),
                                             ("spatial_only", False), ("lstm_posenet", False)])
def test_only_runs_that_choose_a_layer_log_the_dynamics(tmp_path, variant, logged):
  config = test_config.get_config()
  config.model_variant = variant
  model_config = model.ModelConfig.from_config(config)
  logger = experiment._Logger(tmp_path, types.SimpleNamespace(model_config=model_config), 0)
  steps, k = model.num_steps(model_config), len(model_config.layers)
  history = [{"loss": np.float32(1.0), "nonfinite": np.int32(0),
              "layer_counts": np.full((steps, k), 4.0 / k, np.float32),
              "layer_entropy": np.full((steps,), 0.5, np.float32)}] * 2
  logger.train_metrics(2, history)
  logger.close()
  path = tmp_path / choice_dynamics.FILE_NAME
  assert path.exists() == logged
  if logged:
    assert choice_dynamics.read(path).entropy.tolist() == [[0.5, 0.5]]


def test_run_logs_the_choice_once_per_step_across_a_resume(data, tmp_path, monkeypatch):
  """A run, then a crash between the log of step 4 and its checkpoint (the resumed run
  logs step 4 again, and an unfinished line was left), resumed with the selection forced
  to the last layer: each step is logged once, and the rows follow the choice."""
  workdir = tmp_path / "run"
  config = test_config.get_config()  # 4 steps, logged and saved every 2, batch 4
  config.data_dir, config.manual_dir = data["data_dir"], data["manual_dir"]
  layers = list(model.ModelConfig.from_config(config).layer_names)
  experiment.train_and_evaluate(config, workdir)
  path = workdir / choice_dynamics.FILE_NAME
  before = [json.loads(line) for line in path.read_text().splitlines()]
  assert [row["step"] for row in before] == [2, 4]
  for row in before:  # a fresh model: a choice not yet settled
    assert row["layers"] == layers and row["choices"] == 8  # 2 train steps of batch 4
    np.testing.assert_allclose(np.sum(row["share"], axis=1), 1.0)
    assert all(0.1 < value <= np.log(4) + 1e-6 for value in row["entropy"])
  shutil.rmtree(workdir / "checkpoints" / "4")
  with open(path, "a") as handle:
    handle.write('{"step": 6, "sha')
  restore_latest = checkpoint.restore_latest

  def forced_last(*args, **kwargs):
    state, meta, step = restore_latest(*args, **kwargs)
    assert step == 2
    return state.replace(params=_forcing(state.params, 3)), meta, step

  monkeypatch.setattr(checkpoint, "restore_latest", forced_last)
  experiment.train_and_evaluate(config, workdir)
  after = [json.loads(line) for line in path.read_text().splitlines()]
  assert [row["step"] for row in after] == [2, 4] and after[0] == before[0]
  assert after[1]["train_steps"] == 2 and after[1]["choices"] == 8
  np.testing.assert_array_equal(after[1]["share"], [[0, 0, 0, 1], [0, 0, 0, 1]])
  assert all(0.0 <= value < 1e-6 for value in after[1]["entropy"])
  assert after[1]["share"] != before[1]["share"]
