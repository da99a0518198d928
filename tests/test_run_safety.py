"""Issue 27's cases: one writer per run folder, atomic outputs, runs that cannot end
poisoned, leak-free splits, builds that know their source, file names as they come,
and one line for the rest. RELIABILITY.md says which test proves which guarantee.

Most run in-process on the shared tiny runs (tests/trained_runs.py) or on data
that is refused before any image is decoded; the read-only cases run one
subprocess in a private mount namespace (``unshare -Urm``), where a bind mount
can be read-only even for root.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

import test_builders  # tests/test_builders.py: the official formats' fixture writers
import trained_runs
from lsattn import LsattnError, cli, experiment, exporting as export
from lsattn.data import builders, datasets, images
from lsattn.data.synthetic import room as synthetic
from lsattn.evaluation import loop as evaluation
from lsattn.runs import atomic, interrupts, run_folder, run_lock

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEST_CONFIG = ROOT / "configs" / "test.py"


@pytest.fixture(scope="module")
def pose(tmp_path_factory):
  return trained_runs.shared_pose_run(tmp_path_factory)


def _copy_run(pose, tmp_path) -> pathlib.Path:
  """A writable copy of the shared pose run's folder."""
  return pathlib.Path(shutil.copytree(pose["workdir"], tmp_path / "run", symlinks=True))


def _finite(tree) -> bool:
  return all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(tree))


# ------------------------------------------------- the bad cases (silently wrong)


@pytest.mark.parametrize("key", ["learning_rate", "beta"])
def test_infinite_learning_rate_or_beta_is_refused_before_any_file(data, tmp_path, key):
  """Cases 1 and 2 as reported: learning_rate=inf made NaN params (loss and gradients
  finite); beta=inf skipped every step and exited 0 with the untrained model's metrics."""
  workdir = tmp_path / "run"
  with pytest.raises(LsattnError, match=rf"config.{key} = inf: expected a finite number"):
    experiment.train_and_evaluate(trained_runs.config(data, **{key: float("inf")}), workdir)
  assert not workdir.exists()


# Finite values that pass the checks and still break training: the run-level guards.
HUGE = {"learning_rate": (1e38, r"test: the model's predictions are not finite for 8 of 8 "
                                 r"images", 1),
        "beta": (3e38, r"no train step updated the model: all 2 steps", 2)}


