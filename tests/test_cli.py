"""One-line errors of train.py, eval.py, predict.py and export.py (subprocesses): exit 2,
no traceback, found before any work. The misspelled key and the wrong type are in
tests/test_experiment.py (test_bad_config_overrides_are_one_line_errors); eval.py on a
misspelled workdir there too (test_eval_without_a_checkpoint_says_so_before_any_work)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEST_CONFIG = ROOT / "configs" / "test.py"


def _cli(script, *args) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


def _one_line_error(result) -> str:
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
  return lines[0]


@pytest.mark.parametrize("script", ["train.py", "eval.py", "predict.py"])
def test_missing_config_file(script, tmp_path):
  missing = tmp_path / "no_such_config.py"
  for overrides in ([], ["--config.batch_size=3"]):
    images = [tmp_path / "a.png"] if script == "predict.py" else []
    line = _one_line_error(_cli(script, f"--config={missing}", f"--workdir={tmp_path / 'run'}",
                                *overrides, *images))
    assert line == (f"error: --config: cannot load the config file: [Errno 2] No such file or "
                    f"directory: '{missing}'")
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("script", ["train.py", "eval.py", "predict.py", "export.py"])
def test_a_file_as_workdir(script, tmp_path):
  not_a_folder = tmp_path / "run.txt"
  not_a_folder.write_text("notes")
  extra = {"predict.py": [tmp_path / "a.png"], "export.py": [f"--output={tmp_path / 'm.bin'}"]}
  line = _one_line_error(_cli(script, f"--config={TEST_CONFIG}", f"--workdir={not_a_folder}",
                              *extra.get(script, [])))
  assert line == (f"error: --workdir={not_a_folder} is a file: expected a run folder "
                  f"(existing or new)")
  assert not_a_folder.read_text() == "notes"


def test_a_file_as_data_dir_before_any_work(tmp_path):
  not_a_folder = tmp_path / "data"
  not_a_folder.write_text("")
  line = _one_line_error(_cli("train.py", f"--config={TEST_CONFIG}",
                              f"--workdir={tmp_path / 'run'}",
                              f"--config.data_dir={not_a_folder}"))
  assert line == f"error: config.data_dir = '{not_a_folder}': expected a folder, not a file"
  assert not (tmp_path / "run").exists()


def test_predict_output_into_a_missing_folder_is_refused_before_predicting(tmp_path):
  output = tmp_path / "missing" / "preds.csv"
  # The workdir does not exist either: the output is checked first, before any restore.
  line = _one_line_error(_cli("predict.py", f"--workdir={tmp_path / 'run'}",
                              f"--output={output}", tmp_path / "a.png"))
  assert line == (f"error: --output={output}: folder {output.parent} does not exist; create "
                  f"it first")


def test_overrides_without_a_config_file_say_what_is_needed(tmp_path):
  line = _one_line_error(_cli("eval.py", f"--workdir={tmp_path}",
                              "--config.eval_batch_size=8"))
  assert line.startswith("error: Unknown command line flag 'config.eval_batch_size'")
  assert "overrides need --config=FILE" in line
