"""Retrieval baselines (lsattn.evaluation.retrieval, evaluation.retrieval_baselines) on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from configs import test as test_config
from lsattn import config_checks, experiment, geometry
from lsattn.evaluation import loop as evaluation, retrieval

OFFSET = np.array([100.0, -50.0])  # shared by every descriptor: centring removes it
REFERENCES = OFFSET + np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])


def _about_z(degrees):
  half = np.radians(degrees) / 2
  return np.array([np.cos(half), 0.0, 0.0, np.sin(half)])


def _about_x(degrees):
  half = np.radians(degrees) / 2
  return np.array([np.cos(half), np.sin(half), 0.0, 0.0])


@pytest.mark.parametrize("chunk_size", [1, 2, 1024])
def test_nearest_neighbours_by_centred_cosine(chunk_size):
  queries = OFFSET + np.array([[0.9, 0.2],     # towards reference 0
                               [0.0, 5.0],     # reference 1's direction, 5x further
                               [-0.1, -2.0],   # reference 3
                               [-3.0, 0.1],    # reference 2
                               [0.5, 0.5]])    # between 0 and 1: a tie, the first wins
  nearest = retrieval.nearest_neighbours(queries, REFERENCES, chunk_size=chunk_size)
  np.testing.assert_array_equal(nearest, [0, 1, 3, 2, 0])
  assert nearest.dtype == np.int64


def test_nearest_neighbours_rejects_mismatched_descriptors():
  with pytest.raises(ValueError, match="descriptors"):
    retrieval.nearest_neighbours(np.zeros((2, 3)), REFERENCES)


def test_retrieval_errors_are_those_of_the_nearest_training_pose():
  train_position = np.array([[0.0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3]])
  train_orientation = np.stack([_about_z(angle) for angle in (0, 90, 180, 270)])
  queries = OFFSET + np.array([[2.0, 0.1], [0.1, 3.0], [0.0, -1.0]])  # -> 0, 1, 3
  picked = [0, 1, 3]
  true_position = train_position[picked] + np.array([[0.1, 0, 0], [0, 0.2, 0], [0, 0, 0.3]])
  true_orientation = np.stack([
      geometry.quaternion_multiply(train_orientation[i], _about_x(angle))
      for i, angle in zip(picked, (10.0, 20.0, 40.0))])
  result = retrieval.retrieval_errors(queries, REFERENCES, train_position, train_orientation,
                                      true_position, true_orientation, name="knn_test")
  assert set(result) == {"knn_test_median_translation_m", "knn_test_median_rotation_deg"}
  assert result["knn_test_median_translation_m"] == pytest.approx(0.2)
  assert result["knn_test_median_rotation_deg"] == pytest.approx(20.0, abs=1e-4)


def test_pixel_descriptors_average_areas_and_features_pool():
  images = np.zeros((2, 32, 48, 3), np.float32)
  images[0] = 7.0
  images[1, :, :24] = -10.0  # left half dark, right half bright
  images[1, :, 24:] = 10.0
  descriptors = np.asarray(retrieval.pixel_descriptors(images))
  assert descriptors.shape == (2, 16 * 16 * 3)
  np.testing.assert_allclose(descriptors[0], 7.0, atol=1e-5)
  small = descriptors[1].reshape(16, 16, 3)
  np.testing.assert_allclose(small[:, :7], -10.0, atol=1e-4)
  np.testing.assert_allclose(small[:, 9:], 10.0, atol=1e-4)
  tap = np.arange(2 * 2 * 3 * 4, dtype=np.float32).reshape(2, 2, 3, 4)
  np.testing.assert_allclose(retrieval.pooled_features(tap), tap.mean(axis=(1, 2)))


def test_features_tap_is_5b_or_the_deepest_the_backbone_has():
  config = test_config.get_config()
  config.backbone = "caffe"
  model_config = config_checks.check_config(config)
  assert evaluation.features_tap(model_config) == "5b"
  config.candidate_layers = ("4c", "3b")
  model_config = config_checks.check_config(config)
  assert evaluation.features_tap(model_config) == "4c"


def test_summary_table_shows_the_retrieval_medians():
  result = {"median_translation_m": 0.25, "median_rotation_deg": 6.0,
            "mean_translation_m": 0.3, "mean_rotation_deg": 7.0,
            "baseline_median_translation_m": 0.4, "baseline_median_rotation_deg": 16.0,
            "baseline_mean_translation_m": 0.5, "baseline_mean_rotation_deg": 20.0,
            "num_examples": 3, "knn_features_tap": "5b", "knn_features_layer": "Conv-5B",
            "knn_pixels_median_translation_m": 0.31, "knn_pixels_median_rotation_deg": 9.5,
            "knn_features_median_translation_m": 0.35, "knn_features_median_rotation_deg": 11.0}
  lines = evaluation.summary_table(result, "pose").splitlines()
  assert "kNN pixels" in lines[0] and "kNN Conv-5B" in lines[0]
  assert lines[1].split()[-4:] == ["0.250", "0.400", "0.310", "0.350"]
  assert lines[2].split()[-4:] == ["6.000", "16.000", "9.500", "11.000"]
  assert lines[3].split()[-2:] == ["-", "-"]  # no retrieval means


def test_retrieval_baselines_over_a_built_split(data):
  config = test_config.get_config()
  config.data_dir, config.manual_dir = data["data_dir"], data["manual_dir"]
  run = experiment.setup(config)
  state = experiment.initial_state(run)
  kwargs = dict(options=run.options, batch_size=config.eval_batch_size, mesh=run.mesh)
  # The training split against itself: every image finds itself, so no error.
  itself = evaluation.retrieval_baselines(run.model_config, state.params, state.model_state,
                                          run.train_split, run.train_split, **kwargs)
  assert itself["knn_features_tap"] == "t4"  # tiny_cnn's deepest (configs/test.py)
  for name in ("knn_pixels", "knn_features"):
    assert itself[f"{name}_median_translation_m"] == pytest.approx(0.0, abs=1e-6)
    assert itself[f"{name}_median_rotation_deg"] == pytest.approx(0.0, abs=1e-2)
  test = evaluation.retrieval_baselines(run.model_config, state.params, state.model_state,
                                        run.test_split, run.train_split, **kwargs)
  assert set(test) == set(itself)
  for name in ("knn_pixels", "knn_features"):
    assert 0.0 < test[f"{name}_median_translation_m"] < 5.0
    assert 0.0 < test[f"{name}_median_rotation_deg"] < 180.0
