"""Several scenes of one dataset in one run (``config.scenes``).

``config.scenes`` names the scenes as datasets do, ``'<builder>/<config>'``
(``('seven_scenes/chess', 'seven_scenes/fire')``, or the embedded rooms of
`lsattn.data.synthetic.rooms`); () means the one ``config.dataset``, today's
single-scene run, unchanged. With several scenes, ``config.dataset`` must be
one of them (the run's name for its data in metrics.json and the checkpoint's
meta), every scene must be a pose scene of the same builder, known to it,
and named once. Own scenes (``own_scene/<name>``) are refused: each is built
from its own ``manual_dir``, and a config has one. Each scene is built as its own dataset (`datasets.prepare`),
so a scene's build is the same whether it is trained alone or with others;
`pipeline.concatenate` joins their splits, with the scene's index as a label.

Scene indices are the order of ``config.scenes``; the model's pose head k and
its scene classifier's class k are scene k.
"""

from __future__ import annotations

from lsattn.data import datasets
from lsattn.errors import LsattnError


def scene_names(dataset: str, scenes) -> tuple[str, ...]:
  """The run's scenes: ``scenes``, checked, or (dataset,) when it is empty.

  Raises:
    LsattnError: one line naming ``config.scenes`` and the value at fault: a name
      that is not '<builder>/<config>', an unknown scene, scenes of two builders, a
      classification dataset, a scene named twice, or a ``dataset`` not among them.
  """
  scenes = tuple(scenes)
  if not scenes:
    return (dataset,)
  builders = []
  for name in scenes:
    try:
      builder, config = datasets.split_name(name)
      cls = datasets.builder_class(builder)
    except LsattnError as error:
      raise LsattnError(f"config.scenes = {scenes!r}: {error}") from None
    if datasets.task_of(name) != "pose":
      raise LsattnError(f"config.scenes = {scenes!r}: {name!r} is a classification dataset; "
                        f"several scenes in one model are pose scenes")
    if builder == "own_scene":  # each would need its own manual_dir, and config has one
      raise LsattnError(f"config.scenes = {scenes!r}: own scenes ({name!r}) cannot be trained "
                        f"together yet: each is built from its own manual_dir")
    known = [c.name for c in cls.BUILDER_CONFIGS]
    if config not in known:
      raise LsattnError(f"config.scenes = {scenes!r}: unknown scene {name!r}; the scenes of "
                        f"{builder} are {known}")
    builders.append(builder)
  if len(set(builders)) > 1:
    raise LsattnError(f"config.scenes = {scenes!r}: scenes of different datasets "
                      f"({', '.join(sorted(set(builders)))}); one run's scenes are scenes of "
                      f"one dataset")
  repeated = sorted({name for name in scenes if scenes.count(name) > 1})
  if repeated:
    raise LsattnError(f"config.scenes = {scenes!r}: {repeated[0]!r} is named more than once")
  if dataset not in scenes:
    raise LsattnError(f"config.dataset = {dataset!r} is not one of config.scenes = "
                      f"{scenes!r}; set dataset to one of them (e.g. {scenes[0]!r})")
  return scenes


def short_name(scene: str) -> str:
  """'seven_scenes/chess' -> 'chess': the scene's name in metrics and file names."""
  return datasets.split_name(scene)[1]
