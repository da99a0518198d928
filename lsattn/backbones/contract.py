"""The backbone family's contract: `Backbone`, the registry, and the checks every member shares.

A member module builds its `Backbone` and calls `register` once when
imported; `lsattn.backbones` (the package) imports every member, so code
that uses the family imports the package, never this module. See the
package's docstring for what a member provides and how to add one.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Mapping

from lsattn.errors import LsattnError, check_choice

Reader = Callable[[str], dict]


@dataclasses.dataclass(frozen=True, eq=False)
class Backbone:
  """One member of the family.

  Attributes:
    name: its ``config.backbone`` value.
    module: ``module(*, taps, compute_logits, dtype, kernels, remat_blocks,
      **options)`` -> a Flax module whose ``__call__(images [B, H, W, 3], *,
      train)`` returns {tap: [B, h, w, C] for each of ``taps``} and, with
      ``compute_logits``, 'logits' [B, classes]. Without logits it may stop
      after the deepest tap asked for: its variables for taps T then serve
      any taps no deeper than T's deepest (training initialises the
      backbone once, for the deepest tap a model reads).
      ``kernels`` ('auto' | 'cpu' | 'generic') and ``remat_blocks`` change
      how it computes, never what.
    taps: the candidate taps, shallow to deep.
    strides: input pixels per tap pixel, one per tap (exact at an input
      that is a multiple of the largest; `tap_shape` is exact at any size).
    channels: C of each tap.
    display_names: each tap's name in reports and figures ('Conv-3B').
    tap_shape: ``tap_shape(tap, H, W) -> (h, w, C)`` for an H x W input,
      without compute.
    input_convention: one sentence: what the module does to the family's
      input (module docstring) to give its weights what they expect.
    readers: file suffix ('.npz') -> ``reader(path) -> {'params',
      'batch_stats'?}``, the variables of the module with every tap and the
      logits (extra entries are ignored when loaded into a model).
    named_weights: name ('imagenet') -> a function returning the path of a
      file a pip package ships (never downloaded), read by `readers`.
    options: `lsattn.model.ModelConfig` fields the module also takes
      (torchvision: 'transform_input').
  """
  name: str
  module: Callable
  taps: tuple[str, ...]
  strides: tuple[int, ...]
  channels: tuple[int, ...]
  display_names: tuple[str, ...]
  tap_shape: Callable[[str, int, int], tuple[int, int, int]]
  input_convention: str
  readers: Mapping[str, Reader]
  named_weights: Mapping[str, Callable[[], str]] = dataclasses.field(default_factory=dict)
  options: tuple[str, ...] = ()

  @property
  def deepest(self) -> str:
    """The deepest tap (what the baselines and the feature retrieval read)."""
    return self.taps[-1]

  @property
  def min_image_size(self) -> int:
    """The smallest input side: the deepest tap's stride (a 1x1 map)."""
    return max(self.strides)

  def deepest_of(self, taps) -> str:
    """The deepest of `taps` (names of this member)."""
    return max(taps, key=self.taps.index)

  def display_name(self, tap: str) -> str:
    return self.display_names[self.taps.index(tap)]


_MEMBERS: dict[str, Backbone] = {}


def register(member: Backbone) -> Backbone:
  """Adds `member` to the family (a member module calls this once); returns it."""
  if member.name in _MEMBERS:
    raise ValueError(f"backbone {member.name!r} is registered twice")
  per_tap = (member.strides, member.channels, member.display_names)
  if not member.taps or any(len(values) != len(member.taps) for values in per_tap):
    raise ValueError(f"backbone {member.name!r}: strides, channels and display_names need "
                     f"one entry per tap of {member.taps}")
  _MEMBERS[member.name] = member
  return member


def names() -> tuple[str, ...]:
  """The members' names, in registration order."""
  return tuple(_MEMBERS)


def get(name: str) -> Backbone:
  """The member called `name`; LsattnError (one line listing the members) if none is."""
  check_choice("backbone", name, names())
  return _MEMBERS[name]


def default_layers(name: str, candidate_layers, fixed_layer: str
                   ) -> tuple[tuple[str, ...], str]:
  """(candidate_layers, fixed_layer) with () and '' read as member `name`'s taps and deepest."""
  member = get(name)
  return tuple(candidate_layers) or member.taps, fixed_layer or member.deepest


def check_images(images) -> None:
  """Raises LsattnError unless images is [B, H, W, 3] (RGB)."""
  if images.ndim != 4 or images.shape[-1] != 3:
    raise LsattnError(f"images must be [B, H, W, 3] RGB, got shape {tuple(images.shape)}")


def is_weights_name(value: str) -> bool:
  """Whether a ``backbone_weights`` value names weights ('imagenet') rather than a file."""
  return bool(value) and not any(mark in value for mark in ("/", os.sep, "."))


def weights_file(name: str, value: str) -> str:
  """The file ``config.backbone_weights = value`` means for member `name`.

  A path is itself; a name (`is_weights_name`) is the member's named file.

  Raises:
    LsattnError: a name the member does not declare (one line naming the
      key, the value and the choices).
  """
  member = get(name)
  if not is_weights_name(value):
    return value
  if not member.readers and not member.named_weights:
    raise LsattnError(f"config.backbone_weights = {value!r}: backbone {name!r} has no named "
                      f"weights and reads no weight files (random init only); leave "
                      f"backbone_weights ''")
  if value not in member.named_weights:
    files = (f"config.backbone_weights = {value!r}: expected a weights file "
             f"({', '.join(member.readers)})")
    raise LsattnError(f"{files} or a name of backbone {name!r}: {tuple(member.named_weights)}"
                      if member.named_weights else
                      f"{files}; backbone {name!r} has no named weights")
  return member.named_weights[value]()