@pytest.mark.parametrize("key", list(HUGE))
def test_a_run_whose_updates_break_the_model_fails_and_keeps_finite_checkpoints(
    data, tmp_path, key):
  """learning_rate=1e38: one step makes the params huge but finite, the next is skipped,
  and the final evaluation's predictions are NaN; beta=3e38: every loss overflows and
  every step is skipped. Each fails with one line, writes no evaluation, and the latest
  checkpoint's params are finite."""
  import orbax.checkpoint as ocp
  value, message, skipped = HUGE[key]
  workdir = tmp_path / "run"
  with pytest.raises(LsattnError, match=message):
    experiment.train_and_evaluate(trained_runs.config(data, **{key: value}), workdir)
  assert not (workdir / "eval").exists()
  manager = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "meta"),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  assert manager.latest_step() == 2
  state = manager.restore(2, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
  assert _finite(state["params"]) and int(state["skipped_steps"]) == skipped


LEAKS = {  # dataset: (fixture writer, how the test split leaks into the training listing)
    "seven_scenes/chess": ("chess/TrainSplit.txt", "sequence3\n", "seq-03/frame-000000"),
    "cambridge_landmarks/kings_college": (
        "KingsCollege/dataset_train.txt", "seq7/frame00003.png 0 0.5 0 0 0 0 -1\n",
        "seq7/frame00003.png"),
    "tum_lsi/default": ("train.txt", None, "images/"),
    "mit67/full": ("TrainImages.txt", "kitchen/IMG_9.jpg\r\n", "kitchen/IMG_9.jpg"),
}


@pytest.mark.parametrize("dataset", list(LEAKS))
def test_a_test_image_listed_for_training_is_refused_naming_it(tmp_path, dataset):
  """Case 3 (and the other formats): a test sequence or image also in training."""
  manual = tmp_path / "manual"
  expected = test_builders.FIXTURES[dataset](manual)
  listing, line, named = LEAKS[dataset]
  if line is None:  # TUM-LSI: the test image's own line
    line = "".join(f"{name}\n" for name in expected["test"])
  with open(manual / listing, "a") as handle:
    handle.write(line)
  with pytest.raises(LsattnError, match="is also in the train split") as error:
    datasets.prepare(dataset, tmp_path / "data", manual)
  assert named in str(error.value)
  assert not (tmp_path / "data").exists()


def _own_scene(scene: pathlib.Path, scale: float = 1.0) -> None:
  names = [f"seq{s}/f{i}.png" for s in (1, 2) for i in range(3)]
  for k, name in enumerate(names):
    test_builders._image(scene / name, (40 * k % 255, 90, 160), size=(40, 30))
  rows = ["image,x,y,z,qw,qx,qy,qz"] + [f"{name},{k * scale},0,{scale},1,0,0,0"
                                          for k, name in enumerate(names)]
  (scene / "poses.csv").write_text("\n".join(rows) + "\n")


def test_an_own_scene_edited_after_its_build_is_refused_with_how_to_rebuild(tmp_path):
  """Case 4: poses.csv positions x10, built again under the same own_scene/<name>."""
  scene, data_dir = tmp_path / "scene", tmp_path / "data"
  _own_scene(scene)
  built = datasets.prepare("own_scene/room", data_dir, scene)
  datasets.prepare("own_scene/room", data_dir, scene)  # unchanged: reused
  _own_scene(scene, scale=10.0)
  with pytest.raises(LsattnError, match="was built from other files than those now in") as error:
    datasets.prepare("own_scene/room", data_dir, scene)
  assert f"delete {built.data_dir}" in str(error.value)
  shutil.rmtree(built.data_dir)  # the rebuild the message describes
  rebuilt = datasets.prepare("own_scene/room", data_dir, scene)
  assert rebuilt.info.splits["train"].num_examples == 3


def test_a_second_writer_is_refused_naming_the_holder_before_writing(data, tmp_path, capsys):
  """Case 5 (and the same command twice): a run folder has one writer."""
  workdir = tmp_path / "run"
  config = trained_runs.config(data, learning_rate=0.01)
  with run_lock.holding(workdir, "train.py"):
    with pytest.raises(LsattnError, match=rf"{workdir} is in use by another writer: pid "
                                          rf"{os.getpid()} on host \S+ since "):
      experiment.train_and_evaluate(config, workdir)
    assert sorted(p.name for p in workdir.iterdir()) == [run_lock.LOCK_FILE]  # nothing else
  assert not workdir.exists()  # the holder made it and wrote nothing: removed


def test_a_lock_left_by_a_killed_process_is_taken_over_with_a_line(tmp_path, capsys):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / run_lock.LOCK_FILE).write_text(
      json.dumps({"host": "elsewhere", "pid": 4242, "since": "2026-01-01T00:00:00+00:00"}))
  with run_lock.holding(workdir, "train.py"):
    holder = json.loads((workdir / run_lock.LOCK_FILE).read_text())
    assert holder["pid"] == os.getpid()
  assert ("Taking over the lock" in capsys.readouterr().err
          and not (workdir / run_lock.LOCK_FILE).exists())
  with run_lock.holding(workdir, "train.py", enabled=False):  # processes 1.. of a job
    assert not (workdir / run_lock.LOCK_FILE).exists()


def _frame(pose, index: int = 0) -> pathlib.Path:
  return sorted(pose["test_frames"].glob("*.color.png"))[index]


