"""A tiny CNN with GoogLeNet's tap strides: the whole pipeline in seconds.

``config.backbone = 'tiny_cnn'``: five 3x3 convolutions (about 5 k
parameters), random initialisation only, no weights to read. Its features
mean nothing, so a run with it says nothing about the method; it exists to
check everything around the backbone quickly: a new dataset's build, a
cluster's set-up, a change to training, and the test suite, whose runs
compile in a fraction of GoogLeNet's time (tests that are about a real
backbone name it).

Taps 't1'..'t4' at strides 8, 16, 16 and 32, as GoogLeNet's Conv-3B / 4C /
4E / 5B, so shapes in a test mean what they mean for the paper's model.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lsattn.backbones import contract
from lsattn.errors import LsattnError
from lsattn.nn import compute_options

TAP_NAMES = ("t1", "t2", "t3", "t4")
TAP_STRIDES = (8, 16, 16, 32)
TAP_CHANNELS = (8, 12, 12, 16)
# (features, stride, tap or None): the stem's two stride-2 layers, then one per tap.
LAYERS = ((8, 2, None), (8, 2, None), (8, 2, "t1"), (12, 2, "t2"), (12, 1, "t3"),
          (16, 2, "t4"))
NUM_CLASSES = 10
INPUT_SCALE = 128.0


def tap_shape(name: str, height: int, width: int) -> tuple[int, int, int]:
  """(h, w, C) of tap `name` for a height x width input ('SAME' padding: ceil)."""
  index = TAP_NAMES.index(name)
  stride = TAP_STRIDES[index]
  return (-(-height // stride), -(-width // stride), TAP_CHANNELS[index])


class ConvRelu(nn.Module):
  """3x3 convolution and ReLU: [B, H, W, C] -> [B, H / stride, W / stride, features]."""
  features: int
  stride: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Conv(self.features, (3, 3), (self.stride, self.stride), padding="SAME",
                dtype=self.dtype, name="conv")(x)
    return nn.relu(x)


class TinyCNN(nn.Module):
  """The module of the contract (`lsattn.backbones.Backbone.module`).

  Attributes:
    taps: which of TAP_NAMES to return.
    compute_logits: also return 'logits' [B, NUM_CLASSES] (else stop after
      the deepest tap asked for).
    dtype: computation dtype (params stay float32).
    kernels: accepted for the contract; a plain convolution has one form.
    remat_blocks: recompute each layer's activations in the backward pass.
    num_classes: classifier outputs.
  """
  taps: Sequence[str] = TAP_NAMES
  compute_logits: bool = True
  dtype: jnp.dtype = jnp.float32
  kernels: str = "auto"
  remat_blocks: bool = False
  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    """images: [B, H, W, 3], 0-255 minus the mean -> {tap: [B, h, w, C], 'logits'?}."""
    del train  # no batch norm, no dropout
    unknown = [t for t in self.taps if t not in TAP_NAMES]
    if unknown:
      raise LsattnError(f"unknown backbone taps {unknown}; choose from {TAP_NAMES}")
    contract.check_images(images)
    layer = (nn.remat(ConvRelu, policy=compute_options.REMAT_POLICY) if self.remat_blocks
             else ConvRelu)
    last = (len(LAYERS) - 1 if self.compute_logits
            else max(i for i, (_, _, tap) in enumerate(LAYERS) if tap in self.taps))
    x = images.astype(self.dtype) / INPUT_SCALE
    outputs = {}
    for index, (features, stride, tap) in enumerate(LAYERS[:last + 1]):
      x = layer(features, stride, self.dtype, name=f"layer_{index}")(x)
      if tap in self.taps:
        outputs[tap] = x
    if self.compute_logits:
      outputs["logits"] = nn.Dense(self.num_classes, dtype=self.dtype,
                                   name="classifier")(jnp.mean(x, axis=(1, 2)))
    return outputs


BACKBONE = contract.register(contract.Backbone(
    name="tiny_cnn", module=TinyCNN, taps=TAP_NAMES, strides=TAP_STRIDES,
    channels=TAP_CHANNELS, display_names=("Tiny-1", "Tiny-2", "Tiny-3", "Tiny-4"),
    tap_shape=tap_shape, input_convention="divided by 128 (random weights: any scale near 1).",
    readers={}))
