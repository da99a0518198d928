"""lsattn as a user installs it: a wheel in a fresh virtual environment.

The wheel is built from a copy of the repository's package files (so the
build leaves nothing in the working tree) with the installed setuptools,
offline; the virtual environment sees this interpreter's packages (jax, flax,
tfds: ``--system-site-packages``, and a venv's through a ``.pth`` file) and
gets the wheel alone (``--no-deps --no-index``). Every command then runs from
a folder outside the repository with PYTHONPATH cleared, so only the installed
copy can be imported: its console scripts train the test config
(configs/test.py copied alone) for two steps, and its config checks refuse an
unknown key (the schema is in the package, `lsattn.config_schema`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ("lsattn-train", "lsattn-eval", "lsattn-predict", "lsattn-export")


def _run(command, cwd, timeout=600) -> subprocess.CompletedProcess:
  env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
  return subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=timeout)


def _build_wheel(tmp: pathlib.Path) -> pathlib.Path:
  import setuptools
  if (tuple(int(p) for p in setuptools.__version__.split(".")[:2]) < (70, 1)
      and importlib.util.find_spec("wheel") is None):
    pytest.fail("building a wheel with this setuptools needs the 'wheel' package: "
                "pip install -e '.[test]'")
  source = tmp / "source"
  source.mkdir()
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(ROOT / name, source / name)
  shutil.copytree(ROOT / "lsattn", source / "lsattn",
                  ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
  built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                "--no-index", "-w", tmp / "dist", source], cwd=tmp)
  assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
  (wheel,) = (tmp / "dist").glob("lsattn-*.whl")
  return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """{'venv': the venv's bin folder, 'home': a folder outside the repository, 'wheel'}."""
  tmp = tmp_path_factory.mktemp("install")
  assert ROOT not in tmp.parents
  wheel = _build_wheel(tmp)
  venv = tmp / "venv"
  created = _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                  venv], cwd=tmp)
  assert created.returncode == 0, created.stderr
  # --system-site-packages reaches the base interpreter's packages only: when
  # this interpreter is itself a venv's (CI's), its packages are listed too.
  # Their .pth files are not run, so its editable lsattn stays out of sight.
  (site_packages,) = venv.glob("lib/python*/site-packages")
  (site_packages / "parent_environment.pth").write_text(
      "\n".join(sorted({sysconfig.get_paths()[kind] for kind in ("purelib", "platlib")})) + "\n")
  # This interpreter's pip (visible through the system site-packages) installs
  # into the venv it runs in. --ignore-installed: a development install of
  # lsattn among the system's packages must not count as "already there".
  install = _run([venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index",
                  "--ignore-installed", wheel], cwd=tmp)
  assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
  home = tmp / "home"
  home.mkdir()
  return {"bin": venv / "bin", "home": home, "wheel": wheel, "venv": venv}


def test_wheel_holds_every_module_and_the_console_scripts(installed):
  with zipfile.ZipFile(installed["wheel"]) as wheel:
    names = set(wheel.namelist())
    entry_points = next(wheel.read(n).decode() for n in names if n.endswith("entry_points.txt"))
  modules = {str(p.relative_to(ROOT)) for p in (ROOT / "lsattn").rglob("*.py")
             if "__pycache__" not in p.parts}
  assert modules - names == set()
  for script, function in zip(SCRIPTS, ("train", "evaluate", "predict", "export")):
    assert f"{script} = lsattn.cli:{function}" in entry_points
    assert (installed["bin"] / script).is_file()


def test_installed_copy_is_the_one_imported(installed):
  python = installed["bin"] / "python"
  found = _run([python, "-c", "import lsattn, sys; assert 'site-packages' in lsattn.__file__; "
                "print(lsattn.__file__)"], cwd=installed["home"])
  assert found.returncode == 0, found.stderr
  location = pathlib.Path(found.stdout.strip())
  assert installed["venv"] in location.parents and ROOT not in location.parents
  # The repository's configs/ are not importable from here.
  configs = _run([python, "-c", "import configs"], cwd=installed["home"])
  assert configs.returncode != 0 and "ModuleNotFoundError" in configs.stderr


def test_installed_copy_trains_the_test_config(installed, data):
  home = installed["home"]
  shutil.copy(ROOT / "configs" / "test.py", home / "test_config.py")
  workdir = home / "run"
  trained = _run([installed["bin"] / "lsattn-train", "--config=test_config.py",
                  f"--workdir={workdir}", f"--config.data_dir={home / 'data'}",
                  f"--config.manual_dir={data['manual_dir']}", "--config.num_train_steps=2",
                  "--config.eval_every_steps=100"], cwd=home)
  assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
  steps = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
  assert max(steps) == 2
  metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert metrics  # the final evaluation ran and wrote its metrics
  # Only the installed copy ran: nothing was written into the repository.
  assert not (ROOT / "build").exists()


def test_installed_copy_refuses_unknown_keys(installed):
  home = installed["home"]
  shutil.copy(ROOT / "configs" / "test.py", home / "typo_config.py")
  override = _run([installed["bin"] / "lsattn-train", "--config=typo_config.py",
                   f"--workdir={home / 'typo'}", "--config.batchsize=4"], cwd=home)
  assert override.returncode == 2, override.stderr
  assert "batchsize" in override.stderr and "Traceback" not in override.stderr
  assert len(override.stderr.strip().splitlines()) == 1

  # A config file with a key the schema lacks: config_checks, in the package.
  (home / "extra_config.py").write_text(
      "from lsattn import defaults\n\n\ndef get_config():\n"
      "  config = defaults.get_config()\n  config.batchsize = 4\n  return config\n")
  extra = _run([installed["bin"] / "lsattn-train", "--config=extra_config.py",
                f"--workdir={home / 'extra'}", f"--config.data_dir={home / 'extra_data'}"],
               cwd=home)
  assert extra.returncode == 2, extra.stderr
  assert "unknown config key" in extra.stderr and "'batchsize'" in extra.stderr
  assert "Traceback" not in extra.stderr


def test_each_console_script_lists_its_own_flags(installed):
  # absl's --help exits 1 after printing the usage.
  helps = {script: _run([installed["bin"] / script, "--help"], cwd=installed["home"]).stdout
           for script in SCRIPTS}
  for script, shown in helps.items():
    assert "--config:" in shown and "--workdir:" in shown, shown
  assert "Trains a model" in helps["lsattn-train"]
  assert "--output:" in helps["lsattn-predict"] and "per_step:" in helps["lsattn-predict"]
  assert "--output:" not in helps["lsattn-train"] + helps["lsattn-eval"]
  assert "--platforms:" in helps["lsattn-export"] and "per_step:" not in helps["lsattn-export"]
