"""Shared test set-up: the repository root on sys.path (configs/ is not part
of the package) and a tiny synthetic scene for end-to-end runs."""

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def data(tmp_path_factory):
  """A few-frame synthetic scene in the 7-Scenes layout, and a data_dir for it
  (built by the first run that uses it, then shared)."""
  from lsattn.data import synthetic
  root = tmp_path_factory.mktemp("data")
  synthetic.write_synthetic_seven_scenes(root / "manual", frames_per_sequence=8,
                                         image_size=(48, 64))
  return {"manual_dir": str(root / "manual"), "data_dir": str(root / "built")}
