"""Full disks, damaged files and a killed run's leftovers (RELIABILITY.md, guarantees
12-15): each is one line naming the folder or file, and what an earlier killed run of
ours left is cleared by the next.

Full disks are real: a small tmpfs mounted in a private mount namespace
(``unshare -Urm``; the tests skip, saying why, where that is not allowed).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorstore

from lsattn import experiment
from lsattn.data import datasets
from lsattn.data.synthetic import room as synthetic
from lsattn.errors import LsattnError
from lsattn.runs import atomic, checkpoint, run_lock
import trained_runs  # tests/trained_runs.py, beside this file

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT = 600


@pytest.fixture(scope="module")
def pose(tmp_path_factory):
  """The shared tiny pose run (read-only: copy it to write into it)."""
  return trained_runs.shared_pose_run(tmp_path_factory)


def _unshare() -> str:
  unshare = shutil.which("unshare")
  if unshare is None or subprocess.run([unshare, "-Urm", "true"],
                                       capture_output=True).returncode != 0:
    pytest.skip("needs `unshare -Urm` (user and mount namespaces) to mount a private tmpfs")
  return unshare


def _on_a_full_disk(disk: pathlib.Path, command: list[str], *, size: str = "1m",
                    copy: pathlib.Path | None = None, free_kib: int = 0
                    ) -> subprocess.CompletedProcess:
  """Runs `command` with a fresh tmpfs of `size` at `disk` (`copy` copied into it first),
  filled up to `free_kib` KiB free; nothing outside the namespace sees it."""
  unshare = _unshare()
  disk.mkdir(exist_ok=True)
  fill = ('cp -a "$COPY" "$DISK/" && ' if copy is not None else "") + (
      'dd if=/dev/zero of="$DISK/.filler" bs=1k count=$(( $(df -k --output=avail "$DISK" '
      '| tail -1) - $FREE )) status=none 2>/dev/null; ')
  env = dict(os.environ, DISK=str(disk), COPY=str(copy or ""), FREE=str(free_kib))
  return subprocess.run(
      [unshare, "-Urm", "sh", "-c", f'mount -t tmpfs -o size={size} tmpfs "$DISK" && {fill}'
       'exec "$@"', "sh", *command], cwd=ROOT, env=env, capture_output=True, text=True,
      timeout=TIMEOUT)


# ------------------------------------------------------------------ full disks


def test_a_full_disk_is_one_line_naming_the_folder_and_the_space(tmp_path):
  """An output written through `atomic.writing` (metrics.json, predictions.csv,
  figures, predict's CSV, an export) on a full disk: one line, no temporary file."""
  disk = tmp_path / "disk"
  script = tmp_path / "write.py"
  script.write_text(
      "import os, sys\n"
      f"sys.path.insert(0, {str(ROOT)!r})\n"
      "from lsattn.errors import LsattnError\n"
      "from lsattn.runs import atomic\n"
      "disk = sys.argv[1]\n"
      "for name in ('metrics.json', 'predictions.csv'):\n"
      "  try:\n"
      "    if name == 'metrics.json':\n"
      "      atomic.write_text(os.path.join(disk, name), 'x' * 200_000)\n"
      "    else:\n"
      "      with atomic.writing(os.path.join(disk, name)) as out:\n"
      "        for _ in range(100):\n"
      "          out.write('y' * 10_000)\n"
      "    print('written', name)\n"
      "  except LsattnError as error:\n"
      "    print(error)\n"
      "print(sorted(os.listdir(disk)))\n")
  result = _on_a_full_disk(disk, [sys.executable, str(script), str(disk)], free_kib=64)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics, predictions, listing = result.stdout.strip().splitlines()
  assert metrics.startswith(f"could not write {disk}/metrics.json: no space left on device in "
                            f"{disk} ("), metrics
  assert "free; the file needed 195.3 KiB)" in metrics
  assert predictions.startswith(f"could not write {disk}/predictions.csv: no space left on "
                                f"device in {disk} ("), predictions
  assert "the file needed more than" in predictions
  assert listing == "['.filler']"  # no temporary file left


def test_eval_predict_and_export_on_a_full_disk_are_one_line(pose, tmp_path):
  """eval.py (a copy of the run on the full disk), predict.py's CSV and export.py's
  artefact: exit 2, one line naming the folder, no traceback, the previous outputs
  intact."""
  disk = tmp_path / "disk"
  frame = sorted(pose["test_frames"].glob("*.color.png"))[0]
  run = disk / pose["workdir"].name
  result = _on_a_full_disk(disk, ["sh", "-c",
      f'{sys.executable} eval.py --workdir={run}; echo "eval $?" >&2; '
      f'dd if=/dev/zero of={disk}/.filler2 bs=1k count=100000 status=none 2>/dev/null; '
      f'{sys.executable} predict.py --workdir={pose["workdir"]} --output={disk}/out.csv '
      f'{frame}; echo "predict $?" >&2; '
      f'{sys.executable} export.py --workdir={pose["workdir"]} --output={disk}/model.bin; '
      f'echo "export $?" >&2; {sys.executable} eval.py --workdir={run}; echo "full $?" >&2; '
      f'cat {run}/eval/predictions.csv; ls -a {run}/eval {disk}'],
      size="4m", copy=pose["workdir"], free_kib=4)  # a page: the lock file's
  lines = result.stderr.splitlines()
  assert {"eval 2", "predict 2", "export 2", "full 2"} <= set(lines), result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  errors = [line for line in lines if line.startswith("error: ")]
  assert len(errors) == 4, result.stderr[-3000:]
  assert errors[0].startswith(f"error: could not write {run}/eval/"), errors[0]
  assert f": no space left on device in {run}/eval (" in errors[0], errors[0]
  assert errors[1].startswith(f"error: could not write {disk}/out.csv: no space left on device "
                              f"in {disk} ("), errors[1]
  assert errors[2].startswith(f"error: could not write {disk}/model.bin: no space left on "
                              f"device in {disk} ("), errors[2]
  # eval.py with not a byte free: its lock file is the first thing it writes.
  assert errors[3] == (f"error: could not write {run}/.lsattn-lock: no space left on device in "
                       f"{run} (eval.py writes there). Free disk space, then run the same "
                       f"command again."), errors[3]
  previous = (pose["workdir"] / "eval" / "predictions.csv").read_text()
  assert result.stdout.startswith(previous)  # the copy's predictions.csv, intact
  assert ".tmp" not in result.stdout  # no temporary file left, in eval/ or on the disk


# ---------------------------------------------------------- damaged checkpoints


def _state(offset: float = 0.0) -> dict:
  return {"params": {"w": jnp.arange(4096, dtype=jnp.float32) + offset,
                     "b": jnp.full((8,), 3.0 + offset)},
          "step": jnp.asarray(int(offset), jnp.int32)}


def _damage_silently(state_folder: pathlib.Path, name: str) -> None:
  """Changes one value of the array `name` ('params.w') inside a saved checkpoint, in
  its own format (zarr in OCDBT, zstd): a damage that orbax reads without complaint, as
  flipped bits that still decompress are."""
  array = tensorstore.open({"driver": "zarr", "path": name, "kvstore": {
      "driver": "ocdbt", "base": f"file://{state_folder}/"}}).result()
  array[5].write(array[5].read().result() + 1).result()


def test_a_silently_damaged_checkpoint_is_refused_by_name_and_resume_falls_back(
    tmp_path, capsys):
  manager = checkpoint.create_manager(tmp_path, save_every=1, keep=3)
  meta = {"signature": {"kind": "test"}}
  for step in (1, 2):
    assert checkpoint.save(manager, step, _state(step), meta)
  folder = tmp_path.resolve() / "checkpoints"
  assert set(checkpoint.read_meta(manager, 2)["checksums"]["arrays"]) == {
      "params/w", "params/b", "step"}
  _damage_silently(folder / "2" / "state", "params.w")
  abstract = checkpoint.abstract_like(_state())

  # eval.py, predict.py and export.py read the latest step: refused, by name.
  with pytest.raises(LsattnError) as error:
    checkpoint.restore_run(tmp_path, {"params": abstract["params"]}, meta["signature"],
                           partial=True)
  assert str(error.value) == (
      f"checkpoint {folder / '2'} is damaged: 1 of its arrays are not what was saved "
      f"(checksums differ): params/w; delete that folder to resume from an earlier step")
  restarted = checkpoint.create_manager(tmp_path, save_every=1, keep=3)
  with pytest.raises(LsattnError, match="params/w; delete that folder"):
    checkpoint.restore_latest(restarted, abstract, meta["signature"])

  # A resume falls back to step 1, saying so, and keeps the damaged folder aside.
  state, _, step = checkpoint.restore_latest(restarted, abstract, meta["signature"],
                                             fall_back=True)
  assert step == 1
  np.testing.assert_array_equal(jax.device_get(state["params"]["w"]), _state(1)["params"]["w"])
  assert (f"Warning: checkpoint {folder / '2'} is damaged: 1 of its arrays are not what was "
          f"saved (checksums differ): params/w. Kept it as {folder / '2.damaged'}; resuming "
          f"from the step before it.") in capsys.readouterr().err
  assert sorted(p.name for p in folder.iterdir()) == ["1", "2.damaged"]
  assert checkpoint.save(restarted, 2, _state(2), meta)  # training goes on from there
  assert checkpoint.restore_latest(restarted, abstract, meta["signature"])[2] == 2


def test_a_checkpoint_saved_without_checksums_still_restores(tmp_path):
  """Checkpoints of lsattn before checksums (tests/test_restoring.py restores a whole
  0.1.0 run folder)."""
  manager = checkpoint.create_manager(tmp_path, save_every=1, keep=2)
  meta = {"signature": {"kind": "test"}}
  # What `checkpoint.save` did before: the meta as given.
  manager.save(1, args=ocp.args.Composite(state=ocp.args.StandardSave(_state(1)),
                                          meta=ocp.args.JsonSave(meta)))
  assert "checksums" not in checkpoint.read_meta(manager, 1)
  state, _, step = checkpoint.restore_latest(manager, checkpoint.abstract_like(_state()),
                                             meta["signature"])
  assert step == 1
  np.testing.assert_array_equal(jax.device_get(state["params"]["w"]), _state(1)["params"]["w"])


# ------------------------------------------------------------ a killed run's leftovers


def test_a_killed_exports_temporary_file_is_cleared_by_the_next_export(pose, tmp_path):
  """SIGKILL in the middle of writing the artefact leaves `.model.bin.<8>.tmp`; the next
  export of the same path removes it, and nothing of the user's or of a live writer."""
  out = tmp_path / "out"
  out.mkdir()
  writer = subprocess.Popen(
      [sys.executable, "-c", "import sys, time\n"
       f"sys.path.insert(0, {str(ROOT)!r})\n"
       "from lsattn.runs import atomic\n"
       "with atomic.writing(sys.argv[1], 'wb') as out:\n"
       "  out.write(b'half an artefact'); out.flush(); print('writing', flush=True)\n"
       "  time.sleep(600)\n", str(out / "model.bin")], stdout=subprocess.PIPE, text=True)
  assert writer.stdout.readline() == "writing\n"
  writer.kill()
  writer.wait()
  [left] = [p.name for p in out.iterdir()]
  assert atomic._temporary_pattern(out / "model.bin").fullmatch(left), left
  users = [out / ".model.bin.tmp", out / "model.bin.tmp", out / ".model.bin.Users-1.tmp"]
  for path in users:
    path.write_text("the user's")
  with atomic.writing(out / "model.bin.json") as live:  # a live writer of another path
    live.write("{}")
    result = subprocess.run([sys.executable, "export.py", f"--workdir={pose['workdir']}",
                             f"--output={out / 'model.bin'}"], cwd=ROOT, capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.name for p in out.iterdir())
  assert left not in names
  assert set(names) - {"model.bin", "model.bin.json"} - {p.name for p in users} == {
      n for n in names if n.startswith(".model.bin.json.")}  # the live writer's, kept
  assert all(path.read_text() == "the user's" for path in users)


def test_a_temporary_file_still_being_written_is_kept(tmp_path):
  """A writer holds its temporary file's flock: another writer of the same path (another
  process) never removes it."""
  target = tmp_path / "predictions.csv"
  with atomic.writing(target) as first:
    first.write("first")
    [temporary] = [p for p in tmp_path.iterdir()]
    other = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
         "from lsattn.runs import atomic\n"
         f"print(atomic.clear_leftovers({str(target)!r}))"],
        capture_output=True, text=True, timeout=TIMEOUT)
    assert other.stdout.strip() == "[]", other.stderr
    assert temporary.exists()
  assert target.read_text() == "first"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]


