"""Straight-through Gumbel-softmax: forward, backward, sampling law, edge cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsattn import LsattnError
from lsattn.nn.gumbel import gumbel_softmax_st, sample_gumbel


def _reference_st(logits, noise, temperature):
  """The one-line straight-through form (distrax style), an independent reference."""
  soft = jax.nn.softmax((logits + noise) / temperature, axis=-1)
  hard = jax.nn.one_hot(jnp.argmax(logits + noise, axis=-1), logits.shape[-1])
  return hard + soft - jax.lax.stop_gradient(soft)


def test_forward_is_exact_one_hot_for_any_batch_shape():
  logits = jax.random.normal(jax.random.key(0), (3, 5, 4))
  sample = jax.jit(gumbel_softmax_st)(logits, jax.random.key(1), 0.7)
  assert sample.shape == (3, 5, 4)
  assert set(np.unique(np.asarray(sample))) <= {0.0, 1.0}
  np.testing.assert_array_equal(np.sum(sample, -1), 1.0)


def test_evaluation_is_argmax_without_noise():
  logits = jnp.array([[0.1, 2.0, -1.0], [5.0, 4.0, 4.9]])
  np.testing.assert_array_equal(gumbel_softmax_st(logits, None, 1.0), [[0, 1, 0], [1, 0, 0]])


@pytest.mark.parametrize("temperature", [0.1, 1.0, 3.0])
@pytest.mark.parametrize("with_noise", [True, False], ids=["train", "eval"])
def test_backward_is_the_softmax_jacobian(temperature, with_noise):
  key = jax.random.key(2)
  logits = jax.random.normal(jax.random.key(3), (6, 4))
  cotangent = jax.random.normal(jax.random.key(4), (6, 4))
  noise = sample_gumbel(key, logits.shape) if with_noise else jnp.zeros_like(logits)

  _, vjp = jax.vjp(lambda l: gumbel_softmax_st(l, key if with_noise else None, temperature),
                   logits)
  _, vjp_reference = jax.vjp(lambda l: _reference_st(l, noise, temperature), logits)
  soft = jax.nn.softmax((logits + noise) / temperature)
  analytic = soft * (cotangent - jnp.sum(cotangent * soft, -1, keepdims=True)) / temperature

  np.testing.assert_allclose(vjp(cotangent)[0], analytic, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(vjp(cotangent)[0], vjp_reference(cotangent)[0], rtol=1e-5, atol=1e-6)
  # hard + soft - soft is one-hot only up to rounding.
  np.testing.assert_allclose(gumbel_softmax_st(logits, key if with_noise else None, temperature),
                             _reference_st(logits, noise, temperature), atol=1e-6)


def _chi_square(counts, probabilities):
  expected = probabilities * counts.sum()
  return float(np.sum((counts - expected) ** 2 / expected))


def test_sampled_frequencies_follow_softmax():
  logits = jnp.array([0.0, 1.0, 2.0, -1.0])
  keys = jax.random.split(jax.random.key(5), 20000)
  samples = jax.jit(jax.vmap(lambda k: gumbel_softmax_st(logits, k, 1.0)))(keys)
  counts = np.asarray(samples.sum(0))
  # 3 degrees of freedom: chi-square > 16.3 has probability 0.001 for a right sampler.
  assert _chi_square(counts, np.asarray(jax.nn.softmax(logits))) < 16.3
  # The same statistic rejects a sampler with the wrong law (e.g. softmax(logits / 2)).
  assert _chi_square(counts, np.asarray(jax.nn.softmax(logits / 2))) > 100


@pytest.mark.parametrize("logits", [
    [3e38, -3e38, 0.0], [-3e38, -3e38, -3e38], [1e30, 1e30, -1e30], [0.0, 0.0, 0.0]],
    ids=["huge-spread", "all-very-negative", "ties-huge", "all-equal"])
def test_extreme_logits_stay_finite(logits):
  logits = jnp.array(logits, jnp.float32)

  def loss(l):
    return jnp.sum(gumbel_softmax_st(l, jax.random.key(0), 1e-3) * jnp.arange(3.0))

  value, grad = jax.value_and_grad(loss)(logits)
  assert np.isfinite(value) and np.all(np.isfinite(grad))
  assert float(jnp.sum(gumbel_softmax_st(logits, jax.random.key(0), 1e-3))) == 1.0


def test_traced_temperature_under_jit_grad_and_scan():
  def run(logits, temperature):
    def step(carry, key):
      z = gumbel_softmax_st(logits + carry, key, temperature)
      return carry + z, jnp.sum(z * jnp.arange(3.0))
    _, ys = jax.lax.scan(step, jnp.zeros(3), jax.random.split(jax.random.key(0), 4))
    return jnp.sum(ys)

  grad = jax.jit(jax.grad(run))(jnp.array([0.5, 0.1, -0.3]), jnp.float32(0.5))
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_non_positive_temperature_is_refused(temperature):
  with pytest.raises(LsattnError, match="temperature"):
    gumbel_softmax_st(jnp.zeros(3), jax.random.key(0), temperature)
