"""A real multi-process job: two train.py / eval.py processes of the test config on
127.0.0.1 (jax.distributed over Gloo, one CPU device each) against one process with
2 devices: same parameters and metrics, each process reads only its rows, one
checkpoint per step, resume, and a killed peer.

The runs are shared between the tests (module-scoped fixtures). The launch is
the README's ("Several devices and hosts"):

  JAX_COORDINATOR_ADDRESS=127.0.0.1:<port> JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=<i> \\
      python train.py --config=configs/test.py --workdir=<run> ...

through tests/process_probe.py, which records what each process reads.
"""

import collections
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import process_probe  # tests/process_probe.py, beside this file

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT = 900  # seconds for one job; a hang fails the test instead of blocking CI
HEARTBEAT = 20  # --config.heartbeat_timeout_seconds of the killed-peer job
STEPS, BATCH = 4, 4


def _free_port() -> int:
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def _flags(data, workdir, *extra, extras=True):
  """train.py's flags; `extras`: the final evaluation's retrieval baselines and figures."""
  return [f"--config={ROOT / 'configs' / 'test.py'}", f"--workdir={workdir}",
          f"--config.data_dir={data['data_dir']}", f"--config.manual_dir={data['manual_dir']}",
          f"--config.num_train_steps={STEPS}", f"--config.batch_size={BATCH}",
          f"--config.eval_batch_size={BATCH}", f"--config.eval_retrieval_baselines={extras}",
          f"--config.eval_figures={extras}", *extra]


class Job:
  """Processes of one launch; stdout/stderr/reads in files beside the run folder."""

  def __init__(self, script, flags, logs: pathlib.Path, *, processes: int,
               extra_env=None):
    self.logs, self.procs = logs, []
    port = _free_port()
    for i in range(processes):
      env = dict(os.environ, **{process_probe.READS: str(logs / f"reads{i}")})
      env.pop(process_probe.PAUSE_BEFORE_STEP, None)
      if processes == 1:  # one process with 2 devices
        env["XLA_FLAGS"] = f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count=2"
        env.pop("JAX_COORDINATOR_ADDRESS", None)
      else:  # one device per process
        env.update(XLA_FLAGS=f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count=1",
                   JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                   JAX_NUM_PROCESSES=str(processes), JAX_PROCESS_ID=str(i))
      env.update((extra_env or {}).get(i, {}))
      with open(logs / f"out{i}", "w") as out, open(logs / f"err{i}", "w") as err:
        self.procs.append(subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "process_probe.py"), script, *flags],
            cwd=ROOT, env=env, stdout=out, stderr=err))

  def wait(self, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    try:
      for proc in self.procs:
        proc.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
      self.kill()
      raise AssertionError(f"job did not end within {timeout} s:\n{self.stderr(0)[-3000:]}")
    return [proc.returncode for proc in self.procs]

  def check(self):
    codes = self.wait()
    for i, code in enumerate(codes):
      assert code == 0, f"process {i} failed ({code}):\n{self.stderr(i)[-3000:]}"
    return self

  def kill(self):
    for proc in self.procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()

  def stderr(self, i) -> str:
    return (self.logs / f"err{i}").read_text()

  def stdout(self, i) -> str:
    return (self.logs / f"out{i}").read_text()

  def reads(self, i) -> list[list[str]]:
    path = self.logs / f"reads{i}"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def _run(tmp, data, name, script, *, processes, extra=(), workdir=None, extra_env=None,
         extras=True):
  logs = tmp / f"{name}-logs"
  logs.mkdir()
  workdir = workdir or tmp / name
  job = Job(script, _flags(data, workdir, *extra, extras=extras), logs, processes=processes,
            extra_env=extra_env)
  return job, workdir


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
  return tmp_path_factory.mktemp("multiprocess")


@pytest.fixture(scope="module")
def single(tmp, data):
  """One process, 2 devices: the reference."""
  job, workdir = _run(tmp, data, "single", "train.py", processes=1)
  return job.check(), workdir


@pytest.fixture(scope="module")
def multi(tmp, data, single):
  """Two processes, one device each."""
  job, workdir = _run(tmp, data, "multi", "train.py", processes=2)
  return job.check(), workdir


def _params(workdir, step=STEPS):
  manager = ocp.CheckpointManager(pathlib.Path(workdir) / "checkpoints",
                                  item_names=("state", "meta"))
  # Saved over 2 devices; read onto this process's first one.
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(fallback_sharding=device)))
  return restored.state["params"]