def test_predict_handles_a_non_utf8_name_and_names_broken_links(pose, tmp_path, capsys):
  """Case 6: a Latin-1 file name gave a traceback after the predicting and cut the old
  output to its header; looping .png links were dropped silently."""
  folder = tmp_path / "photos"
  folder.mkdir()
  latin1 = os.fsdecode(b"caf\xe9.png")
  shutil.copy(_frame(pose), folder / latin1)
  shutil.copy(_frame(pose, 1), folder / "b.png")
  os.symlink("loop.png", folder / "loop.png")
  os.symlink("missing.png", folder / "gone.png")
  output = tmp_path / "old.csv"
  output.write_text("path,x\nold,1\n")
  cli.predict_images(None, pose["workdir"], [str(folder)], str(output), None, False)
  rows = list(csv.reader(output.open(encoding="utf-8", errors="surrogateescape")))
  assert [row[0] for row in rows[1:]] == [str(folder / "b.png"), str(folder / latin1)]
  assert os.fsencode(rows[2][0]).endswith(b"caf\xe9.png")  # the name's own bytes
  assert rows[2][-1] == ""  # predicted, not an error
  summary = capsys.readouterr().err.strip().splitlines()[-1]
  assert summary.endswith("skipped 2 non-image entries: gone.png (broken link), "
                          "loop.png (broken link)"), summary


def test_export_refuses_unknown_platforms_and_the_runs_own_files(pose, tmp_path):
  """Case 7 and the poor --output=RUN/config.json: refused before any work, nothing
  replaced."""
  output = tmp_path / "m.jaxexport"
  output.write_bytes(b"a working artefact")
  with pytest.raises(LsattnError, match="unknown platform 'foo'; expected some of cpu"):
    export.export_run(pose["workdir"], output, platforms=("foo",))
  assert output.read_bytes() == b"a working artefact"
  config_file = pose["workdir"] / "config.json"
  before = config_file.read_bytes()
  for own in ("config.json", "eval/metrics.json", "checkpoints/m.jaxexport"):
    with pytest.raises(LsattnError, match="would replace the run's own"):
      export.export_run(pose["workdir"], pose["workdir"] / own)
  assert config_file.read_bytes() == before


def test_the_sidecar_records_the_artefact_hash_and_run_and_load_checks_it(pose, tmp_path):
  output = tmp_path / "m.jaxexport"
  description = export.export_run(pose["workdir"], output)
  assert description["run"]["seed"] == 0 and description["run"]["checkpoint_step"] == 2
  exported, loaded = export.load(output)
  assert loaded["sha256"] == description["sha256"] and exported.in_avals
  other = tmp_path / "other.jaxexport"  # another run's artefact under this sidecar
  other.write_bytes(output.read_bytes() + b"\0")
  shutil.copy(f"{output}.json", f"{other}.json")
  with pytest.raises(LsattnError, match="is not the one its sidecar .* records"):
    export.load(other)


# ------------------------------------------------------------------- the poor ones


def _cli(script: str, *args) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


CONFIG_FILES = {
    "syntax": ("def get_config(:\n", "the config file does not parse (invalid syntax)"),
    "none": ("def get_config():\n  return None\n", "get_config() returned None"),
    "missing_keys": ("import ml_collections\ndef get_config():\n"
                     "  return ml_collections.ConfigDict({'seed': 0})\n",
                     "the config lacks the keys attention_branch_channels"),
}


@pytest.mark.parametrize("case", [*CONFIG_FILES, "bad_arg"])
def test_a_bad_config_file_is_one_line_exit_2(tmp_path, case):
  if case == "bad_arg":
    config, expected = f"{TEST_CONFIG}:foo", "get_config failed: TypeError: get_config()"
  else:
    text, expected = CONFIG_FILES[case]
    config = tmp_path / "config.py"
    config.write_text(text)
  result = _cli("train.py", f"--config={config}", f"--workdir={tmp_path / 'run'}")
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(f"error: --config={config}") and expected in last, last
  assert not (tmp_path / "run").exists()


