r"""Retrieval baselines: the pose of the nearest training image.

A pose regressor that does not beat looking up the most similar training
image has learned nothing such a lookup could not (issue 19). Two lookups,
both ours (the paper reports only its own and PoseNet-style baselines):

* ``knn_pixels``: :func:`pixel_descriptors`, the centre crop the model sees
  (dataset mean subtracted) area-resized to 16x16 RGB, 768 numbers.
* ``knn_features``: :func:`pooled_features`, the global average pool of the
  backbone's deepest tap (GoogLeNet's Conv-5B: 1024 numbers), computed with
  the run's backbone parameters (`lsattn.evaluation.loop.retrieval_baselines`
  says which).

Similarity (ours): cosine after subtracting the training descriptors' mean,

.. math:: \mathrm{nn}(q) = \arg\max_n \frac{(q - \mu)\cdot(r_n - \mu)}
          {\|q - \mu\|\,\|r_n - \mu\|},\quad \mu = \tfrac{1}{N}\textstyle\sum_n r_n,

so a brightness or feature offset shared by every image does not decide the
match. Ties go to the lowest training index. The predicted pose is that
training image's; its errors are the usual ones (`lsattn.evaluation.metrics`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lsattn.evaluation import metrics

PIXEL_SIZE = 16  # side of the downsampled crop of the pixel descriptor
CHUNK_SIZE = 1024  # query rows per similarity product: [1024, N] floats at a time
RETRIEVALS = ("knn_pixels", "knn_features")


def pixel_descriptors(images: jax.Array, size: int = PIXEL_SIZE) -> jax.Array:
  """images [B, H, W, 3] (mean-subtracted crops) -> [B, size * size * 3].

  Area-averaged (antialiased linear) resize to size x size.
  """
  small = jax.image.resize(images.astype(jnp.float32), (images.shape[0], size, size, 3),
                           method="linear", antialias=True)
  return small.reshape(images.shape[0], -1)


def pooled_features(tap: jax.Array) -> jax.Array:
  """A backbone tap [B, h, w, C] -> its global average pool [B, C] (float32)."""
  return jnp.mean(tap.astype(jnp.float32), axis=(1, 2))


def _normalised(descriptors: np.ndarray, centre: np.ndarray) -> np.ndarray:
  centred = np.asarray(descriptors, np.float64) - centre
  norms = np.linalg.norm(centred, axis=1, keepdims=True)
  return centred / np.maximum(norms, 1e-12)


def nearest_neighbours(queries, references, *, chunk_size: int = CHUNK_SIZE) -> np.ndarray:
  """Index of each query's most similar reference (module docstring).

  Args:
    queries: [Q, D] descriptors.
    references: [N, D] descriptors (the training split's), N >= 1.
    chunk_size: query rows per matrix product (bounds memory to
      chunk_size x N similarities).

  Returns:
    int64 [Q], values in [0, N).
  """
  queries, references = np.asarray(queries), np.asarray(references)
  if queries.ndim != 2 or references.ndim != 2 or queries.shape[1] != references.shape[1]:
    raise ValueError(f"descriptors must be [Q, D] and [N, D], got {queries.shape} and "
                     f"{references.shape}")
  if len(references) == 0:
    raise ValueError("nearest_neighbours needs at least one reference")
  centre = references.astype(np.float64).mean(axis=0)
  unit_references = _normalised(references, centre)
  nearest = np.zeros(len(queries), np.int64)
  for start in range(0, len(queries), chunk_size):
    similarity = _normalised(queries[start:start + chunk_size], centre) @ unit_references.T
    nearest[start:start + chunk_size] = np.argmax(similarity, axis=1)
  return nearest


def retrieval_errors(query_descriptors, train_descriptors, train_position, train_orientation,
                     true_position, true_orientation, *, name: str) -> dict:
  """Median errors of the pose of each query's nearest training image.

  Args:
    query_descriptors: [E, D] of the evaluated images.
    train_descriptors: [N, D] of the training images.
    train_position, train_orientation: [N, 3], [N, 4] training poses.
    true_position, true_orientation: [E, 3], [E, 4] evaluated poses.
    name: key prefix, e.g. 'knn_pixels'.

  Returns:
    {'<name>_median_translation_m', '<name>_median_rotation_deg'}: floats.
  """
  nearest = nearest_neighbours(query_descriptors, train_descriptors)
  translation = metrics.translation_errors(np.asarray(train_position)[nearest], true_position)
  rotation = metrics.rotation_errors_deg(np.asarray(train_orientation)[nearest],
                                         true_orientation)
  return {f"{name}_median_translation_m": float(np.median(translation)),
          f"{name}_median_rotation_deg": float(np.median(rotation))}
