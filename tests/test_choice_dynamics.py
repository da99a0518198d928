"""Layer-choice dynamics: the selection entropy the train step reports."""

import jax.numpy as jnp
import numpy as np

from lsattn.nn import gumbel


def test_choice_entropy_is_that_of_the_softmax_and_bounded():
  logits = jnp.array([[0.0, 0.0, 0.0, 0.0], [2.0, -1.0, 0.5, 0.0], [80.0, 0.0, 0.0, 0.0]])
  probabilities = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
  expected = -np.sum(np.where(probabilities > 0, probabilities * np.log(probabilities), 0.0), -1)
  entropy = gumbel.choice_entropy(logits)
  np.testing.assert_allclose(entropy, expected, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(entropy[0], np.log(4), rtol=1e-6)  # uniform: the maximum
  assert 0.0 <= float(entropy[2]) < 1e-20  # one layer always: 0, not nan
  assert gumbel.choice_entropy(logits.astype(jnp.bfloat16)).dtype == jnp.float32
