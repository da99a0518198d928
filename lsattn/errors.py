"""The one user-facing error type, and how command-line tools report it.

User errors (a bad config value, a missing folder, a malformed line in a pose
file) raise :class:`LsattnError` with a message that names the file, line, key
or value and says what was expected. Programming errors stay ordinary
exceptions with tracebacks.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn, TypeVar

T = TypeVar("T")


class LsattnError(Exception):
  """A problem with the user's input: config, files on disk, or arguments."""


def check_choice(name: str, value, allowed) -> None:
  """Raises LsattnError('<name> must be one of <allowed>, got <value>') unless allowed."""
  if value not in allowed:
    raise LsattnError(f"{name} must be one of {tuple(allowed)}, got {value!r}")


def read_weights_file(path: str | os.PathLike) -> bytes:
  """The bytes of a weights file the user named; a missing or unreadable one is
  one LsattnError line naming it."""
  path = os.fspath(path)
  try:
    with open(path, "rb") as handle:
      return handle.read()
  except FileNotFoundError:
    raise LsattnError(f"{path}: no such weights file") from None
  except OSError as error:
    raise LsattnError(f"{path}: cannot read ({error.strerror or error})") from None


def run_cli(main: Callable[..., T], *args, **kwargs) -> T:
  """Runs `main`, printing an `LsattnError` as one line and exiting with 2.

  User errors get no traceback noise; anything else propagates unchanged.
  """
  try:
    return main(*args, **kwargs)
  except LsattnError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # Exit at once: a normal interpreter shutdown lets background threads
    # (orbax's event loop after a failed restore) print tracebacks after the
    # one-line message.
    os._exit(2)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing (`app.run(main, flags_parser=parse_flags)`), with a bad
  ``--config.<key>`` override or flag value reported as one line, exit 2.

  Without it a misspelled key prints three chained tracebacks, a bad value
  absl's FATAL line and a missing config file two tracebacks, exit 1.
  """
  from absl import flags  # only the command-line tools need absl
  try:
    remaining = flags.FLAGS(argv)
  except SyntaxError as error:  # ml_collections imports the config file while parsing
    _exit_with(f"--config={error.filename}:{error.lineno}: the config file does not parse "
               f"({error.msg})")
  except flags.Error as error:
    config_error = _config_flag_error(str(error), argv)
    if config_error:
      _exit_with(config_error)
    if (any(arg.startswith("--config.") for arg in argv[1:])
        and not any(arg == "--config" or arg.startswith("--config=") for arg in argv[1:])):
      _exit_with(f"{error}: --config.<key>=... overrides need --config=FILE (a config file; "
                 f"eval.py and predict.py read the run's own config without it)")
    _exit_with(f"{error}")
  except (AttributeError, KeyError) as error:  # ml_collections: an unknown --config.<key>
    # ml_collections nests the KeyError's repr: literal quotes and a literal \n.
    detail = str(error.args[0] if error.args else error).strip("'\"")
    detail = detail.replace("\\'", "'").replace("\\n", "; ")
    overrides = [arg for arg in argv[1:] if arg.startswith("--config.")]
    _exit_with(f"unknown config key in {' '.join(overrides)}: "
               f"{' '.join(detail.split())}")
  except OSError as error:  # ml_collections: overrides of a config file that failed to load
    _exit_with(_config_file_error(error))
  _check_config_file(flags.FLAGS)
  return remaining


def _config_flag_error(message: str, argv: list[str]) -> str | None:
  """One line for ml_collections' errors about the --config file itself: get_config()
  returned None, or failed (a bad ':arg'; its message holds a traceback); else None."""
  given = next((arg.split("=", 1)[1] for arg in argv[1:] if arg.startswith("--config=")), None)
  if given is None:
    return None
  if "--config must have a value other than None" in message:
    return (f"--config={given}: get_config() returned None; it must return the config "
            f"(an ml_collections.ConfigDict, e.g. lsattn.defaults.get_config() with changes)")
  if "Error whilst parsing config file" in message:
    last = message.strip().splitlines()[-1].strip()
    return f"--config={given}: get_config failed: {last}"
  return None


def _check_config_file(flag_values) -> None:
  """A --config file that could not be loaded, or whose config lacks keys: one line
  (ml_collections defers a failed load to the config's first use, where it prints two
  chained tracebacks, exit 1; a missing key is a KeyError deep in the run)."""
  if "config" not in flag_values:
    return
  config = flag_values["config"].value
  try:
    if config is not None:
      config.keys()  # ml_collections' stand-in for a failed load raises its error here
  except OSError as error:
    _exit_with(_config_file_error(error))
  if config is None:
    return
  from lsattn import defaults  # the schema: every key a config must have
  keys = getattr(config, "keys", None)
  missing = sorted(set(defaults.get_config().keys()) - set(keys() if keys else ()))
  if missing:
    shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
    _exit_with(f"--config={flag_values['config'].config_filename}: the config lacks the keys "
               f"{shown}; build it on lsattn.defaults.get_config() (or configs/default.py) "
               f"and change what differs")


def _config_file_error(error: OSError) -> str:
  # The last line of ml_collections' report names the file and the OS error.
  return f"--config: cannot load the config file: {str(error).strip().splitlines()[-1].strip()}"


def _exit_with(message: str) -> NoReturn:
  print(f"error: {message}", file=sys.stderr)
  sys.stderr.flush()
  sys.exit(2)
