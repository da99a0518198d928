"""Shared test set-up: the repository root on sys.path (configs/ is not part
of the package), one compilation cache for every test process, a tiny
synthetic scene for end-to-end runs, and folders built once per test run.
"""

import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

# Many tests compile the same programs: train.py/eval.py subprocesses of one
# tiny config, resumed runs, the same model in several tests and in both
# pytest-xdist workers. One JAX persistent cache (set before jax is imported;
# workers and subprocesses inherit it) compiles each once: by default in
# ~/.cache/lsattn/tests-jax-compilation, kept across runs (JAX's keys name its
# version, the program and the compiler options). Programs that compile in
# 0.3 s or more are cached (JAX's default, 1 s, leaves out many of ours; the
# hundreds of tiny ones cost more to store than to compile). JAX's own size
# bound is not set: it locks the folder and scans every entry on each write,
# which measured slower than compiling. Instead the folder is pruned, oldest
# first, to CACHE_BYTES when a test run starts. LSATTN_TESTS_JAX_CACHE=<folder>
# puts it elsewhere (a fresh folder measures a cold run); a cache folder the
# user set (JAX_COMPILATION_CACHE_DIR) is used as it is.
CACHE_BYTES = 2 << 30
OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if OWN_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.expanduser(os.environ.get(
      "LSATTN_TESTS_JAX_CACHE", "~/.cache/lsattn/tests-jax-compilation"))
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# The tests' programs are tiny and run a few times each: compiling is most of
# their cost. XLA's CPU backend compiles the test model's train step in half
# the time without LLVM's optimisations (54 s -> 27 s measured, the same loss),
# and in 0.6x the time again with its older loop emitters instead of the fusion
# emitters (10.7 s -> 6.3 s for tiny_cnn's, 22.0 s -> 15.5 s for GoogLeNet's,
# measured 2026-12-04). Tests compare programs with each other, never with an
# optimised build. Subprocesses inherit them; tests that set XLA_FLAGS add to
# TEST_XLA_FLAGS.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()


def pytest_configure(config):
  """Prunes the tests' compilation cache to CACHE_BYTES (the oldest entries first),
  once per run: in the controlling process, before any worker starts."""
  if not OWN_CACHE or hasattr(config, "workerinput"):  # the user's, or an xdist worker
    return
  folder = pathlib.Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
  if not folder.is_dir():
    return
  entries = sorted((entry.stat().st_mtime, entry.stat().st_size, entry)
                   for entry in folder.iterdir() if entry.is_file())
  total = sum(size for _, size, _ in entries)
  for _, size, entry in entries:
    if total <= CACHE_BYTES:
      break
    entry.unlink(missing_ok=True)
    total -= size


# pyproject.toml runs pytest-xdist with --dist loadscope: a module's tests stay on one
# worker, so its module-scoped runs (a multi-process job, a trained GoogLeNet) are made
# once, not once per worker. Modules are handed out in collection order, so the longest
# go first and the short ones fill in at the end: otherwise one worker can still be
# running a long module while the other has nothing left. By their time in the
# 2026-12-06 profile (pytest --durations=0, cold cache), longest first.
LONGEST_MODULES = ("test_multiprocess.py", "test_backbones.py", "test_experiment.py",
                   "test_model.py", "test_reliability.py", "test_run_safety.py",
                   "test_training.py", "test_kernels.py", "test_ablation.py",
                   "test_demo_path.py", "test_multiscene.py", "test_install.py",
                   "test_device_check.py", "test_precision.py", "test_weights_cli.py",
                   "test_disk_and_damage.py", "test_core.py", "test_benchmarks.py",
                   "test_export.py", "test_cli.py")


def pytest_collection_modifyitems(config, items):
  """The LONGEST_MODULES first, in that order; the rest as collected."""
  rank = {name: i for i, name in enumerate(LONGEST_MODULES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def data(tmp_path_factory):
  """A few-frame synthetic scene in the 7-Scenes layout, and a data_dir where it
  is built as configs/test.py's dataset: made once, shared by every worker
  (two builds into one data_dir at once would collide)."""
  from lsattn.data import datasets
  from lsattn.data.synthetic import room as synthetic
  from shared import built_once, shared_folder  # tests/shared.py
  root = shared_folder(tmp_path_factory, "data")
  with built_once(root) as build:
    if build:
      synthetic.write_synthetic_seven_scenes(root / "manual", frames_per_sequence=8,
                                             image_size=(48, 64))
      datasets.prepare("seven_scenes/synthetic_room", root / "built", root / "manual")
  return {"manual_dir": str(root / "manual"), "data_dir": str(root / "built")}
