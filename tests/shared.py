"""Folders made once per test run and shared by every pytest-xdist worker
(the pattern of pytest-xdist's documentation: a file lock in the run's
common temporary folder)."""

import contextlib
import os
import pathlib

import filelock


def shared_folder(tmp_path_factory, name: str) -> pathlib.Path:
  """A folder of this test run that every pytest-xdist worker sees as the same.

  Without xdist it is a fresh temporary folder.
  """
  if "PYTEST_XDIST_WORKER" not in os.environ:
    return tmp_path_factory.mktemp(name)
  # Each worker's base folder is <run>/popen-gw<i>: their parent is the run's.
  folder = tmp_path_factory.getbasetemp().parent / "shared" / name
  folder.mkdir(parents=True, exist_ok=True)
  return folder


@contextlib.contextmanager
def built_once(folder: pathlib.Path):
  """`with built_once(folder) as build:` ... `if build: <make folder's contents>`.

  The first process of the run to get here builds while the others wait;
  later ones find it built. A build that raised is tried again by the next.
  """
  with filelock.FileLock(str(folder) + ".lock"):
    done = folder / ".built"
    build = not done.exists()
    yield build
    if build:
      done.touch()
