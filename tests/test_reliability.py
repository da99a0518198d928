"""Reliability end to end: kills, SIGTERM, non-finite numbers, reproducibility,
damaged checkpoints and full disks. RELIABILITY.md says which test proves what.

Training runs are `train.py` subprocesses on a tiny synthetic scene
(configs/test.py). They share one built dataset and one persistent JAX
compilation cache, so only the first run (the uninterrupted reference, reused
by every comparison) compiles, about a minute on 2 cores; the others take
10-20 s. Faults are
injected by tests/fault_injection.py, which runs train.py after wrapping two
named functions: LSATTN_TEST_PAUSE_IN_SAVE (pause a save after its files are
written, before orbax renames it into place) and LSATTN_TEST_NAN_STEPS (NaN
images in the batches of those steps). Runs without faults are train.py itself.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pathlib
import shutil
import signal
import struct
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorstore

from configs import test as test_config
from lsattn import experiment
from lsattn.data import pipeline
from lsattn.data.synthetic import room as synthetic
from lsattn.errors import LsattnError
from lsattn.runs import checkpoint
import fault_injection  # tests/fault_injection.py, beside this file

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = 8  # checkpoints every 2 steps, the last 2 kept (configs/test.py)
TMP = ".orbax-checkpoint-tmp"
TIMEOUT = 600


@pytest.fixture(scope="module")
def env():
  """Subprocess environment: no injected faults; the test run's compilation cache
  (tests/conftest.py), so these runs reuse the test config's programs."""
  return {key: value for key, value in os.environ.items() if not key.startswith("LSATTN_TEST_")}


@pytest.fixture(scope="module")
def reference(data, env, tmp_path_factory):
  """An uninterrupted STEPS-step run: its workdir."""
  workdir = tmp_path_factory.mktemp("reference") / "run"
  _run(_flags(data, workdir), env)
  return workdir


def _flags(data, workdir, **overrides) -> list[str]:
  overrides = {"num_train_steps": STEPS, **overrides}
  return [f"--config={ROOT / 'configs' / 'test.py'}", f"--workdir={workdir}",
          f"--config.data_dir={data['data_dir']}", f"--config.manual_dir={data['manual_dir']}",
          *(f"--config.{key}={value}" for key, value in overrides.items())]


def _command(flags, faults) -> list[str]:
  """train.py, or with faults the launcher that injects them (tests/fault_injection.py)."""
  script = ROOT / ("tests/fault_injection.py" if faults else "train.py")
  return [sys.executable, str(script), *flags]


def _run(flags, env, *, check=True, **faults) -> subprocess.CompletedProcess:
  result = subprocess.run(_command(flags, faults), cwd=ROOT, env=dict(env, **faults),
                          capture_output=True, text=True, timeout=TIMEOUT)
  if check and result.returncode != 0:
    raise AssertionError(f"train.py failed ({result.returncode}):\n{result.stderr[-3000:]}")
  return result


class _Training:
  """train.py in the background, its stderr in a file the test watches."""

  def __init__(self, flags, env, log: pathlib.Path, **faults):
    self.log = log
    with open(log, "w") as stderr:
      self.process = subprocess.Popen(_command(flags, faults), cwd=ROOT,
                                      env=dict(env, **faults),
                                      stdout=subprocess.DEVNULL, stderr=stderr)

  def stderr(self) -> str:
    return self.log.read_text()

  def wait_for(self, text: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while text not in self.stderr():
      if self.process.poll() is not None or time.monotonic() > deadline:
        self.process.kill()
        raise AssertionError(f"train.py never wrote {text!r} (exit {self.process.poll()}):\n"
                             f"{self.stderr()[-3000:]}")
      time.sleep(0.1)

  def send(self, signum) -> int:
    self.process.send_signal(signum)
    return self.process.wait(timeout=TIMEOUT)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    if self.process.poll() is None:  # the test failed half-way: leave nothing running
      self.process.kill()
      self.process.wait()


def _pause_line(workdir: pathlib.Path, step: int) -> str:
  tmp_folder = workdir.resolve() / "checkpoints" / f"{step}{TMP}"
  return f"{fault_injection.PAUSE_LINE} {tmp_folder}"


def _orbax_steps(workdir: pathlib.Path) -> list[int]:
  """The complete checkpoints, as orbax itself lists them (read-only: cleans nothing)."""
  manager = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "meta"),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  return sorted(manager.all_steps())


def _tmp_folders(workdir: pathlib.Path) -> list[str]:
  return sorted(p.name for p in (workdir / "checkpoints").iterdir() if TMP in p.name)


def _restore(workdir: pathlib.Path, step: int) -> dict:
  """The whole saved TrainState of `step` as a dict of arrays."""
  manager = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "meta"),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return jax.device_get(restored.state)


