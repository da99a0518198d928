"""The run folder stands alone: train.py writes <workdir>/config.json, eval.py reads it;
a given config may change only the keys that leave the model as it is."""

from __future__ import annotations

import json
import shutil

import pytest

from configs import test as test_config
from lsattn import LsattnError, config_schema as defaults, experiment
from lsattn.runs import run_folder
import trained_runs


def test_every_config_key_is_either_the_runs_or_a_runtime_key():
  run_keys, runtime = set(defaults.run_keys()), set(defaults.runtime_keys())
  assert not run_keys & runtime
  assert run_keys | runtime == set(defaults.get_config().keys())
  # What fixes the model's shapes is the run's (checkpoint.shape_signature's keys).
  assert {"hidden_size", "projection_size", "num_recurrent_steps", "candidate_layers",
          "image_size", "freeze_backbone", "learned_loss_weighting", "model_variant",
          "backbone", "num_classes"} <= run_keys
  assert {"resize_size", "channel_mean", "dataset", "task"} <= run_keys


def test_config_round_trips_with_tuples(tmp_path):
  config = test_config.get_config()
  config.channel_mean = (1.5, 2.0, 3.25)
  run_folder.write(tmp_path, config)
  read = run_folder.read(tmp_path)
  assert read.to_dict() == config.to_dict()
  assert isinstance(read.resize_size, tuple) and isinstance(read.candidate_layers, tuple)
  assert read.channel_mean == (1.5, 2.0, 3.25) and read.learning_rate == 1e-3
  assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temporary left


def test_a_key_added_since_the_run_gets_its_default(tmp_path):
  config = test_config.get_config()
  run_folder.write(tmp_path, config)
  saved = json.loads((tmp_path / "config.json").read_text())
  del saved["num_figure_examples"]
  (tmp_path / "config.json").write_text(json.dumps(saved))
  assert run_folder.read(tmp_path).num_figure_examples == defaults.get_config().num_figure_examples


def test_resolve_applies_runtime_keys_and_refuses_model_keys(tmp_path):
  trained = test_config.get_config()
  run_folder.write(tmp_path, trained)
  own, overrides = run_folder.resolve(tmp_path)
  assert own.to_dict() == trained.to_dict() and overrides == {}

  given = test_config.get_config()
  given.eval_batch_size, given.data_dir = 2, "/elsewhere"
  merged, overrides = run_folder.resolve(tmp_path, given)
  assert (merged.eval_batch_size, merged.data_dir, merged.hidden_size) == (2, "/elsewhere", 8)
  assert overrides == {"data_dir": {"run": trained.data_dir, "used": "/elsewhere"},
                       "eval_batch_size": {"run": 4, "used": 2}}

  given.hidden_size, given.resize_size = 16, (48, 64)
  with pytest.raises(LsattnError) as refused:
    run_folder.resolve(tmp_path, given)
  assert str(refused.value) == (
      f"the given config changes what the run's model is ({tmp_path / 'config.json'}): "
      f"hidden_size=8 in the run, 16 given; resize_size=(40, 64) in the run, (48, 64) given. "
      f"Leave --config out to use the run's own config.")


def test_a_run_without_config_json_needs_a_config(tmp_path):
  config = test_config.get_config()
  assert run_folder.resolve(tmp_path, config) == (config, None)  # as before: used as given
  with pytest.raises(LsattnError, match="config.json does not exist .* --config"):
    run_folder.resolve(tmp_path)


def test_a_file_as_workdir_is_refused(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(LsattnError, match="is a file: expected a run folder"):
    run_folder.check_workdir(tmp_path / "file")
  assert run_folder.check_workdir(tmp_path / "new") == tmp_path / "new"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return trained_runs.shared_pose_run(tmp_path_factory)


def test_train_writes_the_config_and_eval_needs_only_the_folder(run, tmp_path):
  saved = run_folder.read(run["workdir"])
  assert saved.to_dict() == run["config"].to_dict()
  workdir = tmp_path / "run"  # a copy: eval rewrites eval/
  shutil.copytree(run["workdir"], workdir)
  trained = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert "config_overrides" not in trained  # train.py's own evaluation

  own = experiment.evaluate(None, workdir)
  assert own["config_overrides"] == {}
  assert own["median_translation_m"] == trained["median_translation_m"]
  # A given config: run-time keys applied and recorded, the results unchanged.
  given = trained_runs.config(run["data"], eval_batch_size=2, num_figure_examples=1)
  result = experiment.evaluate(given, workdir)
  written = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert written["config_overrides"] == {"eval_batch_size": {"run": 4, "used": 2},
                                         "num_figure_examples": {"run": 2, "used": 1}}
  assert result["median_translation_m"] == pytest.approx(trained["median_translation_m"],
                                                         abs=1e-5)
  # A key that changes the model is refused before any work, naming both values.
  with pytest.raises(LsattnError, match=r"image_size=32 in the run, 36 given"):
    experiment.evaluate(trained_runs.config(run["data"], image_size=36), workdir)


def test_resume_refuses_a_config_that_changes_the_model(run):
  # resize_size fixes no shape (the signature check would let it through) but changes
  # what the model sees.
  with pytest.raises(LsattnError, match=r"cannot resume .*resize_size=\(40, 64\) in the run, "
                                        r"\(48, 64\) given"):
    experiment.train_and_evaluate(
        trained_runs.config(run["data"], num_train_steps=3, resize_size=(48, 64)),
        run["workdir"])
  assert run_folder.read(run["workdir"]).to_dict() == run["config"].to_dict()
