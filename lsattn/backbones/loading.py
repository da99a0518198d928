"""Backbone weights for any member of the family: the member's reader for a file, and
the loaded weights placed into a model's state.

`load_backbone_weights(path, backbone)` is what training calls: it resolves
a named file ('imagenet', `lsattn.backbones.weights_file`) and hands the
file to the member's reader for its suffix (`lsattn.backbones.Backbone.readers`).
`select_like` then takes from the loaded collection exactly the variables a
state's backbone has.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from lsattn import backbones
from lsattn.errors import LsattnError


def load_backbone_weights(path: str | os.PathLike, backbone: str) -> dict:
  """Loads member `backbone`'s variables ({'params', 'batch_stats'?}) from `path`.

  `path` is a file, or a name the member declares ('imagenet': the file a
  pip package ships, `lsattn.backbones.weights_file`). The member's reader
  for the file's suffix reads it (`lsattn.backbones.Backbone.readers`).

  Raises:
    LsattnError: an unknown name, a missing file, a suffix the member does
      not read (naming the members that do), or the reader's error.
  """
  member = backbones.get(backbone)
  path = backbones.weights_file(backbone, str(path))
  if not os.path.exists(path):
    raise LsattnError(f"backbone_weights: no such file {path}")
  suffix = os.path.splitext(path)[1]
  if suffix not in member.readers:
    readers = [other.name for other in map(backbones.get, backbones.names())
               if suffix in other.readers]
    needs = (f"a {suffix or 'suffix-less'} file needs backbone="
             f"{' or '.join(repr(name) for name in readers)}" if readers
             else f"no backbone reads {suffix or 'suffix-less'} files")
    reads = (f"reads {', '.join(member.readers)} weights" if member.readers
             else "reads no weight files (random init only: backbone_weights='')")
    raise LsattnError(f"{path}: backbone {backbone!r} {reads}; {needs}")
  return member.readers[suffix](path)


def select_like(template, loaded: dict, prefix: str, path) -> dict:
  """The entries of `loaded` that `template` has (same shapes, `template`'s dtypes), by name.

  How imported weights replace a state's random backbone: `template` is the
  state's tree, `loaded` a `load_backbone_weights` collection, `prefix` its
  name in errors ('params' or 'batch_stats').

  Raises:
    LsattnError: a weight is missing or has another shape (named, with `path`).
  """
  def pick(keys, leaf):
    node = loaded
    name = "/".join([prefix] + [k.key for k in keys])
    for key in keys:
      if key.key not in node:
        raise LsattnError(f"{path}: missing weight {name}")
      node = node[key.key]
    if tuple(node.shape) != tuple(leaf.shape):
      raise LsattnError(f"{path}: weight {name} has shape {tuple(node.shape)}, "
                        f"expected {tuple(leaf.shape)}")
    return jnp.asarray(node, leaf.dtype)
  return jax.tree_util.tree_map_with_path(pick, template)
