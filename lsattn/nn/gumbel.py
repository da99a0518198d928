r"""Straight-through Gumbel-softmax (paper section 3.2, eq. 2-3).

Forward (eq. 2): the exact one-hot of :math:`\arg\max_i(\ell_i + g_i)` with
:math:`g_i \sim \mathrm{Gumbel}(0, 1)`, where :math:`\ell` are the layer logits
(unnormalised log-probabilities). Backward (eq. 3): the Jacobian of the
relaxation :math:`y = \mathrm{softmax}((\ell + g) / \tau)`,

.. math:: \frac{\partial L}{\partial \ell} = \frac{1}{\tau}\, y \odot
   \Big(\bar z - \langle \bar z, y \rangle\Big),

for the incoming cotangent :math:`\bar z`. This is the straight-through
estimator of Jang et al. (2017), written with ``jax.custom_vjp`` so the forward
pass never materialises the soft sample.

**Precision** (ours). Noise, argmax, softmax and the backward pass are
float32 whatever the logits' dtype (a bfloat16 model casts its k logits up
here; the one-hot comes back in the logits' dtype, exactly). bfloat16 keeps
8 significant bits: logits + noise rounded to them tie or swap when they
differ by less than ~1/128 of their size (spacing 1/32 at 4), which biases
the argmax, and the backward's :math:`\bar z - \langle \bar z, y\rangle`
cancels, at small tau, to a few bits. The cost is nil ([B, k] values).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import entr

from lsattn.errors import LsattnError


def sample_gumbel(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
  """Gumbel(0, 1) noise, finite everywhere (u drawn from [tiny, 1))."""
  return jax.random.gumbel(key, shape, dtype)


@jax.custom_vjp
def _straight_through(logits: jax.Array, noise: jax.Array, temperature: jax.Array):
  perturbed = logits + noise
  return jax.nn.one_hot(jnp.argmax(perturbed, axis=-1), logits.shape[-1], dtype=logits.dtype)


def _straight_through_fwd(logits, noise, temperature):
  one_hot = _straight_through(logits, noise, temperature)
  perturbed = logits + noise
  # Shifting by the max before dividing keeps huge logits and small
  # temperatures from overflowing to inf (and the softmax from giving NaN).
  shifted = perturbed - jnp.max(perturbed, axis=-1, keepdims=True)
  soft = jax.nn.softmax(shifted / temperature, axis=-1)
  return one_hot, (soft, temperature)


def _straight_through_bwd(residuals, cotangent):
  soft, temperature = residuals
  with jax.named_scope("gumbel_backward"):  # findable in profiles and jaxprs (tests)
    inner = jnp.sum(cotangent * soft, axis=-1, keepdims=True)
    logits_grad = soft * (cotangent - inner) / temperature
  temperature_grad = jnp.zeros_like(temperature)
  return logits_grad, jnp.zeros_like(logits_grad), temperature_grad


_straight_through.defvjp(_straight_through_fwd, _straight_through_bwd)


def gumbel_softmax_st(logits: jax.Array, key: jax.Array | None,
                      temperature: jax.typing.ArrayLike) -> jax.Array:
  """Straight-through Gumbel-softmax sample.

  Args:
    logits: [..., k] unnormalised log-probabilities of the k choices.
    key: PRNG key for the Gumbel noise; None in evaluation (no noise: the
      one-hot of argmax(logits), with the same backward at g = 0).
    temperature: positive scalar tau of eq. 3; may be traced (annealed).

  Returns:
    [..., k] exact one-hot vectors in the logits' dtype, whose gradient is
    that of softmax((logits + g) / temperature), computed in float32.
  """
  logits = jnp.asarray(logits)
  if not jnp.issubdtype(logits.dtype, jnp.floating):
    raise LsattnError(f"gumbel_softmax_st: logits must be floating point, got {logits.dtype}")
  if not isinstance(temperature, jax.core.Tracer) and float(temperature) <= 0:
    raise LsattnError(f"gumbel_softmax_st: temperature must be > 0, got {float(temperature)}")
  dtype = jnp.promote_types(logits.dtype, jnp.float32)  # see Precision above
  wide = logits.astype(dtype)
  if key is None:
    noise = jnp.zeros_like(wide)
  else:
    noise = sample_gumbel(key, logits.shape, dtype)
  return _straight_through(wide, noise, jnp.asarray(temperature, dtype)).astype(logits.dtype)


def choice_entropy(logits: jax.Array) -> jax.Array:
  r"""Entropy of the distribution the choice is drawn from, in nats.

  The forward choice :math:`\arg\max_i(\ell_i + g_i)` is a sample of
  :math:`\mathrm{softmax}(\ell)` exactly (the Gumbel-max trick), whatever the
  temperature, which shapes only the backward pass: this entropy, in
  :math:`[0, \log k]`, says how settled the choice is (0: one layer always).

  Args:
    logits: [..., k] layer logits, before the noise.

  Returns:
    [...] float32 entropies.
  """
  logits = jnp.asarray(logits)
  probabilities = jax.nn.softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)),
                                 axis=-1)
  # entr(p) = -p log p, 0 at p = 0 (a layer the softmax rounds to never).
  return jnp.sum(entr(probabilities), axis=-1)
