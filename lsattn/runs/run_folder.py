"""What a run folder holds beside its checkpoints: the run's config.

``train.py`` writes the resolved config (the config file with every
``--config.<key>`` override applied) to ``<workdir>/config.json`` when it
starts, so that ``eval.py``, ``predict.py`` and ``export.py`` need only the
run folder. JSON holds lists, not tuples: `read` restores each value to the
type of its default in the schema (`lsattn.config_schema`).

A config given to eval or predict is merged with the run's (`resolve`): a
run key (declared so in `lsattn.config_schema`: what the model computes, how its
input is prepared, which data and checkpoint the run is) must equal the run's;
any other key (batch size of evaluation, folders, figures, compilation;
training-only keys, which do not change an evaluation) is applied and
reported as an override.

``candidate_layers`` () and ``fixed_layer`` '' mean the backbone's taps and
its deepest tap (`lsattn.backbones.default_layers`); configs are compared
with those names in their place (`resolve_layers`), so a run whose
config.json holds the names (as every run before the defaults were () and
'') and a config leaving them at their defaults are the same run.
"""

from __future__ import annotations

import json
import os
import pathlib

import ml_collections

from lsattn import backbones, config_schema
from lsattn.errors import LsattnError
from lsattn.runs import atomic, run_lock

CONFIG_FILE = "config.json"


def resume_keys() -> tuple[str, ...]:
  """Keys a resumed training may not change: the run keys (`config_schema.run_keys`) but
  validation_split, which `experiment` checks against the checkpoint's meta (covering
  runs without config.json too)."""
  return tuple(key for key in config_schema.run_keys() if key != "validation_split")


def config_path(workdir: str | pathlib.Path) -> pathlib.Path:
  return pathlib.Path(workdir).expanduser() / CONFIG_FILE


# Bytes the longest path a run writes inside its folder may add to it (an orbax step's
# temporary folder and its array files; TensorBoard's event file with the host name).
RUN_FOLDER_DEPTH = 256


def check_workdir(workdir: str | pathlib.Path) -> pathlib.Path:
  """`workdir` as a Path.

  Raises:
    LsattnError: `workdir` is empty (an unset variable: the run would go into
      the current folder among the user's files), names an existing
      non-folder, or is too long for its file system (a part longer than
      NAME_MAX, or the path with `RUN_FOLDER_DEPTH` more bytes longer than
      PATH_MAX), each before anything is written.
  """
  if not str(workdir).strip():
    raise LsattnError("--workdir is empty (an unset variable?): expected a run folder; "
                      "refusing to use the current folder")
  path = pathlib.Path(workdir).expanduser()
  _check_length(path, workdir)
  if path.exists() and not path.is_dir():
    raise LsattnError(f"--workdir={workdir} is a file: expected a run folder (existing or new)")
  return path


def _is_folder(path: pathlib.Path) -> bool:
  try:
    return path.is_dir()
  except OSError:  # ENAMETOOLONG
    return False


def _check_length(path: pathlib.Path, given) -> None:
  absolute = path.absolute()
  existing = next(folder for folder in (absolute, *absolute.parents) if _is_folder(folder))
  name_max = os.pathconf(existing, "PC_NAME_MAX")
  path_max = os.pathconf(existing, "PC_PATH_MAX")
  shown = str(given)
  if len(shown) > 80:
    shown = f"{shown[:60]}... ({len(shown)} characters)"
  for part in absolute.parts:
    if len(os.fsencode(part)) > name_max:
      raise LsattnError(f"--workdir={shown}: its part {part[:40]!r}... has "
                        f"{len(os.fsencode(part))} bytes; the file system allows {name_max} "
                        f"(NAME_MAX). Use a shorter --workdir.")
  length = len(os.fsencode(str(absolute)))
  if length + RUN_FOLDER_DEPTH > path_max:
    raise LsattnError(f"--workdir={shown}: the path has {length} bytes; with the files a run "
                      f"writes inside it (up to {RUN_FOLDER_DEPTH} more) it passes the "
                      f"system's limit of {path_max} (PATH_MAX). Use a shorter --workdir.")


# The run folder's entries that must be folders (ARCHITECTURE.md, "A run folder").
FOLDERS = ("checkpoints", "best_checkpoint", "tensorboard", "eval")


def check_entries(workdir: str | pathlib.Path) -> None:
  """Refuses a run folder whose `FOLDERS` entries are files, or are folders that
  cannot be written (before any compute)."""
  workdir = pathlib.Path(workdir).expanduser()
  for name in FOLDERS:
    path = workdir / name
    if path.exists() and not path.is_dir():
      raise LsattnError(f"{path} is a file: a run folder's {name!r} must be a folder. Move "
                        f"the file away, or use another --workdir.")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
      raise LsattnError(f"{path}: cannot write in this folder of the run (permission "
                        f"denied). Make it writable, or use another --workdir.")


def own_entry(path: str | pathlib.Path, workdir: str | pathlib.Path) -> str | None:
  """The run's own entry that `path` is or lies in (config.json, the lock, or one of
  `FOLDERS`), or None: what no output of predict or export may replace."""
  path, workdir = pathlib.Path(path).expanduser(), pathlib.Path(workdir).expanduser()
  resolved, folder = path.resolve(), workdir.resolve()
  if not resolved.is_relative_to(folder) or resolved == folder:
    return None
  first = resolved.relative_to(folder).parts[0]
  return first if first in {CONFIG_FILE, run_lock.LOCK_FILE, *FOLDERS} else None


def to_json_data(config) -> dict:
  """{key: value} of `config`, tuples as lists (JSON data)."""
  return {key: config_schema.jsonable(config[key]) for key in sorted(config.keys())}