def test_a_7_scenes_frame_with_a_non_utf8_name_is_refused_naming_it(tmp_path):
  manual = tmp_path / "manual"
  test_builders.FIXTURES["seven_scenes/chess"](manual)
  sequence = manual / "chess" / "seq-01"
  latin1 = os.fsdecode(b"frame-caf\xe9")
  shutil.copy(sequence / "frame-000000.color.png", sequence / f"{latin1}.color.png")
  shutil.copy(sequence / "frame-000000.pose.txt", sequence / f"{latin1}.pose.txt")
  with pytest.raises(LsattnError, match=r"frame-caf\\xe9.color.png: the file name is not UTF-8"):
    datasets.prepare("seven_scenes/chess", tmp_path / "data", manual)
  assert not (tmp_path / "data").exists()


READ_ONLY_SCRIPT = """
import json, sys
sys.path[:0] = [{root!r}, {tests!r}]
import trained_runs
from lsattn import LsattnError, experiment
from lsattn.data import datasets
data, run, new_data = sys.argv[1:4]
messages = {{}}
config = trained_runs.config({{"data_dir": data, "manual_dir": {manual!r}}})
for name, call in (("eval", lambda: experiment.evaluate(None, run)),
                   ("resume", lambda: experiment.train_and_evaluate(config, run)),
                   ("build", lambda: datasets.prepare("seven_scenes/synthetic_room",
                                                      new_data + "/built", {manual!r}))):
  try:
    call()
    messages[name] = None
  except LsattnError as error:
    messages[name] = str(error)
print(json.dumps(messages))
"""


def test_read_only_run_folders_and_data_dirs_are_refused_before_any_compute(pose, tmp_path):
  unshare = shutil.which("unshare")
  if unshare is None or subprocess.run([unshare, "-Urm", "true"],
                                       capture_output=True).returncode != 0:
    pytest.skip("needs `unshare -Urm` to mount a folder read-only (root ignores modes)")
  run = _copy_run(pose, tmp_path)
  (run / "eval" / "metrics.json").unlink()
  empty = tmp_path / "new_data"
  empty.mkdir()
  script = tmp_path / "read_only.py"
  script.write_text(READ_ONLY_SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"),
                                            manual=pose["data"]["manual_dir"]))
  mounts = " && ".join(f'mount --bind "{p}" "{p}" && mount -o remount,bind,ro "{p}"'
                       for p in (run, empty))
  result = subprocess.run(
      [unshare, "-Urm", "sh", "-c", f'{mounts} && exec "$0" "$@"', sys.executable,
       str(script), pose["data"]["data_dir"], str(run), str(empty)],
      capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  messages = json.loads(result.stdout.strip().splitlines()[-1])
  for name, tool in (("eval", "eval.py"), ("resume", "train.py")):
    assert messages[name] == (f"--workdir={run}: cannot write in this run folder (Read-only "
                              f"file system); {tool} writes there. Make it writable, or use "
                              f"another --workdir."), messages
  assert messages["build"].startswith(f"config.data_dir = '{empty}/built': cannot write in "
                                      f"{empty}"), messages
  assert not (run / "eval" / "metrics.json").exists()


def test_config_json_has_the_mode_of_the_runs_other_files(tmp_path, data):
  previous = os.umask(0o022)
  try:
    path = run_folder.write(tmp_path, trained_runs.config(data))
    atomic.write_text(tmp_path / "other.txt", "x")
  finally:
    os.umask(previous)
  assert oct(path.stat().st_mode & 0o777) == oct(0o644)
  assert (tmp_path / "other.txt").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("entry", ["tensorboard", "eval", "checkpoints"])
def test_run_folder_entries_that_are_files_are_refused_before_any_compute(data, tmp_path,
                                                                          entry):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / entry).write_text("notes")
  with pytest.raises(LsattnError, match=rf"{workdir / entry} is a file: a run folder's "
                                        rf"'{entry}' must be a folder"):
    experiment.train_and_evaluate(trained_runs.config(data), workdir)
  assert sorted(p.name for p in workdir.iterdir()) == [entry]


