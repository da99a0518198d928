"""GoogLeNet (Inception v1) backbone returning the taps the paper selects from.

Two variants (see PEERS.md):

* ``'caffe'``: the original BVLC GoogLeNet, as trained on Places by Zhou et
  al. and used by the paper (supplementary C): convolutions with biases, true
  5x5 branches, local response normalisation (size 5, alpha 1e-4, beta 0.75)
  after conv1 and conv2, ceil-mode max pooling, no batch norm. Its weights
  expect BGR input, so the RGB input is flipped.
* ``'torchvision'``: ``torchvision.models.googlenet``: convolutions without
  bias followed by batch norm (eps 1e-3), its "5x5" branch is a 3x3
  convolution, no LRN, and the fourth max pool is 2x2. Its weights expect
  ImageNet-normalised input, so the input is divided by 255 * std; with
  ``transform_input=True`` it also applies torchvision's own input remapping
  (set for the pretrained ImageNet weights).

Input (ARCHITECTURE.md): ``images`` [B, H, W, 3], RGB, 0-255 with the dataset's
per-channel mean subtracted. Taps are the outputs of inception blocks 3b, 4c,
4e and 5b: 28x28x480, 14x14x512, 14x14x832, 7x7x1024 at 224x224 (strides
8, 16, 16, 32; `tap_shape` gives them for any input size).

Module names follow the Caffe layer names (``conv1``, ``conv2_reduce``,
``conv2``, ``inception_3a``/``b1x1``...``pool_proj``, ``classifier``);
`lsattn.backbones.googlenet.readers` maps them to Caffe and torchvision names.

The two variants are the backbone family's members 'caffe' and
'torchvision' (registered by `lsattn.backbones.googlenet`, with their readers).
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lsattn.backbones import contract
from lsattn.errors import LsattnError
from lsattn.nn import compute_options, pooling

TAP_NAMES = ("3b", "4c", "4e", "5b")
TAP_STRIDES = (8, 16, 16, 32)
VARIANTS = ("caffe", "torchvision")
IMAGENET_STD = (0.229, 0.224, 0.225)

# name: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection)
INCEPTION_BLOCKS = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
# Blocks in order, with the max pool that precedes a block.
_ORDER = ("3a", "3b", "pool3", "4a", "4b", "4c", "4d", "4e", "pool4", "5a", "5b")


def tap_channels(name: str) -> int:
  """Output channels of inception block `name` ('3b' -> 480)."""
  b1, _, b3, _, b5, pool = INCEPTION_BLOCKS[name]
  return b1 + b3 + b5 + pool


def tap_shape(name: str, height: int, width: int, variant: str = "caffe"
              ) -> tuple[int, int, int]:
  """(h, w, C) of tap `name` for an input of height x width (no compute)."""

  def pooled(size, window):
    low, high = _ceil_padding(size, window, 2, 0)
    return (size + low + high - window) // 2 + 1

  def size_at(size):
    size = pooled((size - 1) // 2 + 1, 3)  # conv1 (7x7, stride 2, pad 3), pool1
    size = pooled(size, 3)  # pool2: 3b's grid
    if name[0] >= "4":
      size = pooled(size, 3)  # pool3
    if name[0] == "5":
      size = pooled(size, 3 if variant == "caffe" else 2)  # pool4
    return size

  return (size_at(height), size_at(width), tap_channels(name))


def _ceil_padding(size: int, window: int, stride: int, padding: int) -> tuple[int, int]:
  """Low/high padding giving ceil-mode pooling output sizes (Caffe and PyTorch).

  out = ceil((size + 2 p - k) / s) + 1, minus one if the last window would
  start in the right padding (PyTorch's rule, which Caffe applies as well).
  """
  out = -(-(size + 2 * padding - window) // stride) + 1
  if (out - 1) * stride >= size + padding:
    out -= 1
  return padding, (out - 1) * stride + window - size - padding


def max_pool_ceil(x: jax.Array, window: int, stride: int, padding: int = 0, *,
                  kernels: str = "cpu") -> jax.Array:
  """Ceil-mode max pooling of x [B, H, W, C]; padding never wins the max.

  `kernels`: 'cpu' or 'generic' (`lsattn.nn.pooling.max_pool`).
  """
  pads = [_ceil_padding(x.shape[axis], window, stride, padding) for axis in (1, 2)]
  return pooling.max_pool(x, window, stride, pads, kernels=kernels)


def local_response_norm(x: jax.Array, *, size: int = 5, alpha: float = 1e-4,
                        beta: float = 0.75, k: float = 1.0) -> jax.Array:
  """Caffe's across-channel LRN: x / (k + alpha / size * sum_window x^2) ** beta."""
  return _lrn(x, size, alpha, beta, k)


def _channel_window_sum(x: jax.Array, size: int) -> jax.Array:
  """sum_{|j - i| <= size // 2} x[..., j] (zero beyond the ends)."""
  half = size // 2
  padded = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(half, half)])
  return sum(padded[..., i:i + x.shape[-1]] for i in range(size))