def resolve_layers(config):
  """`config`, or a copy with candidate_layers () and fixed_layer '' replaced by the
  backbone's taps and deepest tap."""
  if not {"backbone", "candidate_layers", "fixed_layer"} <= set(config.keys()):
    return config
  layers, fixed = backbones.default_layers(config.backbone, config.candidate_layers,
                                           config.fixed_layer)
  if tuple(config.candidate_layers) == layers and config.fixed_layer == fixed:
    return config
  resolved = ml_collections.ConfigDict(config.to_dict())
  resolved.candidate_layers, resolved.fixed_layer = layers, fixed
  return resolved


# Keys that hold a file or folder: config.json stores them absolute.
PATH_KEYS = ("data_dir", "manual_dir", "backbone_weights", "compilation_cache_dir")


def absolute_paths(config) -> tuple[ml_collections.ConfigDict, dict[str, str]]:
  """`config` with its relative `PATH_KEYS` made absolute (against the current folder),
  and {key: the value as given} of those it changed.

  A relative path means the folder the command ran in; stored as given, eval.py
  or predict.py run from another folder would look elsewhere. '' (none), '~/...'
  and a weights name ('imagenet') are kept.
  """
  given = {}
  for key in PATH_KEYS:
    value = config.get(key)
    if (not isinstance(value, str) or not value or os.path.isabs(value)
        or value.startswith("~")
        or (key == "backbone_weights" and backbones.is_weights_name(value))):
      continue
    given[key] = value
  if not given:
    return config, {}
  result = ml_collections.ConfigDict(config.to_dict())
  for key, value in given.items():
    result[key] = os.path.abspath(value)
  return result, given


def write(workdir: str | pathlib.Path, config) -> pathlib.Path:
  """Writes `config` to <workdir>/config.json (atomically, with the mode of the run's
  other files: `lsattn.runs.atomic`), its relative paths made absolute
  (`absolute_paths`)."""
  path = config_path(workdir)
  config, _ = absolute_paths(config)
  text = json.dumps(to_json_data(config), indent=2, sort_keys=True) + "\n"
  return atomic.write_text(path, text)


def read(workdir: str | pathlib.Path) -> ml_collections.ConfigDict | None:
  """The run's config from <workdir>/config.json, or None for a run without one.

  Values get the types of the schema's defaults (tuples restored); a key the
  file lacks (added to lsattn since the run) gets its default.

  Raises:
    LsattnError: the file is not a JSON object.
  """
  path = config_path(workdir)
  if not path.is_file():
    return None
  try:
    saved = json.loads(path.read_text())
  except (OSError, ValueError) as error:
    raise LsattnError(f"{path}: cannot read the run's config ({error})") from None
  if not isinstance(saved, dict):
    raise LsattnError(f"{path}: expected a JSON object of config keys")
  schema = config_schema.get_config()
  return ml_collections.ConfigDict({
      key: config_schema.from_json(key, saved.get(key, schema.get(key)))
      for key in sorted(set(schema.keys()) | set(saved))})


def _differences(saved, given, keys) -> list[tuple[str, object, object]]:
  saved, given = resolve_layers(saved), resolve_layers(given)
  return [(key, saved[key], given[key]) for key in keys
          if key in saved and key in given
          and config_schema.jsonable(saved[key]) != config_schema.jsonable(given[key])]


def _describe(differences) -> str:
  return "; ".join(f"{key}={run!r} in the run, {new!r} given" for key, run, new in differences)


def resolve(workdir: str | pathlib.Path, config=None
            ) -> tuple[ml_collections.ConfigDict, dict | None]:
  """The config to evaluate or predict a run with, and the overrides applied.

  Args:
    workdir: the run folder.
    config: a config given by the user (e.g. `--config` with overrides), or
      None to use the run's own.

  Returns:
    (config, overrides): overrides is {key: {'run': value, 'used': value}}
    for each key `config` changes ({} when none), or None for a run without
    config.json (then `config` is used as given).

  Raises:
    LsattnError: `config` changes a run key (`config_schema.run_keys`; one line naming each
      such key with both values), or neither `config` nor config.json exists.
  """
  saved = read(workdir)
  if saved is None:
    if config is None:
      raise LsattnError(f"{config_path(workdir)} does not exist (a run written before "
                        f"train.py saved its config, or not a run folder): pass the run's "
                        f"config with --config=...")
    return config, None
  if config is None:
    return saved, {}
  config, _ = absolute_paths(config)  # as config.json holds them
  runtime = config_schema.runtime_keys()
  refused = _differences(saved, config, [key for key in saved.keys() if key not in runtime])
  if refused:
    raise LsattnError(f"the given config changes what the run's model is "
                      f"({config_path(workdir)}): {_describe(refused)}. Leave --config out "
                      f"to use the run's own config.")
  overrides = {key: {"run": config_schema.jsonable(run), "used": config_schema.jsonable(new)}
               for key, run, new in _differences(saved, config, runtime)}
  merged = ml_collections.ConfigDict(saved.to_dict())
  for key in overrides:
    merged[key] = config[key]
  return merged, overrides


def check_resume(workdir: str | pathlib.Path, config) -> None:
  """Refuses resuming a run with a config whose `resume_keys` differ from its config.json."""
  saved = read(workdir)
  if saved is None:
    return
  changed = _differences(saved, config, resume_keys())
  if changed:
    raise LsattnError(f"cannot resume {workdir}: the config changes what the model is "
                      f"({_describe(changed)}; {config_path(workdir)}). Use a new --workdir, "
                      f"or restore the old values.")
