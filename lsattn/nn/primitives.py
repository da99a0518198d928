"""Small pure-function layers the attention core is built from.

Each layer is an ``init_*`` that returns explicit parameters (and state, for
batch norm) and an apply function of (params, inputs). They are plain pytrees
of ``jax.Array`` so the core stays a pure, jittable function.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Params = dict


def init_conv(key: jax.Array, *, kernel_size: int, in_channels: int, out_channels: int,
              use_bias: bool = True) -> Params:
  """Square 'SAME' convolution: kernel [k, k, in, out] (LeCun normal), bias [out]."""
  kernel = jax.nn.initializers.lecun_normal()(
      key, (kernel_size, kernel_size, in_channels, out_channels), jnp.float32)
  params = {"kernel": kernel}
  if use_bias:
    params["bias"] = jnp.zeros((out_channels,), jnp.float32)
  return params


def conv2d(params: Params, x: jax.Array, *, kernels: str = "cpu") -> jax.Array:
  """x: [B, H, W, in] -> [B, H, W, out], stride 1, 'SAME' padding.

  `kernels`: 'cpu' computes a 1x1 convolution as a matmul, 'generic' keeps
  every convolution a convolution (`lsattn.nn.compute_options.resolve_kernels`).
  """
  kernel = params["kernel"].astype(x.dtype)
  if kernels not in ("cpu", "generic"):
    raise ValueError(f"Unsupported kernels {kernels!r}: expected 'cpu' or 'generic'")
  if kernel.shape[:2] == (1, 1) and kernels == "cpu":
    # A 1x1 convolution is a matmul; XLA's CPU dot is faster than its conv here.
    y = x @ kernel[0, 0]
  else:
    y = jax.lax.conv_general_dilated(
        x, kernel, window_strides=(1, 1), padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
  if "bias" in params:
    y = y + params["bias"].astype(x.dtype)
  return y


def init_dense(key: jax.Array, *, in_features: int, out_features: int) -> Params:
  """Dense layer: kernel [in, out] (LeCun normal), bias [out]."""
  kernel = jax.nn.initializers.lecun_normal()(key, (in_features, out_features), jnp.float32)
  return {"kernel": kernel, "bias": jnp.zeros((out_features,), jnp.float32)}


def dense(params: Params, x: jax.Array) -> jax.Array:
  """x: [..., in] -> [..., out]."""
  return x @ params["kernel"].astype(x.dtype) + params["bias"].astype(x.dtype)


def init_batch_norm(channels: int) -> tuple[Params, Params]:
  """Batch-norm scale/offset params and running mean/variance state."""
  params = {"scale": jnp.ones((channels,), jnp.float32),
            "bias": jnp.zeros((channels,), jnp.float32)}
  state = {"mean": jnp.zeros((channels,), jnp.float32),
           "var": jnp.ones((channels,), jnp.float32)}
  return params, state


def batch_norm(params: Params, state: Params, x: jax.Array, *, train: bool,
               momentum: float = 0.99, epsilon: float = 1e-3) -> tuple[jax.Array, Params]:
  """Batch norm over all axes but the last (TensorFlow's defaults, paper 3.4).

  lsattn has two batch norms, on purpose. This one is the attention core's:
  the paper asks for batch norm "with default parameters" (3.4), which we
  read as TensorFlow's (momentum 0.99, epsilon 1e-3). The other is in the
  torchvision variant of the backbone (lsattn/backbones/googlenet/network.py, Flax's
  ``nn.BatchNorm`` with momentum 0.9, epsilon 1e-3), which must compute what
  torchvision's pretrained GoogLeNet computes: PyTorch's momentum 0.1 is a
  decay of 0.9 in Flax's convention, and its BasicConv2d uses eps 0.001.
  The Caffe backbone, the paper's, has no batch norm.

  Args:
    params: {'scale', 'bias'} [C].
    state: running {'mean', 'var'} [C].
    x: [..., C].
    train: normalise with the batch statistics and update the running ones;
      otherwise normalise with the running statistics.

  Returns:
    (normalised x in x's dtype, new state).
  """
  # Statistics, running state and normalisation in float32 whatever x's dtype
  # (in bfloat16, x - mean would keep a few bits); the result in x's dtype.
  wide = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  if train:
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(wide, axis=axes)
    var = jnp.mean(jnp.square(wide - mean), axis=axes)
    new_state = {
        "mean": momentum * state["mean"] + (1 - momentum) * mean,
        "var": momentum * state["var"] + (1 - momentum) * var,
    }
  else:
    mean, var, new_state = state["mean"], state["var"], state
  inv = jax.lax.rsqrt(var + epsilon) * params["scale"]
  return ((wide - mean) * inv + params["bias"]).astype(x.dtype), new_state


def resize(x: jax.Array, height: int, width: int) -> jax.Array:
  """Bilinear resize of x: [B, H, W, C] to [B, height, width, C] (no-op if equal).

  Downsampling is antialiased (an average over the covered pixels), which for
  the 2x steps between GoogLeNet taps is a 2x2 average pool.
  """
  if x.shape[1:3] == (height, width):
    return x
  return jax.image.resize(x, (x.shape[0], height, width, x.shape[3]), method="linear")
