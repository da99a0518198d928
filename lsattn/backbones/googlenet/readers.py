"""GoogLeNet's weight files: from Caffe (.caffemodel, converted) and torchvision; .npz export.

Formats:

* **lsattn .npz** (`save_npz` / `load_npz`): one array per variable, named by
  its path in the Flax variables, e.g. ``params/inception_3a/b1x1/conv/kernel``
  (HWIO) or ``batch_stats/conv1/bn/mean``; exactly what `GoogLeNet.init`
  creates for the variant.
* **Caffe** ``.caffemodel``, the official Places205 / BVLC GoogLeNet files,
  read without Caffe (`lsattn.weight_formats.caffemodel` decodes the protobuf into the Caffe
  naming below: ``<layer>_<i>`` = blob i of <layer>).
* **Caffe naming** (.npz, or a pickle of a dict), as converted Places/BVLC
  GoogLeNet weights circulate: ``<layer>_0`` the weight (OIHW for
  convolutions, [out, in] for the classifier) and ``<layer>_1`` the bias,
  where <layer> is ``conv1/7x7_s2``, ``conv2/3x3_reduce``, ``conv2/3x3``,
  ``inception_3a/1x1``, ``.../3x3_reduce``, ``.../3x3``, ``.../5x5_reduce``,
  ``.../5x5``, ``.../pool_proj`` and ``loss3/classifier``. A pickle may also
  map ``<layer>`` to ``[weight, bias]``. Loads into the 'caffe' variant;
  the auxiliary heads (``loss1/*``, ``loss2/*``) and any other layers are
  ignored, and a file lacking GoogLeNet layers gets one error listing them.
* **torchvision** state dict (.pth) of ``torchvision.models.googlenet``;
  loads into the 'torchvision' variant, read without PyTorch
  (`lsattn.weight_formats.torch_checkpoint`, either of torch.save's formats; the auxiliary
  classifiers are ignored).

Every loader checks names and shapes against a freshly initialised model and
raises `LsattnError` naming the file and the key on any mismatch.

These are the GoogLeNet members' ('caffe', 'torchvision') readers:
`load_googlenet` is what `lsattn.backbones.loading.load_backbone_weights`
calls for their files.
"""

from __future__ import annotations

import os
import pickle
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lsattn.backbones.googlenet.network import GoogLeNet
from lsattn.errors import LsattnError
from lsattn.weight_formats import caffemodel, torch_checkpoint

_CAFFE_STEM = {"conv1": "conv1/7x7_s2", "conv2_reduce": "conv2/3x3_reduce", "conv2": "conv2/3x3",
               "classifier": "loss3/classifier"}
_CAFFE_BRANCH = {"b1x1": "1x1", "b3x3_reduce": "3x3_reduce", "b3x3": "3x3",
                 "b5x5_reduce": "5x5_reduce", "b5x5": "5x5", "pool_proj": "pool_proj"}
_TORCH_STEM = {"conv1": "conv1", "conv2_reduce": "conv2", "conv2": "conv3", "classifier": "fc"}
_TORCH_BRANCH = {"b1x1": "branch1", "b3x3_reduce": "branch2.0", "b3x3": "branch2.1",
                 "b5x5_reduce": "branch3.0", "b5x5": "branch3.1", "pool_proj": "branch4.1"}


def template_variables(variant: str, num_classes: int = 1000) -> dict:
  """Shapes of the backbone's variables ({'params', 'batch_stats'?}), no compute."""
  model = GoogLeNet(variant=variant, num_classes=num_classes)
  return jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))


def _flatten(tree) -> dict[str, object]:
  flat = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    flat["/".join(str(getattr(p, "key", p)) for p in path)] = leaf
  return flat


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
  tree: dict = {}
  for name, value in flat.items():
    node = tree
    *parents, leaf = name.split("/")
    for parent in parents:
      node = node.setdefault(parent, {})
    node[leaf] = jnp.asarray(value)
  return tree


def _assemble(path: str, template: dict, lookup: Callable[[str], np.ndarray]) -> dict:
  """Builds variables shaped like `template`, each leaf from lookup(flat name)."""
  flat = {}
  for name, leaf in _flatten(template).items():
    value = np.asarray(lookup(name), dtype=np.float32)
    if value.shape != tuple(leaf.shape):
      raise LsattnError(f"{path}: {name} has shape {value.shape}, expected {tuple(leaf.shape)}")
    flat[name] = value
  return _unflatten(flat)