def test_an_interrupted_write_leaves_the_previous_file(tmp_path):
  path = tmp_path / "metrics.json"
  path.write_text("previous")
  with pytest.raises(KeyboardInterrupt):
    with atomic.writing(path) as handle:
      handle.write("half")
      raise KeyboardInterrupt
  assert path.read_text() == "previous" and os.listdir(tmp_path) == ["metrics.json"]


def _signal_during(monkeypatch, module, name, signum=signal.SIGINT):
  """`module.name` sends `signum` to this process when called, then runs as before."""
  original = getattr(module, name)

  def interrupted(*args, **kwargs):
    signal.raise_signal(signum)
    return original(*args, **kwargs)

  monkeypatch.setattr(module, name, interrupted)


def test_ctrl_c_during_eval_is_one_error_and_keeps_the_previous_outputs(pose, tmp_path,
                                                                        monkeypatch):
  run = _copy_run(pose, tmp_path)
  before = (run / "eval" / "predictions.csv").read_bytes()
  _signal_during(monkeypatch, evaluation, "evaluate_split")
  with pytest.raises(LsattnError, match=r"stopped by SIGINT during the evaluation at a safe "
                                        r"point \(after 0 of 2 test batches\); nothing was "
                                        r"written \(.*eval keeps its previous outputs\). Run "
                                        r"the same command again."):
    experiment.evaluate(None, run)
  assert (run / "eval" / "predictions.csv").read_bytes() == before
  assert not (run / run_lock.LOCK_FILE).exists()


def test_sigterm_during_a_build_is_one_error_and_leaves_no_build(tmp_path, monkeypatch):
  manual = tmp_path / "manual"
  synthetic.write_synthetic_seven_scenes(manual, frames_per_sequence=2, image_size=(24, 32))
  config = trained_runs.config({"data_dir": str(tmp_path / "data"), "manual_dir": str(manual)})
  _signal_during(monkeypatch, images, "load_image", signal.SIGTERM)
  with pytest.raises(LsattnError, match=r"stopped by SIGTERM during the start \(config checks, "
                                        r"dataset build, restore\)"):
    experiment.train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()


def test_ctrl_c_during_the_final_evaluation_says_training_finished(data, tmp_path,
                                                                   monkeypatch):
  _signal_during(monkeypatch, evaluation, "write_outputs")
  workdir = tmp_path / "run"
  with pytest.raises(LsattnError, match=r"stopped by SIGINT during the final evaluation at a "
                                        r"safe point \(before writing .*eval\); the evaluation "
                                        r"wrote nothing \(.*\). Training is finished "
                                        r"\(checkpoint of step 2\); evaluate it with eval.py"):
    experiment.train_and_evaluate(trained_runs.config(data), workdir)
  assert not (workdir / "eval" / "metrics.json").exists()


def test_a_signal_swallowed_by_a_library_still_fails_the_block():
  """Python ignores an exception raised in a garbage-collector callback (what once
  let eval.py exit 0 after Ctrl-C): the recorded signal still ends the block."""
  previous = signal.getsignal(signal.SIGTERM)
  with pytest.raises(LsattnError, match="stopped by SIGTERM during the evaluation"):
    with interrupts.stopping_on_signals("the evaluation", "Run it again."):
      try:
        signal.raise_signal(signal.SIGTERM)
      except interrupts.Interrupted:
        pass  # what "Exception ignored in _xla_gc_callback" amounts to
  assert signal.getsignal(signal.SIGTERM) is previous


def test_ctrl_c_during_predict_or_export_is_one_error():
  def predicting():
    signal.raise_signal(signal.SIGINT)

  with pytest.raises(LsattnError, match="stopped by SIGINT during the prediction; nothing was "
                                        "half-written. Run the same command again."):
    cli._stopping_on_signals(predicting, "the prediction")()
