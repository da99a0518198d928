"""The one user-facing error type.

User errors (a bad config value, a missing folder, a malformed line in a pose
file) raise :class:`LsattnError` with a message that names the file, line, key
or value and says what was expected. Programming errors stay ordinary
exceptions with tracebacks. The command-line tools print an `LsattnError` as
one line, exit 2 (`lsattn.cli.run_cli`).
"""

from __future__ import annotations


class LsattnError(Exception):
  """A problem with the user's input: config, files on disk, or arguments."""


def check_choice(name: str, value, allowed) -> None:
  """Raises LsattnError('<name> must be one of <allowed>, got <value>') unless allowed."""
  if value not in allowed:
    raise LsattnError(f"{name} must be one of {tuple(allowed)}, got {value!r}")
