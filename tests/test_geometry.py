"""Quaternion and pose conversions against hand-computed values."""

import numpy as np
import pytest

from lsattn import geometry


def _axis_angle(axis, degrees):
  axis = np.asarray(axis, float) / np.linalg.norm(axis)
  half = np.radians(degrees) / 2
  return np.concatenate([[np.cos(half)], np.sin(half) * axis])


def test_quarter_turn_about_z_matrix():
  q = _axis_angle([0, 0, 1], 90)
  expected = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], float)
  np.testing.assert_allclose(geometry.quaternion_to_matrix(q), expected, atol=1e-12)
  np.testing.assert_allclose(geometry.matrix_to_quaternion(expected), q, atol=1e-12)


def test_matrix_round_trip_random_rotations():
  rng = np.random.default_rng(0)
  q = geometry.canonical_quaternion(geometry.normalize_quaternion(rng.normal(size=(100, 4))))
  back = geometry.matrix_to_quaternion(geometry.quaternion_to_matrix(q))
  np.testing.assert_allclose(back, q, atol=1e-10)


def test_half_turn_with_zero_w_keeps_a_unit_quaternion():
  q = np.array([0.0, -1.0, 0.0, 0.0])  # 180 degrees about x, w == 0
  canonical = geometry.canonical_quaternion(q)
  np.testing.assert_allclose(canonical, [0, 1, 0, 0])
  np.testing.assert_allclose(geometry.canonical_quaternion(-q), canonical)


@pytest.mark.parametrize("degrees", [0.0, 1.0, 45.0, 179.0])
def test_angle_counts_full_angle_and_ignores_sign(degrees):
  q1 = _axis_angle([1, 2, 3], 10)
  q2 = geometry.quaternion_multiply(_axis_angle([0, 1, 0], degrees), q1)
  assert geometry.quaternion_angle_deg(q1, q2) == pytest.approx(degrees, abs=1e-5)
  assert geometry.quaternion_angle_deg(q1, -q2) == pytest.approx(degrees, abs=1e-5)


def test_invert_pose_gives_camera_centre():
  # World-to-camera: rotate 90 degrees about z, then translate.
  q_w2c = _axis_angle([0, 0, 1], 90)
  t_w2c = np.array([1.0, 2.0, 3.0])
  centre, q_c2w = geometry.invert_pose(t_w2c, q_w2c)
  # The camera centre maps to the camera origin.
  np.testing.assert_allclose(geometry.rotate(q_w2c, centre) + t_w2c, 0, atol=1e-12)
  np.testing.assert_allclose(geometry.quaternion_to_matrix(q_c2w),
                             geometry.quaternion_to_matrix(q_w2c).T, atol=1e-12)


def test_zero_quaternion_is_refused():
  with pytest.raises(ValueError, match="zero"):
    geometry.normalize_quaternion(np.zeros(4))