# ------------------------------------------------------------ evaluation beside training


def test_eval_beside_training_writes_its_own_folder_under_its_own_lock(pose, tmp_path):
  """While train.py holds the run (its lock, with its purpose), eval.py evaluates the
  latest complete step into eval/step_<N>/; a second evaluation of that step, or an
  evaluation while another kind of writer holds the run, is refused."""
  workdir = shutil.copytree(pose["workdir"], tmp_path / "run")
  before = {p.name: p.read_bytes() for p in (workdir / "eval").iterdir() if p.is_file()}
  with run_lock.holding(workdir, "train.py"):
    result = experiment.evaluate(None, workdir)
    beside = workdir / "eval" / "step_2"
    assert result["checkpoint_step"] == 2
    # The same checkpoint as train.py's final evaluation: the same predictions.
    assert (beside / "predictions.csv").read_bytes() == before["predictions.csv"]
    assert json.loads((beside / "metrics.json").read_text()) == dict(
        json.loads(before["metrics.json"]), config_overrides={})  # eval.py's, none given
    assert {p.name: p.read_bytes() for p in (workdir / "eval").iterdir() if p.is_file()} == before
    assert not (beside / run_lock.LOCK_FILE).exists()
    with run_lock.holding(beside, "eval.py"):
      with pytest.raises(LsattnError, match=f"^{beside} is in use by another writer: pid "):
        experiment.evaluate(None, workdir)
  with run_lock.holding(workdir, "export.py"):
    with pytest.raises(LsattnError, match=f"^{workdir} is in use by another writer: pid "):
      experiment.evaluate(None, workdir)


