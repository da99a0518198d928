"""Losses (eq. 4, learned weighting, eq. 5) against hand-computed values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsattn.nn import losses

IDENTITY = jnp.array([[1.0, 0.0, 0.0, 0.0]])
QUARTER_Z = jnp.array([[np.sqrt(0.5), 0.0, 0.0, np.sqrt(0.5)]])  # 90 deg about z


def test_posenet_loss_hand_values():
  # 3-4-5 triangle; |identity - quarter turn| = sqrt((1 - c)^2 + c^2), c = sqrt(.5).
  c = np.sqrt(0.5)
  expected_orientation = np.sqrt((1 - c) ** 2 + c ** 2)
  out = jax.jit(losses.posenet_loss)(jnp.zeros((1, 3)), QUARTER_Z,
                                     jnp.array([[3.0, 4.0, 0.0]]), IDENTITY, 10.0)
  assert out["position_loss"] == pytest.approx(5.0, rel=1e-6)
  assert out["orientation_loss"] == pytest.approx(expected_orientation, rel=1e-6)
  assert out["loss"] == pytest.approx(5.0 + 10.0 * expected_orientation, rel=1e-6)


def test_posenet_loss_normalises_prediction_and_ignores_sign():
  # -3 q: same rotation as q, wrong norm and opposite sign.
  out = losses.posenet_loss(jnp.zeros((1, 3)), -3.0 * QUARTER_Z,
                            jnp.zeros((1, 3)), QUARTER_Z, 500.0)
  assert out["orientation_loss"] == pytest.approx(0.0, abs=1e-6)
  assert out["loss"] == pytest.approx(0.0, abs=1e-4)


def test_posenet_loss_mask_and_fully_masked():
  pred_position = jnp.array([[3.0, 4.0, 0.0], [100.0, 0.0, 0.0]])
  pred_orientation = jnp.array([[1.0, 0, 0, 0], [0.0, 0, 0, 0]])  # padding: zero quaternion
  true_position = jnp.zeros((2, 3))
  true_orientation = jnp.tile(IDENTITY, (2, 1))
  mask = jnp.array([True, False])
  out = losses.posenet_loss(pred_position, pred_orientation, true_position,
                            true_orientation, 1.0, mask)
  assert out["loss"] == pytest.approx(5.0)
  grads = jax.grad(lambda p: losses.posenet_loss(
      p, pred_orientation, true_position, true_orientation, 1.0, mask)["loss"])(pred_position)
  np.testing.assert_allclose(grads[1], 0.0)
  empty = losses.posenet_loss(pred_position, pred_orientation, true_position,
                              true_orientation, 1.0, jnp.zeros(2, bool))
  assert float(empty["loss"]) == 0.0


def test_posenet_gradient_finite_at_exact_match():
  def loss_fn(position, orientation):
    return losses.posenet_loss(position, orientation, position, orientation, 300.0)["loss"]
  position = jnp.array([[1.0, 2.0, 3.0]])
  grads = jax.jit(jax.grad(loss_fn, argnums=(0, 1)))(position, QUARTER_Z)
  for grad in grads:
    assert np.all(np.isfinite(grad))


def test_learned_weighting_at_init():
  weights = losses.init_learned_weighting()
  assert weights["s_x"].dtype == jnp.float32 and float(weights["s_x"]) == 0.0
  assert float(weights["s_q"]) == -3.0
  value = losses.learned_weighting_loss(2.0, 0.5, weights["s_x"], weights["s_q"])
  assert value == pytest.approx(2.0 + 0.0 + np.exp(3.0) * 0.5 - 3.0, rel=1e-6)


def test_cross_entropy_zero_logits_and_accuracy():
  logits = jnp.zeros((4, 5)).at[0, 2].set(1.0)
  labels = jnp.array([2, 0, 1, 3])
  out = jax.jit(losses.cross_entropy_loss)(logits, labels, jnp.array([False, True, True, True]))
  assert out["loss"] == pytest.approx(np.log(5.0), rel=1e-6)
  # Ties in argmax go to class 0: only example 1 (label 0) is right.
  assert out["accuracy"] == pytest.approx(1 / 3)
  full = losses.cross_entropy_loss(logits, labels)
  expected_first = -(1.0 - np.log(np.e + 4))
  assert full["loss"] == pytest.approx((expected_first + 3 * np.log(5.0)) / 4, rel=1e-6)
  assert float(losses.cross_entropy_loss(logits, labels, jnp.zeros(4, bool))["loss"]) == 0.0