def save_npz(path: str | os.PathLike, variables: dict) -> None:
  """Writes backbone variables ({'params', 'batch_stats'?}) to an lsattn .npz."""
  arrays = {name: np.asarray(value) for name, value in _flatten(variables).items()}
  tmp = f"{path}.tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def _read_npz(path) -> dict[str, np.ndarray]:
  try:
    with np.load(path, allow_pickle=False) as data:
      return {name: data[name] for name in data.files}
  except FileNotFoundError:
    raise LsattnError(f"{path}: no such weights file") from None
  except Exception as error:  # zip, pickle and format errors all mean a bad file
    raise LsattnError(f"{path}: not a readable .npz file ({error})") from None


def load_npz(path: str | os.PathLike, variant: str, num_classes: int = 1000) -> dict:
  """Reads an lsattn .npz written by `save_npz` for `variant`."""
  arrays = _read_npz(path)
  template = template_variables(variant, num_classes)
  expected = set(_flatten(template))
  unexpected = sorted(set(arrays) - expected)
  if unexpected:
    raise LsattnError(f"{path}: unexpected key {unexpected[0]!r} for the {variant!r} backbone "
                      f"({len(unexpected)} unexpected in all)")

  def lookup(name):
    if name not in arrays:
      raise LsattnError(f"{path}: missing key {name!r} for the {variant!r} backbone")
    return arrays[name]

  return _assemble(str(path), template, lookup)


def _module_and_leaf(name: str) -> tuple[list[str], str]:
  """'params/inception_3a/b1x1/conv/kernel' -> (['inception_3a', 'b1x1', 'conv'], 'kernel')."""
  _, *modules, leaf = name.split("/")
  return modules, leaf


def _layer_modules(modules: list[str]) -> list[str]:
  """Drops the trailing 'conv' or 'bn' of a ConvUnit's variable path."""
  return modules[:-1] if modules[-1] in ("conv", "bn") else modules


def _external_layer(modules: list[str], stem: dict, branch: dict, separator: str) -> str:
  if modules[0].startswith("inception_"):
    block = modules[0]
    if separator == ".":
      block = block.replace("_", "")  # torchvision: inception3a
    return f"{block}{separator}{branch[modules[1]]}"
  return stem[modules[0]]


def _caffe_key(name: str) -> str:
  """'params/inception_3a/b1x1/conv/kernel' -> 'inception_3a/1x1_0' (bias: '_1')."""
  modules, leaf = _module_and_leaf(name)
  layer = _external_layer(_layer_modules(modules), _CAFFE_STEM, _CAFFE_BRANCH, "/")
  return layer + ("_0" if leaf == "kernel" else "_1")


def _listed(names: list[str], limit: int = 6) -> str:
  shown = ", ".join(names[:limit])
  return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _read_caffe_named(path: str) -> dict[str, np.ndarray]:
  """``<layer>_<i>`` arrays of a .caffemodel, a pickle or a Caffe-named .npz."""
  if path.endswith(".caffemodel"):
    return caffemodel.read_blobs(path)
  if not path.endswith((".pkl", ".pickle")):
    return _read_npz(path)
  try:
    with open(path, "rb") as f:
      raw = pickle.load(f)
  except FileNotFoundError:
    raise LsattnError(f"{path}: no such weights file") from None
  except Exception as error:
    raise LsattnError(f"{path}: not a readable pickle ({error})") from None
  arrays = {}
  for key, value in raw.items():
    if isinstance(value, (list, tuple)):
      arrays.update({f"{key}_{i}": np.asarray(v) for i, v in enumerate(value)})
    else:
      arrays[key] = np.asarray(value)
  return arrays