# An explicit gradient: autodiff's version recomputes the power for every
# element of every window, and XLA's CPU fusion of it took longer than the
# convolution next to it (benchmarks/results/2026-11-25-cpu.md).
@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _lrn(x, size, alpha, beta, k):
  return _lrn_fwd(x, size, alpha, beta, k)[0]


def _lrn_fwd(x, size, alpha, beta, k):
  denominator = k + alpha / size * _channel_window_sum(jnp.square(x), size)
  return x * _power(denominator, -beta), (x, denominator)


def _power(d: jax.Array, exponent: float) -> jax.Array:
  """d ** exponent; Caffe's -0.75 as rsqrt(d) * sqrt(rsqrt(d)), which the CPU
  computes several times faster than a general power (exp and log)."""
  if exponent == -0.75:
    root = jax.lax.rsqrt(d)
    return root * jnp.sqrt(root)
  return jnp.power(d, exponent)


def _lrn_bwd(size, alpha, beta, k, residuals, g):
  # y_i = x_i d_i^-b with d_j = k + a/n sum_{i in win(j)} x_i^2, so
  # dL/dx_i = g_i d_i^-b - 2 a b / n x_i sum_{j in win(i)} g_j x_j d_j^-b / d_j.
  x, denominator = residuals
  scale = _power(denominator, -beta)  # recomputed: cheaper than storing it
  spread = _channel_window_sum(g * x * scale / denominator, size)
  return (g * scale - (2 * alpha * beta / size) * x * spread,)


_lrn.defvjp(_lrn_fwd, _lrn_bwd)


class ConvUnit(nn.Module):
  """Convolution + ReLU (Caffe) or convolution + batch norm + ReLU (torchvision)."""
  features: int
  kernel_size: int
  stride: int = 1
  batch_norm: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    pad = self.kernel_size // 2
    x = nn.Conv(self.features, (self.kernel_size, self.kernel_size), (self.stride, self.stride),
                padding=[(pad, pad), (pad, pad)], use_bias=not self.batch_norm,
                dtype=self.dtype, name="conv")(x)
    if self.batch_norm:
      # torchvision's BatchNorm2d(eps=0.001), momentum 0.1 = Flax's 0.9; why the
      # core's batch norm differs: lsattn/nn/primitives.py batch_norm.
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-3,
                       dtype=self.dtype, name="bn")(x)
    return nn.relu(x)


class Inception(nn.Module):
  """Inception v1 block: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max pool -> 1x1."""
  widths: tuple[int, int, int, int, int, int]
  batch_norm: bool
  wide_kernel: int  # 5 in Caffe, 3 in torchvision
  dtype: jnp.dtype = jnp.float32
  kernels: str = "cpu"  # resolved: 'cpu' or 'generic'

  @nn.compact
  def __call__(self, x, train: bool):  # train positional: a static argument under nn.remat
    b1, b3_reduce, b3, b5_reduce, b5, pool_proj = self.widths
    unit = lambda features, kernel, name: ConvUnit(  # noqa: E731
        features, kernel, batch_norm=self.batch_norm, dtype=self.dtype, name=name)
    branch1 = unit(b1, 1, "b1x1")(x, train=train)
    branch3 = unit(b3, 3, "b3x3")(unit(b3_reduce, 1, "b3x3_reduce")(x, train=train), train=train)
    branch5 = unit(b5, self.wide_kernel, "b5x5")(
        unit(b5_reduce, 1, "b5x5_reduce")(x, train=train), train=train)
    pooled = max_pool_ceil(x, 3, 1, padding=1, kernels=self.kernels)
    branch_pool = unit(pool_proj, 1, "pool_proj")(pooled, train=train)
    return jnp.concatenate([branch1, branch3, branch5, branch_pool], axis=-1)