def _metrics(workdir) -> dict:
  return json.loads((pathlib.Path(workdir) / "eval" / "metrics.json").read_text())


def _assert_same_params(a, b):
  # The existing 2-device test's tolerance (tests/test_experiment.py).
  scale = max(float(np.max(np.abs(x))) for x in jax.tree.leaves(a))
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-5 * scale),
               a, b)


def _assert_same_metrics(a: dict, b: dict):
  numbers = [key for key, value in a.items()
             if isinstance(value, (int, float)) and not isinstance(value, bool)]
  assert numbers and set(numbers) <= set(b)
  for key in numbers:
    np.testing.assert_allclose(b[key], a[key], rtol=1e-4, err_msg=key)
  assert a["per_step"] and len(a["per_step"]) == len(b["per_step"])


def test_two_processes_train_as_one_process_with_two_devices(single, multi):
  (_, single_dir), (job, multi_dir) = single, multi
  assert jax.tree.structure(_params(single_dir)) == jax.tree.structure(_params(multi_dir))
  _assert_same_params(_params(single_dir), _params(multi_dir))
  _assert_same_metrics(_metrics(single_dir), _metrics(multi_dir))
  # Process 0 alone writes the outputs and prints the summary.
  assert "Wrote " in job.stdout(0) and "Wrote " not in job.stdout(1)


def _train_batches(reads) -> dict[int, list[int]]:
  return {int(r[1]): [int(v) for v in r[2:]] for r in reads if r[0] == "train_batch"}


def test_each_process_reads_only_its_rows(single, multi):
  (reference, _), (job, _) = single, multi
  whole = _train_batches(reference.reads(0))
  half = BATCH // 2
  rows = {0: slice(0, half), 1: slice(half, BATCH)}
  own = collections.defaultdict(set)  # (process, split) -> example indices of its rows
  for p in (0, 1):
    batches = _train_batches(job.reads(p))
    assert set(range(STEPS)) <= set(batches)
    for step, indices in batches.items():
      # Rows 0-1 of every global batch on process 0, rows 2-3 on process 1.
      assert indices == whole[step][rows[p]], (p, step)
      own[p, "train"].update(indices)
    evaluated = collections.defaultdict(set)
    for r in job.reads(p):
      if r[0] != "eval_batch":
        continue
      name, size, batch_size = r[1], int(r[2]), int(r[3])
      cut = r.index("/")
      positions, indices = [int(v) for v in r[4:cut]], [int(v) for v in r[cut + 1:]]
      assert batch_size == BATCH and len(positions) == half
      start = positions[0] - positions[0] % BATCH
      expected = np.minimum(np.arange(start, start + BATCH)[rows[p]], size - 1)
      assert positions == list(expected), (p, name, positions)
      evaluated[name, size].update(positions)
      own[p, name].update(indices)
    assert ("test", 8) in evaluated
    for (name, size), positions in evaluated.items():
      own[p, f"{name}-positions"] = positions
    # Every image this process read from the dataset is one of its rows, except
    # the few that process 0 draws in the figures it alone writes.
    for r in job.reads(p):
      if r[0] == "read":
        assert int(r[2]) in own[p, r[1]], (p, r)
    figures = [r for r in job.reads(p) if r[0] == "figure_read"]
    assert bool(figures) == (p == 0), figures
  # Together the two processes evaluated every test example, each half of them.
  assert own[0, "test-positions"] | own[1, "test-positions"] == set(range(8))
  assert not own[0, "test-positions"] & own[1, "test-positions"]


def test_one_checkpoint_folder_per_step(single, multi):
  """One folder per step for the job, into which each process writes its own part
  (orbax's ocdbt.process_<i>), committed once; no leftover temporary folders."""
  for (_, workdir), processes in ((single, 1), (multi, 2)):
    entries = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    assert [e for e in entries if not e.startswith("_")] == ["2", "4"], entries
    for step in ("2", "4"):
      folder = workdir / "checkpoints" / step
      assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("_")) == [
          "commit_success.txt", "meta", "state"]
      assert sorted(p.name for p in (folder / "state").glob("ocdbt.process_*")) == [
          f"ocdbt.process_{i}" for i in range(processes)]


def _last_line(text: str) -> str:
  return text.strip().splitlines()[-1] if text.strip() else ""


