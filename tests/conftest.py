"""Shared test set-up: the repository root on sys.path (configs/ is not part
of the package), a compilation cache for the session, and a tiny synthetic
scene for end-to-end runs."""

import atexit
import os
import pathlib
import shutil
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

# Many tests compile the same programs: train.py/eval.py subprocesses of one
# tiny config, resumed runs, the same model in several tests. JAX's
# persistent cache (set before jax is imported; subprocesses inherit it)
# compiles each once per session. One fresh folder per test process (each
# pytest-xdist worker has its own), removed at exit; a cache folder the user
# set is left alone.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
if ("JAX_COMPILATION_CACHE_DIR" not in os.environ
    or os.environ.get("LSATTN_TESTS_CACHE_OWNER", _WORKER) != _WORKER):
  _cache = tempfile.mkdtemp(prefix=f"lsattn-tests-jax-cache-{_WORKER}-")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  os.environ["LSATTN_TESTS_CACHE_OWNER"] = _WORKER


@pytest.fixture(scope="session")
def data(tmp_path_factory):
  """A few-frame synthetic scene in the 7-Scenes layout, and a data_dir for it
  (built by the first run that uses it, then shared)."""
  from lsattn.data import synthetic
  root = tmp_path_factory.mktemp("data")
  synthetic.write_synthetic_seven_scenes(root / "manual", frames_per_sequence=8,
                                         image_size=(48, 64))
  return {"manual_dir": str(root / "manual"), "data_dir": str(root / "built")}