# ------------------------------------------------------------------ datasets


def _scene(root: pathlib.Path) -> pathlib.Path:
  return synthetic.write_synthetic_seven_scenes(root, frames_per_sequence=4, image_size=(24, 32),
                                                train_sequences=(1,), test_sequences=(2,))


def test_a_damaged_shard_of_a_built_dataset_is_refused_naming_how_to_rebuild(tmp_path):
  manual = tmp_path / "manual"
  _scene(manual)
  builder = datasets.prepare("seven_scenes/synthetic_room", tmp_path / "built", manual)
  build = pathlib.Path(builder.data_dir)
  [shard] = build.glob("seven_scenes-train.array_record-*")
  data = shard.read_bytes()
  datasets.prepare("seven_scenes/synthetic_room", tmp_path / "built", manual)  # intact: reused
  advice = (f"Rebuild it: delete {build} and run the same command again (it needs the source "
            f"files, config.manual_dir), or use another --config.data_dir.")
  shard.write_bytes(data[:len(data) // 2])
  for manual_dir in (manual, ""):  # with or without the source at hand
    with pytest.raises(LsattnError) as error:
      datasets.prepare("seven_scenes/synthetic_room", tmp_path / "built", manual_dir)
    assert str(error.value) == (
        f"dataset 'seven_scenes/synthetic_room' in {build} is damaged: {shard.name} has "
        f"{len(data) // 2} bytes, the build wrote {len(data)} (truncated or overwritten). "
        f"{advice}")
  flipped = bytearray(data)
  flipped[len(data) // 2] ^= 0x01
  shard.write_bytes(bytes(flipped))
  with pytest.raises(LsattnError, match=f"{shard.name} has other contents than the build "
                                        f"wrote \\(corrupted\\)"):
    datasets.prepare("seven_scenes/synthetic_room", tmp_path / "built", manual)
  shutil.rmtree(build)  # as the message says
  datasets.prepare("seven_scenes/synthetic_room", tmp_path / "built", manual)
  assert shard.read_bytes() == data


KILLED_BUILD_SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
from lsattn.data import builders, datasets
generators = builders.SevenScenes._split_generators
def paused(self, dl_manager):
  print("building", flush=True)
  time.sleep(600)
builders.SevenScenes._split_generators = paused
datasets.prepare("seven_scenes/synthetic_room", sys.argv[1], sys.argv[2])
"""


def test_a_killed_builds_incomplete_folder_is_cleared_by_the_next_build(tmp_path, capsys):
  manual = tmp_path / "manual"
  _scene(manual)
  config_folder = tmp_path / "built" / "seven_scenes" / "synthetic_room"
  config_folder.mkdir(parents=True)
  users = config_folder / "incomplete.notes"  # not tfds' naming: the user's
  users.mkdir()
  script = tmp_path / "build.py"
  script.write_text(KILLED_BUILD_SCRIPT.format(root=str(ROOT)))
  building = subprocess.Popen([sys.executable, str(script), str(tmp_path / "built"),
                               str(manual)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert "building\n" in iter(building.stdout.readline, "")
    [left] = [p for p in config_folder.iterdir() if p.name.startswith("incomplete.")
              and p != users]
  finally:
    building.kill()
    building.wait()
  assert left.is_dir()
  datasets.prepare("seven_scenes/synthetic_room", tmp_path / "built", manual)
  assert not left.exists() and users.is_dir()
  assert sorted(p.name for p in config_folder.iterdir()) == ["1.0.0", "incomplete.notes"]
  err = capsys.readouterr().err
  assert f"Removed {left}, an incomplete build that an earlier, killed build left." in err


def test_a_full_disk_during_a_build_is_one_line_and_leaves_nothing(tmp_path):
  disk = tmp_path / "disk"
  manual = tmp_path / "manual"
  synthetic.write_synthetic_seven_scenes(manual, frames_per_sequence=8, image_size=(96, 128),
                                         train_sequences=(1,), test_sequences=(2,))
  script = tmp_path / "build.py"
  script.write_text(
      "import os, sys\n"
      f"sys.path.insert(0, {str(ROOT)!r})\n"
      "from lsattn.errors import LsattnError\n"
      "from lsattn.data import datasets\n"
      "try:\n"
      "  datasets.prepare('seven_scenes/synthetic_room', sys.argv[1] + '/built', sys.argv[2])\n"
      "  print('built')\n"
      "except LsattnError as error:\n"
      "  print(error)\n"
      "print(sorted(os.listdir(sys.argv[1])))\n")
  result = _on_a_full_disk(disk, [sys.executable, str(script), str(disk), str(manual)],
                           free_kib=48)
  assert result.returncode == 0, result.stderr[-3000:]
  message, listing = result.stdout.strip().splitlines()[-2:]
  source = sum(p.stat().st_size for p in manual.rglob("*") if p.is_file()) / 2**20
  assert message.startswith(f"could not build dataset 'seven_scenes/synthetic_room' in "
                            f"{disk}/built: no space left on device ("), message
  assert message.endswith(f" MiB free; the build stores the images of its source again, "
                          f"re-encoded, and the source holds {source:.1f} MiB). Free disk "
                          f"space or use another --config.data_dir, then run again; nothing of "
                          f"the build was left there."), message
  assert listing == "['.filler']"


def test_a_build_waits_for_another_process_building_the_same_dataset(tmp_path, capsys):
  """The build lock that makes clearing a killed build's folder safe: a second build of
  the same dataset waits for the first (here a process holding the lock for 2 s)."""
  manual = tmp_path / "manual"
  _scene(manual)
  config_folder = tmp_path / "built" / "seven_scenes" / "synthetic_room"
  holder = subprocess.Popen(
      [sys.executable, "-c", f"import sys, time; sys.path.insert(0, {str(ROOT)!r})\n"
       "from lsattn.runs import run_lock\n"
       "with run_lock.holding(sys.argv[1], 'a build'):\n"
       "  print('holding', flush=True); time.sleep(2)\n", str(config_folder)],
      stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline() == "holding\n"
    builder = datasets.prepare("seven_scenes/synthetic_room", tmp_path / "built", manual)
    assert holder.wait(timeout=TIMEOUT) == 0
  finally:
    holder.kill()
    holder.wait()
  assert builder.info.splits["train"].num_examples == 4
  assert (f"Waiting for another process's build of 'seven_scenes/synthetic_room' in "
          f"{config_folder} (pid {holder.pid} on host ") in capsys.readouterr().err
  assert sorted(p.name for p in config_folder.iterdir()) == ["1.0.0"]