def test_killed_peer_stops_the_job_and_a_rerun_resumes(tmp, data, multi):
  """Process 1 is SIGKILLed after checkpoint 2, while process 0 waits for it in the
  next step's all-reduce: process 0 stops with one line (exit 2), well within the
  heartbeat timeout; both processes started again resume at step 2 and end as the
  uninterrupted job."""
  _, uninterrupted = multi
  heartbeat = f"--config.heartbeat_timeout_seconds={HEARTBEAT}"
  # Without the final evaluation's extras (the jobs above check those): the model's
  # metrics are compared.
  job, workdir = _run(tmp, data, "killed", "train.py", processes=2, extra=[heartbeat],
                      extra_env={1: {process_probe.PAUSE_BEFORE_STEP: "2"}}, extras=False)
  try:
    deadline = time.monotonic() + TIMEOUT
    while process_probe.PAUSE_LINE not in job.stderr(1):
      assert job.procs[1].poll() is None, job.stderr(1)[-3000:]
      assert time.monotonic() < deadline, "process 1 never reached step 2"
      time.sleep(0.5)
    job.procs[1].kill()  # SIGKILL
    # Bounded: the survivor must be gone within the heartbeat timeout (plus slack for a
    # loaded machine); a hang fails here.
    code = job.procs[0].wait(timeout=HEARTBEAT + 120)
  finally:
    job.kill()
  last = _last_line(job.stderr(0))
  assert code == 2, job.stderr(0)[-3000:]
  assert last.startswith("error: process 0 of 2 stopped: another process of the job died "
                         "or was stopped ("), last
  assert last.endswith("Start every process again with the same command to resume from the "
                       "last checkpoint."), last
  steps = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
  assert max(steps) == 2  # orbax also keeps its first save, step 1
  rerun, _ = _run(tmp, data, "killed-rerun", "train.py", processes=2, extra=[heartbeat],
                  workdir=workdir, extras=False)
  rerun.check()
  for p in (0, 1):
    assert f"(step 2)" in rerun.stderr(p) and "Resuming from" in rerun.stderr(p)
    assert sorted(_train_batches(rerun.reads(p)))[0] == 2  # no batch of steps 0-1 again
  _assert_same_params(_params(uninterrupted), _params(workdir))
  _assert_same_metrics(_metrics(workdir), _metrics(uninterrupted))


def test_two_process_eval_matches_and_process_0_writes(tmp, data, single, multi):
  (_, single_dir), (_, multi_dir) = single, multi
  before = _metrics(multi_dir)
  for name in ("metrics.json", "predictions.csv"):
    (multi_dir / "eval" / name).unlink()
  job, _ = _run(tmp, data, "eval", "eval.py", processes=2, workdir=multi_dir)
  job.check()
  _assert_same_metrics(_metrics(single_dir), _metrics(multi_dir))
  _assert_same_metrics(before, _metrics(multi_dir))
  assert (multi_dir / "eval" / "predictions.csv").read_text().count("\n") == 9  # header + 8
  assert "Wrote " in job.stdout(0) and "Wrote " not in job.stdout(1)
  test_rows = [set(), set()]
  for p in (0, 1):
    for r in job.reads(p):
      if r[0] == "eval_batch" and r[1] == "test":
        test_rows[p].update(int(v) for v in r[4:r.index("/")])
  assert test_rows[0] | test_rows[1] == set(range(8)) and not test_rows[0] & test_rows[1]


def test_two_process_predict_matches_one_process_and_process_0_writes(tmp, data, single,
                                                                       multi):
  (_, single_dir), (_, multi_dir) = single, multi
  photos = sorted(pathlib.Path(data["manual_dir"]).rglob("*.color.png"))[:5]  # 2 batches of 4
  outputs = {}
  for name, processes in (("predict_single", 1), ("predict_multi", 2)):
    outputs[name] = tmp / f"{name}.json"
    job, _ = _run(tmp, data, name, "predict.py", processes=processes, workdir=multi_dir,
                  extra=(f"--output={outputs[name]}", *map(str, photos)))
    job.check()
  assert "Predicted 5 of 5 images" in job.stderr(0)
  assert "Predicted" not in job.stderr(1)  # process 1 neither writes nor reports
  single_rows, multi_rows = (json.loads(outputs[n].read_text()) for n in outputs)
  assert [r["path"] for r in multi_rows] == [str(p) for p in photos]
  for a, b in zip(single_rows, multi_rows):
    np.testing.assert_allclose(a["position"], b["position"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a["orientation"], b["orientation"], rtol=1e-4, atol=1e-5)
    assert a["layers"] == b["layers"]
