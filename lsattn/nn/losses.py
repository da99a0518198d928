r"""Training losses: PoseNet regression (eq. 4), learned weighting, cross-entropy (eq. 5).

Pure ``jax.numpy`` functions, safe under ``jax.jit`` and ``jax.grad``. Batch
means honour an optional ``mask`` (bool ``[B]``, False on the padding of a
ragged last batch): padded examples contribute neither to the value nor to the
gradient, and a fully masked batch gives 0 rather than NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _safe_norm(x: jax.Array) -> jax.Array:
  """Euclidean norm over the last axis with a zero (not NaN) gradient at 0.

  ``sqrt`` has an infinite derivative at 0, so the square root is taken of a
  dummy 1 where the sum of squares is 0 and the result replaced by 0 there;
  both branches of the ``where`` then have finite gradients.
  """
  squared = jnp.sum(jnp.square(x), axis=-1)
  positive = squared > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def _masked_mean(values: jax.Array, mask: jax.Array | None) -> jax.Array:
  """Mean of `values` [B] over `mask` [B] (all if None); 0 if nothing is kept."""
  if mask is None:
    return jnp.mean(values)
  mask = jnp.asarray(mask, dtype=bool)
  # `where`, not multiplication, so NaN in a padded example cannot leak in.
  total = jnp.sum(jnp.where(mask, values, 0.0))
  return total / jnp.maximum(jnp.sum(mask), 1).astype(values.dtype)


def posenet_loss(pred_position: jax.Array, pred_orientation: jax.Array,
                 true_position: jax.Array, true_orientation: jax.Array,
                 beta: jax.typing.ArrayLike,
                 mask: jax.Array | None = None) -> dict[str, jax.Array]:
  r"""PoseNet loss (paper eq. 4), averaged over the unmasked examples.

  .. math:: L = \|x - \hat x\|_2 + \beta \Big\|q - \frac{\hat q}{\|\hat q\|}\Big\|_2

  with :math:`\hat x, \hat q` the prediction and :math:`x, q` the ground truth.
  Because q and -q are the same rotation and the ground truth is stored on one
  canonical hemisphere, q is first flipped onto the hemisphere of
  :math:`\hat q` (sign of :math:`\langle q, \hat q\rangle`, + at 0), so a
  prediction of -q costs nothing. Eq. 4 as printed would charge it 2β.

  Args:
    pred_position: [B, 3] predicted camera centre (metres).
    pred_orientation: [B, 4] predicted quaternion (w, x, y, z), any norm.
    true_position: [B, 3] ground-truth camera centre.
    true_orientation: [B, 4] ground-truth unit quaternion.
    beta: scalar weight of the orientation term.
    mask: optional bool [B]; False marks padding.

  Returns:
    Dict of scalars: 'loss', 'position_loss' (mean ||x - x^||) and
    'orientation_loss' (mean ||q - q^/|q^| ||, without beta).
  """
  position_error = _safe_norm(true_position - pred_position)
  pred_norm = _safe_norm(pred_orientation)[..., None]
  pred_unit = pred_orientation / jnp.maximum(pred_norm, 1e-12)
  dot = jnp.sum(true_orientation * pred_unit, axis=-1, keepdims=True)
  aligned_true = jnp.where(dot < 0, -true_orientation, true_orientation)
  orientation_error = _safe_norm(aligned_true - pred_unit)
  position_loss = _masked_mean(position_error, mask)
  orientation_loss = _masked_mean(orientation_error, mask)
  return {
      "loss": position_loss + beta * orientation_loss,
      "position_loss": position_loss,
      "orientation_loss": orientation_loss,
  }


def init_learned_weighting() -> dict[str, jax.Array]:
  """Initial log-variances s_x = 0, s_q = -3 (Kendall & Cipolla 2017)."""
  return {"s_x": jnp.array(0.0, jnp.float32), "s_q": jnp.array(-3.0, jnp.float32)}


def learned_weighting_loss(position_loss: jax.Array, orientation_loss: jax.Array,
                           s_x: jax.Array, s_q: jax.Array) -> jax.Array:
  r"""Homoscedastic-uncertainty weighting of the two pose terms.

  .. math:: L = e^{-s_x} L_x + s_x + e^{-s_q} L_q + s_q

  (Kendall & Cipolla, "Geometric loss functions for camera pose regression
  with deep learning", CVPR 2017), an alternative to a fixed beta;
  s_x and s_q are trained with the model.

  Args:
    position_loss: scalar L_x, e.g. `posenet_loss(...)['position_loss']`.
    orientation_loss: scalar L_q, e.g. `posenet_loss(...)['orientation_loss']`.
    s_x: scalar learned log-variance of the position term.
    s_q: scalar learned log-variance of the orientation term.

  Returns:
    The scalar loss.
  """
  return (jnp.exp(-s_x) * position_loss + s_x
          + jnp.exp(-s_q) * orientation_loss + s_q)


def cross_entropy_loss(logits: jax.Array, labels: jax.Array,
                       mask: jax.Array | None = None) -> dict[str, jax.Array]:
  r"""Softmax cross-entropy (paper eq. 5), :math:`-\log \mathrm{softmax}(z)_c`.

  Labels outside [0, C) are a programming error (the input pipeline checks
  them against the dataset's ClassLabel). They are not checked here, since a
  jitted function cannot raise; such an example's loss comes out NaN, which
  the train step's non-finite check reports.

  Args:
    logits: [B, C] unnormalised class scores.
    labels: int [B] class indices.
    mask: optional bool [B]; False marks padding.

  Returns:
    Dict of scalars: 'loss' (mean cross-entropy) and 'accuracy' (top-1).
  """
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  labels = jnp.asarray(labels, jnp.int32)
  picked = jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(log_probs.dtype)
  return {
      "loss": _masked_mean(-picked, mask),
      "accuracy": _masked_mean(correct, mask),
  }
