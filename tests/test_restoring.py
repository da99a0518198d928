"""Restoring a trained run without training (lsattn.restoring): the parameters and
batch-norm statistics only, shapes from the model alone, and a run folder written
by lsattn 0.1.0 (tests/fixtures/run_v0_1_0) restores and predicts as it did."""

import json
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np

from lsattn import prediction, restoring

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE = pathlib.Path(__file__).resolve().parent / "fixtures" / "run_v0_1_0"


def test_a_run_folder_of_0_1_0_restores_and_predicts_as_it_did(tmp_path):
  run = shutil.copytree(FIXTURE / "run", tmp_path / "run")
  images = sorted((FIXTURE / "images").glob("*.png"))
  expected = json.loads((FIXTURE / "predicted_by_0.1.0.json").read_text())
  results = prediction.predict(run, None, images, per_step=True)
  assert [pathlib.Path(r["path"]).name for r in results] == [e["path"] for e in expected]
  for got, want in zip(results, expected):
    assert got["layers"] == want["layers"]
    np.testing.assert_allclose(got["position"], want["position"], atol=1e-5)
    np.testing.assert_allclose(got["orientation"], want["orientation"], atol=1e-5)
    for got_step, want_step in zip(got["steps"], want["steps"], strict=True):
      np.testing.assert_allclose(got_step["position"], want_step["position"], atol=1e-5)


def test_restore_reads_the_model_variables_only(tmp_path):
  """The checkpoint holds the optimiser's state and the learned loss weights; the
  restored variables are the model's: shapes from `model.init_model`."""
  run = shutil.copytree(FIXTURE / "run", tmp_path / "run")
  restored = restoring.restore(run)
  assert isinstance(restored.state, restoring.TrainedVariables)
  assert set(restored.state.params) == {"backbone", "core", "head", "step_heads"}
  expected = restoring.abstract_variables(restored.model_config,
                                          (restored.config.image_size,) * 2 + (3,))
  shapes = lambda tree: jax.tree.map(lambda x: (x.shape, x.dtype), tree)
  assert shapes(restored.state.params) == shapes(expected["params"])
  assert shapes(restored.state.model_state) == shapes(expected["model_state"])
  assert int(restored.state.skipped_steps) == 0


def test_prediction_and_export_import_neither_training_nor_optax():
  script = ("import sys\n"
            "import lsattn.exporting, lsattn.prediction, lsattn.restoring\n"
            "print(sorted(m for m in ('lsattn.training', 'optax') if m in sys.modules))\n")
  result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "[]"
