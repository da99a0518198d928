"""Max pooling as two separable 1-D passes with a first-maximum gradient.

GoogLeNet max-pools 13 times (a 3x3 pool in every inception block and four
strided pools). XLA's CPU backend runs the gradient of ``reduce_window`` max
(select-and-scatter) far slower than the convolutions around it: at 224x224,
batch 8, the pools took about half of the backbone's backward pass
(benchmarks/results/2026-11-25-cpu.md). A k x k max is the max over rows of the max over
columns, and each 1-D pass here is k strided slices forward and k masked,
strided pads backward, which XLA fuses into a few elementwise loops.

The gradient goes to the first maximum of each window in row-major order,
like select-and-scatter (``jax.lax.reduce_window``, ``flax.linen.max_pool``)
and PyTorch, so results match them exactly, ties included.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _window_slices(x: jax.Array, axis: int, window: int, stride: int) -> list[jax.Array]:
  """The k-th element of every window along `axis`, for k = 0..window-1."""
  count = (x.shape[axis] - window) // stride + 1
  return [jax.lax.slice_in_dim(x, k, k + (count - 1) * stride + 1, stride, axis)
          for k in range(window)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_1d(x: jax.Array, axis: int, window: int, stride: int) -> jax.Array:
  """Valid (unpadded) 1-D max pooling of x along `axis`."""
  return functools.reduce(jnp.maximum, _window_slices(x, axis, window, stride))


def _max_1d_fwd(x, axis, window, stride):
  y = _max_1d(x, axis, window, stride)
  return y, (x, y)


def _max_1d_bwd(axis, window, stride, residuals, g):
  x, y = residuals
  taken = jnp.zeros(y.shape, bool)
  dx = jnp.zeros(x.shape, g.dtype)
  for k, values in enumerate(_window_slices(x, axis, window, stride)):
    first = (values == y) & ~taken  # the first maximum of each window gets the gradient
    taken = taken | first
    config = [(0, 0, 0)] * x.ndim
    high = x.shape[axis] - (k + (y.shape[axis] - 1) * stride + 1)
    config[axis] = (k, high, stride - 1)
    dx = dx + jax.lax.pad(jnp.where(first, g, 0), jnp.zeros((), g.dtype), config)
  return (dx,)


_max_1d.defvjp(_max_1d_fwd, _max_1d_bwd)


def max_pool(x: jax.Array, window: int, stride: int,
             padding: tuple[tuple[int, int], tuple[int, int]], *,
             kernels: str = "cpu") -> jax.Array:
  """Max pooling of x [B, H, W, C] over window x window, padding never winning.

  Args:
    x: [B, H, W, C].
    window: side of the square window.
    stride: step in both directions.
    padding: ((low, high) of H, (low, high) of W), filled with -inf.
    kernels: 'cpu' (the separable passes above) or 'generic' (XLA's
      ``reduce_window`` and its select-and-scatter gradient);
      `lsattn.nn.compute_options.resolve_kernels` chooses.

  Returns:
    [B, H', W', C], the same values and gradient as
    ``flax.linen.max_pool(x, (window, window), (stride, stride), padding)``.
  """
  low = jnp.array(-jnp.inf, x.dtype)
  if kernels == "generic":
    # A Python -inf: reduce_window recognises max with its identity as the
    # differentiable max-pool primitive only for a concrete init value.
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, stride, stride, 1),
        ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  if kernels != "cpu":
    raise ValueError(f"Unsupported kernels {kernels!r}: expected 'cpu' or 'generic'")
  padded = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)),
                   constant_values=low)
  return _max_1d(_max_1d(padded, 2, window, stride), 1, window, stride)
