"""GoogLeNet, the paper's backbone: the family's members 'caffe' and 'torchvision'.

`network` is the Flax module and its taps; `readers` its weight files
(Caffe's .caffemodel and Caffe-named arrays, torchvision's .pth, lsattn's
.npz). This module registers the two variants with their readers.
"""

from __future__ import annotations

import functools

from lsattn.backbones import contract
from lsattn.backbones.googlenet import readers
from lsattn.backbones.googlenet.network import (GoogLeNet, TAP_NAMES, TAP_STRIDES, tap_channels,
                                                tap_shape)


def _member(variant: str, suffixes: tuple[str, ...], input_convention: str,
            options: tuple[str, ...] = ()) -> contract.Backbone:
  return contract.register(contract.Backbone(
      name=variant, module=functools.partial(GoogLeNet, variant=variant), taps=TAP_NAMES,
      strides=TAP_STRIDES, channels=tuple(tap_channels(name) for name in TAP_NAMES),
      display_names=tuple(f"Conv-{name.upper()}" for name in TAP_NAMES),
      tap_shape=functools.partial(tap_shape, variant=variant),
      input_convention=input_convention,
      readers={suffix: functools.partial(readers.load_googlenet, variant=variant)
               for suffix in suffixes}, options=options))


CAFFE = _member(
    "caffe", (".caffemodel", ".npz", ".pkl", ".pickle"),
    "RGB flipped to BGR, kept at 0-255 minus the mean: what the Caffe (Places, BVLC) weights "
    "were trained on.")
TORCHVISION = _member(
    "torchvision", (".pth", ".npz"),
    "divided by 255 * ImageNet std (torchvision's normalisation); with transform_input "
    "instead (x / 255 + ImageNet mean - 0.5) / 0.5, as torchvision's pretrained GoogLeNet "
    "expects.",
    options=("transform_input",))