def load_caffe(path: str | os.PathLike, num_classes: int | None = None) -> dict:
  """Reads Caffe-named GoogLeNet weights (.caffemodel, .npz or pickle) into the 'caffe' variant.

  The number of classes is the file's (``loss3/classifier``: 205 for Places205,
  1000 for BVLC ImageNet) unless given. Layers the backbone has no use for
  (the auxiliary heads ``loss1/*``, ``loss2/*``) are ignored. Legacy blobs
  with leading axes of size 1 (V1 files: a bias [1, 1, 1, O], the classifier
  [1, 1, out, in]) are squeezed.

  Raises:
    LsattnError: the file is unreadable, or lacks blobs of the Caffe
      GoogLeNet (one error listing the missing layers: a file of another
      network), or a blob has another shape.
  """
  path = str(path)
  arrays = _read_caffe_named(path)
  if num_classes is None:
    num_classes = np.size(arrays.get("loss3/classifier_1", np.zeros(1000)))
  variables = template_variables("caffe", num_classes)
  template = _flatten(variables)
  layers = sorted({_caffe_key(name)[:-2] for name in template})
  missing = []  # a layer without any blob by its name, else its missing blob
  for layer in layers:
    absent = [f"{layer}_{i}" for i in (0, 1) if f"{layer}_{i}" not in arrays]
    missing += [layer] if len(absent) == 2 else absent
  if missing:
    present = sorted({key.rsplit("_", 1)[0] for key in arrays})
    raise LsattnError(f"{path}: not the Caffe GoogLeNet: {len(missing)} of its {len(layers)} "
                      f"layers missing or incomplete ({_listed(missing)}); the file has "
                      f"{_listed(present) or 'no layers'}")

  def lookup(name):
    value = np.asarray(arrays[_caffe_key(name)])
    ndim = len(template[name].shape)
    while value.ndim > ndim and value.shape[0] == 1:
      value = value[0]
    if name.endswith("kernel"):
      value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
    return value

  return _assemble(path, variables, lookup)


def load_torchvision_googlenet(path: str | os.PathLike) -> dict:
  """Reads a torchvision GoogLeNet state dict (.pth) into the 'torchvision' variant.

  Raises:
    LsattnError: the file is not a readable checkpoint (`torch_checkpoint`),
      lacks tensors of torchvision's GoogLeNet (one error listing them: a
      file of another network), or a tensor has another shape.
  """
  path = str(path)
  state_dict = torch_checkpoint.load_state_dict(path)
  num_classes = state_dict["fc.weight"].shape[0] if "fc.weight" in state_dict else 1000
  variables = template_variables("torchvision", num_classes)
  leaf_names = {"kernel": "weight", "bias": "bias", "scale": "weight", "mean": "running_mean",
                "var": "running_var"}

  def key(name):
    modules, leaf = _module_and_leaf(name)
    layer = _external_layer(_layer_modules(modules), _TORCH_STEM, _TORCH_BRANCH, ".")
    if modules[0] != "classifier":
      layer += "." + modules[-1]  # .conv or .bn
    return f"{layer}.{leaf_names[leaf]}"

  expected = [key(name) for name in _flatten(variables)]
  missing = [name for name in expected if name not in state_dict]
  if missing:
    raise LsattnError(f"{path}: not the torchvision GoogLeNet: {len(missing)} of its "
                      f"{len(expected)} tensors missing ({_listed(missing)}); the file has "
                      f"{_listed(list(state_dict))}")

  def lookup(name):
    value = state_dict[key(name)]
    if name.endswith("kernel"):
      value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
    return value

  return _assemble(path, variables, lookup)


def load_googlenet(path: str, variant: str) -> dict:
  """The GoogLeNet members' reader (`lsattn.backbones.googlenet`), by suffix and contents.

  `.pth` is a torchvision state dict (`lsattn.weight_formats.torch_checkpoint`, no PyTorch
  needed); `.caffemodel` Caffe's own file (`lsattn.weight_formats.caffemodel`); a `.npz`
  whose names start with ``params/`` is lsattn's own; other `.npz` and
  pickles use Caffe naming. Caffe files load
  into 'caffe' only, `.pth` into 'torchvision' only.
  """
  if path.endswith(".pth"):  # only 'torchvision' lists .pth among its readers
    return load_torchvision_googlenet(path)
  if path.endswith(".npz"):
    names = _read_npz(path)
    if any(name.startswith("params/") for name in names):
      classes = names.get("params/classifier/bias", np.zeros(1000)).shape[0]
      return load_npz(path, variant, classes)
  if variant != "caffe":
    kind = "a .caffemodel" if path.endswith(".caffemodel") else "Caffe-named weights"
    raise LsattnError(f"{path}: {kind} needs backbone='caffe' (the Caffe GoogLeNet), "
                      f"got {variant!r}")
  return load_caffe(path)
