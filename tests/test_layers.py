"""The layering of ARCHITECTURE.md, checked by import-linter's contracts (pyproject.toml,
[tool.importlinter]): no import circle, no import that runs upward."""

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _lint_imports(cwd: pathlib.Path, package_parent: pathlib.Path):
  # --no-cache: a cache of an earlier graph could hide a changed import.
  command = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
             "sys.argv = ['lint-imports', '--no-cache']; sys.exit(lint_imports_command())"]
  env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(package_parent)}
  return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_contracts_hold():
  result = _lint_imports(ROOT, ROOT)
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
  assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
  """The check can fail: a copy of the package in which errors.py imports the model."""
  shutil.copytree(ROOT / "lsattn", tmp_path / "lsattn",
                  ignore=shutil.ignore_patterns("__pycache__"))
  shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
  errors = tmp_path / "lsattn" / "errors.py"
  errors.write_text(errors.read_text() + "\nfrom lsattn import model  # noqa: E402,F401\n")
  result = _lint_imports(tmp_path, tmp_path)
  assert result.returncode != 0
  assert "lsattn.errors is not allowed to import lsattn.model" in result.stdout