def _assert_trees_equal(got, want) -> None:
  assert jax.tree.structure(got) == jax.tree.structure(want)
  jax.tree.map(np.testing.assert_array_equal, got, want)


def _metrics_bytes(workdir: pathlib.Path) -> bytes:
  return (workdir / "eval" / "metrics.json").read_bytes()


def _scalars(workdir: pathlib.Path, tag: str) -> dict[int, float]:
  """{step: value} of a TensorBoard scalar (TFRecord framing, no TensorFlow needed)."""
  from tensorboardX.proto import event_pb2
  values = {}
  for path in sorted((workdir / "tensorboard").glob("events.out.tfevents.*")):
    data, offset = path.read_bytes(), 0
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        if value.tag == tag:
          values[event.step] = value.simple_value
  return values


def _snapshot(folder: pathlib.Path) -> dict[str, str]:
  return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_one_clean_error(stderr: str, text: str) -> None:
  errors = [line for line in stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and text in errors[0], stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]


# ------------------------------------------------------- kills and SIGTERM


def test_sigkill_mid_save_and_sigterm_resume_to_the_uninterrupted_result(data, env, reference,
                                                                         tmp_path):
  workdir = tmp_path / "run"
  checkpoints = workdir.resolve() / "checkpoints"
  flags = _flags(data, workdir)

  # 1. SIGKILL while the first checkpoint is written but not yet complete (orbax saves
  # the first step of a run without checkpoints, then every 2 steps).
  with _Training(flags, env, tmp_path / "1.log", LSATTN_TEST_PAUSE_IN_SAVE="1") as run:
    run.wait_for(_pause_line(workdir, 1))
    assert run.send(signal.SIGKILL) == -signal.SIGKILL
  assert _tmp_folders(workdir) == [f"1{TMP}"]
  assert list((checkpoints / f"1{TMP}").rglob("manifest.ocdbt"))  # the arrays are written...
  assert _orbax_steps(workdir) == []  # ...yet it is not taken for a checkpoint

  # 2. Same command: starts afresh (removing the leftover); SIGKILL in the save of step 4.
  with _Training(flags, env, tmp_path / "2.log", LSATTN_TEST_PAUSE_IN_SAVE="4") as run:
    run.wait_for(_pause_line(workdir, 4))
    assert run.send(signal.SIGKILL) == -signal.SIGKILL
    assert "Resuming" not in run.stderr()
  assert _tmp_folders(workdir) == [f"4{TMP}"]
  assert _orbax_steps(workdir) == [1, 2]

  # 3. Same command: resumes from step 2; SIGTERM arrives during the save of step 6
  # (which pauses 5 s, then completes).
  with _Training(flags, env, tmp_path / "3.log", LSATTN_TEST_PAUSE_IN_SAVE="6:5") as run:
    run.wait_for(_pause_line(workdir, 6))
    assert run.send(signal.SIGTERM) == 2  # not finished: non-zero (RELIABILITY.md)
    stderr = run.stderr()
  assert f"Resuming from {checkpoints / '2'} (step 2)." in stderr
  _assert_one_clean_error(stderr, f"stopped by SIGTERM after step 6; checkpoint saved in "
                          f"{checkpoints / '6'}. Run the same command again to resume.")
  assert _orbax_steps(workdir) == [4, 6] and _tmp_folders(workdir) == []  # bounded: keep 2
  assert not (workdir / "eval").exists()

  # 4. Same command: resumes from step 6 and finishes exactly like the reference.
  result = _run(flags, env)
  assert f"Resuming from {checkpoints / '6'} (step 6)." in result.stderr
  assert _orbax_steps(workdir) == [6, 8] and _tmp_folders(workdir) == []
  for step in (6, 8):
    _assert_trees_equal(_restore(workdir, step), _restore(reference, step))
  assert _metrics_bytes(workdir) == _metrics_bytes(reference)


def test_ctrl_c_and_sigterm_become_a_stop_request():
  previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
  for sig in (signal.SIGINT, signal.SIGTERM):
    with experiment._StopRequest() as stop:
      assert stop.signal is None
      signal.raise_signal(sig)
      assert stop.signal == sig.name
  assert {sig: signal.getsignal(sig) for sig in previous} == previous


# ---------------------------------------------------------- reproducibility


@pytest.mark.slow  # one more full run; the kill test already compares separate processes
def test_two_runs_with_the_same_seed_are_bitwise_identical(data, env, reference, tmp_path):
  workdir = tmp_path / "again"
  _run(_flags(data, workdir), env)
  assert _metrics_bytes(workdir) == _metrics_bytes(reference)
  assert ((workdir / "eval" / "predictions.csv").read_bytes()
          == (reference / "eval" / "predictions.csv").read_bytes())
  for step in _orbax_steps(reference):
    _assert_trees_equal(_restore(workdir, step), _restore(reference, step))


