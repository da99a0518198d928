r"""Quaternions, rotation matrices and the one pose convention of lsattn.

Convention (every dataset is converted to it when it is read):

* ``position``: the camera centre in world coordinates, metres, shape [..., 3].
* ``orientation``: a unit quaternion ``(w, x, y, z)`` of the **camera-to-world**
  rotation ``R_c2w`` (a point ``p_cam`` in camera coordinates is at
  ``R_c2w @ p_cam + position`` in the world), on the hemisphere ``w >= 0``
  (see :func:`canonical_quaternion`), shape [..., 4].

Camera axes follow the usual computer-vision convention (x right, y down,
z forward), as in 7-Scenes and COLMAP.

These functions run on the host with numpy (data conversion, evaluation).
"""

from __future__ import annotations

import numpy as np


def normalize_quaternion(q: np.ndarray) -> np.ndarray:
  """Returns `q / |q|`; q: [..., 4]. Raises ValueError on a zero quaternion."""
  q = np.asarray(q, dtype=np.float64)
  norm = np.linalg.norm(q, axis=-1, keepdims=True)
  if np.any(norm == 0) or not np.all(np.isfinite(norm)):
    raise ValueError(f"cannot normalise a zero or non-finite quaternion: {q}")
  return q / norm


def canonical_quaternion(q: np.ndarray) -> np.ndarray:
  """Maps q and -q (the same rotation) to one representative; q: [..., 4].

  The sign is chosen so that the first non-zero component of (w, x, y, z) is
  positive. `sign(w)` alone would map w == 0 to a zero quaternion.
  """
  q = np.asarray(q, dtype=np.float64)
  nonzero = np.abs(q) > 1e-12
  first = np.argmax(nonzero, axis=-1)
  lead = np.take_along_axis(q, first[..., None], axis=-1)
  return np.where(lead < 0, -q, q)


def quaternion_conjugate(q: np.ndarray) -> np.ndarray:
  """The inverse rotation of a unit quaternion (w, x, y, z); q: [..., 4]."""
  q = np.asarray(q, dtype=np.float64)
  return q * np.array([1.0, -1.0, -1.0, -1.0])


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Hamilton product `a * b` (apply b, then a); a, b: [..., 4] (w, x, y, z)."""
  a = np.asarray(a, dtype=np.float64)
  b = np.asarray(b, dtype=np.float64)
  aw, ax, ay, az = np.moveaxis(a, -1, 0)
  bw, bx, by, bz = np.moveaxis(b, -1, 0)
  return np.stack([
      aw * bw - ax * bx - ay * by - az * bz,
      aw * bx + ax * bw + ay * bz - az * by,
      aw * by - ax * bz + ay * bw + az * bx,
      aw * bz + ax * by - ay * bx + az * bw,
  ], axis=-1)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
  """Rotation matrix of a quaternion (w, x, y, z); q: [..., 4] -> [..., 3, 3]."""
  w, x, y, z = np.moveaxis(normalize_quaternion(q), -1, 0)
  return np.stack([
      np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
      np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
      np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
  ], axis=-2)


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
  """Canonical unit quaternion (w, x, y, z) of rotation matrices [..., 3, 3].

  Uses the eigenvector of Bar-Itzhack's symmetric 4x4 matrix, which is exact
  for rotations and gives the nearest rotation for slightly non-orthogonal
  input (as poses stored in text files often are).
  """
  m = np.asarray(matrix, dtype=np.float64)
  if m.shape[-2:] != (3, 3):
    raise ValueError(f"expected [..., 3, 3] rotation matrices, got shape {m.shape}")
  m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
  m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
  m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
  k = np.stack([
      np.stack([m00 - m11 - m22, m01 + m10, m02 + m20, m21 - m12], -1),
      np.stack([m01 + m10, m11 - m00 - m22, m12 + m21, m02 - m20], -1),
      np.stack([m02 + m20, m12 + m21, m22 - m00 - m11, m10 - m01], -1),
      np.stack([m21 - m12, m02 - m20, m10 - m01, m00 + m11 + m22], -1),
  ], axis=-2) / 3.0
  _, vectors = np.linalg.eigh(k)
  x, y, z, w = np.moveaxis(vectors[..., :, -1], -1, 0)
  return canonical_quaternion(np.stack([w, x, y, z], axis=-1))


def rotate(q: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Rotates points [..., 3] by unit quaternions [..., 4]."""
  return np.einsum("...ij,...j->...i", quaternion_to_matrix(q), points)


def invert_pose(position: np.ndarray, orientation: np.ndarray):
  """Swaps world-to-camera and camera-to-world: (t, q) -> (-R^T t, q^-1).

  For a world-to-camera pose (translation t, rotation q) this returns the
  camera centre and the camera-to-world rotation, and vice versa.
  """
  inverse = quaternion_conjugate(normalize_quaternion(orientation))
  return -rotate(inverse, position), canonical_quaternion(inverse)


def quaternion_angle_deg(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
  r"""Angle in degrees of the rotation between q1 and q2; [..., 4] -> [...].

  .. math:: \theta = 2 \arccos(\mathrm{clip}(|\langle \hat q_1, \hat q_2\rangle|, 0, 1))

  The absolute value makes q and -q equal; the clip keeps arccos finite.
  """
  dot = np.sum(normalize_quaternion(q1) * normalize_quaternion(q2), axis=-1)
  return np.degrees(2.0 * np.arccos(np.clip(np.abs(dot), 0.0, 1.0)))