class GoogLeNet(nn.Module):
  """GoogLeNet backbone.

  Attributes:
    variant: 'caffe' (the paper's Places network) or 'torchvision'.
    num_classes: classifier outputs (1000 ImageNet, 205/365 Places).
    taps: which inception outputs to return, from TAP_NAMES.
    compute_logits: also run the classifier (else stop after the deepest tap).
    transform_input: torchvision's input remapping of its pretrained weights.
    dtype: computation dtype (params stay float32).
    kernels: 'auto' | 'cpu' | 'generic' max pooling
      (`lsattn.nn.compute_options.resolve_kernels`; same results).
    remat_blocks: recompute each inception block's activations in the
      backward pass (`nn.remat`, policy `lsattn.nn.compute_options.REMAT_POLICY`;
      same results, less memory).
  """
  variant: str = "caffe"
  num_classes: int = 1000
  taps: Sequence[str] = TAP_NAMES
  compute_logits: bool = True
  transform_input: bool = False
  dtype: jnp.dtype = jnp.float32
  kernels: str = "auto"
  remat_blocks: bool = False

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    """images: [B, H, W, 3] -> {tap: [B, h, w, C], 'logits': [B, num_classes]}."""
    if self.variant not in VARIANTS:
      raise LsattnError(f"backbone variant must be one of {VARIANTS}, got {self.variant!r}")
    unknown = [t for t in self.taps if t not in TAP_NAMES]
    if unknown:
      raise LsattnError(f"unknown backbone taps {unknown}; choose from {TAP_NAMES}")
    contract.check_images(images)
    caffe = self.variant == "caffe"
    kernels = compute_options.resolve_kernels(self.kernels)
    pool = functools.partial(max_pool_ceil, kernels=kernels)
    block = (nn.remat(Inception, policy=compute_options.REMAT_POLICY, static_argnums=(2,))
             if self.remat_blocks else Inception)
    x = self._normalise(images.astype(self.dtype), caffe)
    unit = lambda features, kernel, name, stride=1: ConvUnit(  # noqa: E731
        features, kernel, stride, batch_norm=not caffe, dtype=self.dtype, name=name)

    x = pool(unit(64, 7, "conv1", stride=2)(x, train=train), 3, 2)
    if caffe:
      x = local_response_norm(x)
    x = unit(64, 1, "conv2_reduce")(x, train=train)
    x = unit(192, 3, "conv2")(x, train=train)
    if caffe:
      x = local_response_norm(x)
    x = pool(x, 3, 2)

    outputs = {}
    last_needed = max(_ORDER.index(t) for t in self.taps) if self.taps else -1
    for position, name in enumerate(_ORDER):
      if not self.compute_logits and position > last_needed:
        break
      if name == "pool3":
        x = pool(x, 3, 2)
      elif name == "pool4":
        x = pool(x, 3, 2) if caffe else pool(x, 2, 2)
      else:
        x = block(INCEPTION_BLOCKS[name], batch_norm=not caffe,
                  wide_kernel=5 if caffe else 3, dtype=self.dtype, kernels=kernels,
                  name=f"inception_{name}")(x, train)
        if name in self.taps:
          outputs[name] = x
    if self.compute_logits:
      pooled = jnp.mean(x, axis=(1, 2))
      outputs["logits"] = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(pooled)
    return outputs

  def _normalise(self, x, caffe):
    if caffe:
      return x[..., ::-1]
    x = x / (255.0 * jnp.asarray(IMAGENET_STD, x.dtype))
    if self.transform_input:
      # torchvision's pretrained weights expect its (x - 0.5) / 0.5 remapping.
      mean = jnp.asarray((0.485, 0.456, 0.406), x.dtype)
      std = jnp.asarray(IMAGENET_STD, x.dtype)
      x = x * (std / 0.5) + (mean - 0.5) / 0.5
    return x