def test_data_order_is_a_pure_function_of_seed_and_epoch(data):
  config = test_config.get_config()
  config.data_dir, config.manual_dir = data["data_dir"], data["manual_dir"]
  run = experiment.setup(config)  # builds the dataset unless a run already did
  count, batch_size = len(run.train_split), config.batch_size
  assert count % batch_size == 0

  def order(seed, steps, batches=None):
    batches = batches or pipeline.TrainBatches(run.train_split, task="pose", options=run.options,
                                               batch_size=batch_size, seed=seed)
    return [position for step in steps for position, _, _ in batches.plan(step)]

  epochs = range(3)
  steps = range(len(epochs) * count // batch_size)
  expected = [int(p) for epoch in epochs
              for p in np.random.default_rng([0, epoch]).permutation(count)]
  assert order(0, steps) == expected
  # No hidden state: a pipeline that planned other steps first gives the same rows.
  used = pipeline.TrainBatches(run.train_split, task="pose", options=run.options,
                               batch_size=batch_size, seed=0)
  order(0, reversed(steps), used)
  assert order(0, steps, used) == expected
  assert order(1, steps) != expected


# ------------------------------------------------------- non-finite numbers


def test_nonfinite_updates_are_skipped_counted_and_never_checkpointed(data, env, tmp_path):
  workdir = tmp_path / "run"
  _run(_flags(data, workdir, num_train_steps=4), env, LSATTN_TEST_NAN_STEPS="2,3")
  metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert metrics["skipped_nonfinite_steps"] == 2
  assert np.isfinite(metrics["median_translation_m"])
  assert _scalars(workdir, "train/skipped_steps") == {2: 0.0, 4: 2.0}
  assert _orbax_steps(workdir) == [2, 4]
  states = {step: _restore(workdir, step) for step in (2, 4)}
  for state in states.values():
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state["params"]))
  assert int(states[4]["skipped_steps"]) == 2 and int(states[4]["step"]) == 4
  # Both updates after step 2 were skipped: step 4 holds step 2's params and optimiser.
  for part in ("params", "model_state", "opt_state"):
    _assert_trees_equal(states[4][part], states[2][part])


def test_nonfinite_policy_stop_names_the_policy_and_the_count(data, env, tmp_path):
  workdir = tmp_path / "run"
  result = _run(_flags(data, workdir, num_train_steps=4, nonfinite_policy="stop",
                       max_consecutive_nonfinite=2),
                env, check=False, LSATTN_TEST_NAN_STEPS="2,3")
  assert result.returncode == 2
  _assert_one_clean_error(result.stderr, "stopped at step 4: 2 consecutive train steps had a "
                          "non-finite loss or gradient (nonfinite_policy='stop', "
                          "max_consecutive_nonfinite=2)")
  assert _orbax_steps(workdir) == [1, 2]  # stopped before saving step 4
  for step in (1, 2):
    params = _restore(workdir, step)["params"]
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))
  assert not (workdir / "eval").exists()


# -------------------------------------------------- damaged checkpoint, disk


def test_truncated_checkpoint_is_refused_by_eval_and_skipped_by_a_resume(data, env, reference,
                                                                          tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  latest = workdir.resolve() / "checkpoints" / str(STEPS)
  victim = max((p for p in (latest / "state").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
  os.truncate(victim, victim.stat().st_size // 2)
  before = _snapshot(workdir)
  result = subprocess.run([sys.executable, str(ROOT / "eval.py"), f"--workdir={workdir}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
  assert result.returncode == 2
  _assert_one_clean_error(result.stderr, f"checkpoint {latest} is unreadable")
  assert "delete that folder to resume from an earlier step" in result.stderr
  assert _snapshot(workdir) == before

  # The same command resumes from the step before, saying so, and ends as the reference.
  result = _run(_flags(data, workdir), env)
  assert (f"Warning: checkpoint {latest} is unreadable (") in result.stderr
  assert (f"Kept it as {latest}.damaged; resuming from the step before it.\nResuming from "
          f"{latest.parent / str(STEPS - 2)} (step {STEPS - 2}).") in result.stderr
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  assert _metrics_bytes(workdir) == _metrics_bytes(reference)
  _assert_trees_equal(_restore(workdir, STEPS), _restore(reference, STEPS))
  assert sorted(p.name for p in latest.parent.iterdir()) == [
      str(STEPS - 2), str(STEPS), f"{STEPS}.damaged"]


# Orbax's aborted write leaves a callback for its closed event loop: noise, not a failure.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_disk_full_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
  manager = checkpoint.create_manager(tmp_path, save_every=1, keep=2)
  state = {f"w{i}": jnp.full((64,), float(i)) for i in range(4)}
  meta = {"signature": {"kind": "test"}}
  assert checkpoint.save(manager, 1, state, meta)

  # TensorStore writes the arrays: the disk fills up after a few of them.
  real_open, opened = tensorstore.open, []

  def open_fn(*args, **kwargs):
    opened.append(args)
    if len(opened) > 3:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_open(*args, **kwargs)

  monkeypatch.setattr(tensorstore, "open", open_fn)
  with pytest.raises(LsattnError) as error:
    checkpoint.save(manager, 2, jax.tree.map(lambda x: x + 10, state), meta)
  monkeypatch.undo()
  folder = tmp_path.resolve() / "checkpoints"
  assert str(error.value).startswith(f"could not write checkpoint {folder / '2'} (no space "
                                     f"left on device in {folder}: the checkpoint needs about "
                                     f"0.0 MiB, ")
  assert (f"MiB are free); the previous checkpoint {folder / '1'} is intact. Free disk space"
          in str(error.value))
  assert sorted(p.name for p in folder.iterdir()) == ["1", f"2{TMP}"]

  # The next run resumes from step 1 and removes the partial save (before its first save).
  restarted = checkpoint.create_manager(tmp_path, save_every=1, keep=2)
  restored, _, step = checkpoint.restore_latest(restarted, checkpoint.abstract_like(state),
                                                meta["signature"])
  assert step == 1
  _assert_trees_equal(jax.device_get(restored), jax.device_get(state))
  assert checkpoint.save(restarted, 2, state, meta)  # space is back
  assert sorted(p.name for p in folder.iterdir()) == ["1", "2"]
  assert checkpoint.save(restarted, 3, state, meta)
  assert sorted(p.name for p in folder.iterdir()) == ["2", "3"]  # at most keep=2


FULL_DISK_SCRIPT = r"""
import json, pathlib, sys
sys.path.insert(0, {root!r})
import jax, numpy as np
from lsattn.errors import LsattnError
from lsattn.runs import checkpoint
workdir = pathlib.Path(sys.argv[1]) / "run"
rng = np.random.default_rng(0)
state = {{"w": rng.normal(size=150_000).astype(np.float32)}}  # 600 kB: one fits in 1 MB
meta = {{"signature": {{}}}}
manager = checkpoint.create_manager(workdir, save_every=1, keep=2)
checkpoint.save(manager, 1, state, meta)
try:
  checkpoint.save(manager, 2, {{"w": -state["w"]}}, meta)
  message = None
except LsattnError as error:
  message = str(error)
listing = sorted(p.name for p in (workdir / "checkpoints").iterdir())
restarted = checkpoint.create_manager(workdir, save_every=1, keep=2)
restored, _, step = checkpoint.restore_latest(restarted, checkpoint.abstract_like(state), {{}})
equal = bool(np.array_equal(jax.device_get(restored["w"]), state["w"]))
checkpoint.save(restarted, 2, {{"w": state["w"][:1000]}}, meta)  # fits once the leftover is gone
print(json.dumps({{"message": message, "listing": listing, "step": step, "equal": equal,
                  "after_restart": sorted(p.name for p in (workdir / "checkpoints").iterdir())}}))
"""


def test_full_filesystem_during_a_save_keeps_the_previous_checkpoint(tmp_path):
  """A real 1 MB tmpfs, mounted in a private mount namespace (nothing outside sees it)."""
  unshare = shutil.which("unshare")
  if unshare is None or subprocess.run([unshare, "-Urm", "true"],
                                       capture_output=True).returncode != 0:
    pytest.skip("needs `unshare -Urm` (user and mount namespaces) to mount a private tmpfs; "
                "test_disk_full_during_a_save_keeps_the_previous_checkpoint covers the logic")
  script, disk = tmp_path / "full_disk.py", tmp_path / "disk"
  script.write_text(FULL_DISK_SCRIPT.format(root=str(ROOT)))
  disk.mkdir()
  result = subprocess.run(
      [unshare, "-Urm", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$1" && exec "$2" "$3" "$1"',
       "sh", str(disk), sys.executable, str(script)],
      capture_output=True, text=True, timeout=TIMEOUT)
  assert result.returncode == 0, result.stderr[-3000:]
  outcome = json.loads(result.stdout.strip().splitlines()[-1])
  folder = disk.resolve() / "run" / "checkpoints"
  assert outcome["message"].startswith(
      f"could not write checkpoint {folder / '2'} (no space left on device in {folder}: the "
      f"checkpoint needs about 0.6 MiB, 0.4 MiB are free); the previous checkpoint "
      f"{folder / '1'} is intact. Free disk space"), outcome["message"]
  # The line says it all: orbax's logged failures of its writer threads are held back.
  assert "Traceback" not in result.stderr and "ERROR" not in result.stderr, result.stderr
  assert outcome["listing"] == ["1", f"2{TMP}"]
  assert outcome["step"] == 1 and outcome["equal"]
  assert outcome["after_restart"] == ["1", "2"]
