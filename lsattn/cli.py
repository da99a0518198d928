r"""The command-line tools, for an installed lsattn and the repository alike.

  lsattn-train --config=my_config.py --workdir=runs/x [--config.<key>=...]
  lsattn-eval --workdir=runs/x
  lsattn-predict --workdir=runs/x [--output=F] IMAGE_OR_FOLDER...
  lsattn-export --workdir=runs/x --output=F

The console scripts (pyproject ``[project.scripts]``) call `train`,
`evaluate`, `predict` and `export`; the repository's train.py, eval.py,
predict.py and export.py call the same functions (their docstrings are
the --help text). A config file may build on the schema with
``from lsattn import config_schema; config = config_schema.get_config()`` (the
repository's configs/ need the repository on ``sys.path``).

Each tool defines its flags when it starts: absl flags are global to the
process, and one tool's flags (predict's ``--output``) must not be accepted
by another. User errors (`lsattn.errors.LsattnError`) print one line and exit 2
(`run_cli`); bad flags and config files too (`parse_flags`).
"""

from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn, TypeVar

from absl import app, flags, logging
from ml_collections import config_flags

from lsattn import config_schema
from lsattn.errors import LsattnError
from lsattn.runs import interrupts, run_folder

T = TypeVar("T")


_OPTIONAL_CONFIG_HELP = ("Optional: a config file (configs/*.py) whose run-time keys override "
                        "the run's own config (<workdir>/config.json).")


def _run_flags(config_help: str, workdir_help: str, *, config_required: bool):
  """--config and --workdir; their flag holders.

  train needs --config; eval, predict and export read the run's own config
  (<workdir>/config.json) and take --config only for overrides or for runs
  written before train.py saved its config.
  """
  config = config_flags.DEFINE_config_file("config", None, config_help, lock_config=True)
  workdir = flags.DEFINE_string("workdir", None, workdir_help)
  flags.mark_flags_as_required(["config", "workdir"] if config_required else ["workdir"])
  return config, workdir


def _shown_in_help(tool, *holders) -> None:
  """--help describes the tool and lists its flags.

  absl's --help shows the main module's docstring and the flags it defined;
  a console script's main module is pip's wrapper, which has neither.
  """
  main = sys.modules["__main__"]
  if not main.__doc__:
    main.__doc__ = tool.__doc__
  for holder in holders:
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[holder.name])


def _stopping_on_signals(work, doing: str):
  """`work` with Ctrl-C and SIGTERM as one line (`lsattn.runs.interrupts`); its outputs are
  written atomically, so the previous ones stay."""

  def stopped_cleanly(*args):
    with interrupts.stopping_on_signals(doing, "Run the same command again."):
      return work(*args)

  return stopped_cleanly


def _no_arguments(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")


def _experiment_tool(tool, argv, name: str, config_help: str, workdir_help: str, *,
                     config_required: bool) -> None:
  """Runs `lsattn.experiment.<name>(config, workdir)` as a tool with --config and --workdir."""
  config, workdir = _run_flags(config_help, workdir_help, config_required=config_required)
  _shown_in_help(tool, config, workdir)

  def main(argv):
    _no_arguments(argv)
    from lsattn import experiment  # jax and the model: after the flags are parsed
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    run_cli(getattr(experiment, name), config.value, workdir.value)

  app.run(main, argv=argv, flags_parser=parse_flags)


def train(argv: list[str] | None = None) -> None:
  """Trains a model, then evaluates it on the test split (train.py).

  Re-running the same command on the same workdir resumes from its latest
  checkpoint. Outputs: <workdir>/config.json, <workdir>/checkpoints,
  <workdir>/tensorboard, <workdir>/eval/{metrics.json, predictions.csv, *.png}.
  """
  _experiment_tool(train, argv, "train_and_evaluate", "Config file (configs/*.py).",
                   "Run folder (checkpoints, logs, eval).", config_required=True)


def evaluate(argv: list[str] | None = None) -> None:
  """Evaluates the latest checkpoint of a run on the test split (eval.py).

  Writes <workdir>/eval/metrics.json, predictions.csv, estimates_<scene>.txt (pose)
  and figures (PNG). With --runs instead of --workdir: the dataset's table over
  those runs' eval/metrics.json, one run per scene (per scene, and the mean over
  scenes of the per-scene medians and fractions).
  """
  config = config_flags.DEFINE_config_file("config", None, _OPTIONAL_CONFIG_HELP,
                                           lock_config=True)
  workdir = flags.DEFINE_string("workdir", None, "Run folder written by train.py.")
  runs = flags.DEFINE_list("runs", None, "Instead of --workdir: run folders, one per scene "
                           "of one dataset and ground truth, whose eval/metrics.json make "
                           "the dataset's table (printed).")
  table = flags.DEFINE_string("table", None, "With --runs: also write the table here "
                              "(.md or .json).")
  _shown_in_help(evaluate, config, workdir, runs, table)

  def main(argv):
    _no_arguments(argv)
    if (workdir.value is None) == (runs.value is None):
      _exit_with("give --workdir (evaluate a run) or --runs (a table over runs), one of them")
    if runs.value is not None:
      if config.value is not None:
        _exit_with("--runs reads the runs' eval/metrics.json; it takes no --config")
      run_cli(scene_table, runs.value, table.value)
      return
    if table.value is not None:
      _exit_with("--table goes with --runs")
    from lsattn import experiment  # jax and the model: after the flags are parsed
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    run_cli(experiment.evaluate, config.value, workdir.value)

  app.run(main, argv=argv, flags_parser=parse_flags)


def scene_table(runs, output=None) -> None:
  """eval.py --runs once its flags are read: the table on stdout, and in `output`."""
  from lsattn.evaluation import tables
  if output is not None:
    tables.check_table_path(output)
  table = tables.scene_table(runs)
  print(tables.format_table(table))
  if output is not None:
    tables.write_table(output, table)


def predict(argv: list[str] | None = None) -> None:
  """Predicts the pose (or scene class) of photos with a trained run (predict.py).

  Folders are expanded to their .jpg/.jpeg/.png files; without --output a
  CSV goes to stdout (columns: `lsattn.prediction`). --estimates also writes
  the poses as per-frame estimates (`lsattn.prediction.write_estimates`).
  """
  config, workdir = _run_flags(_OPTIONAL_CONFIG_HELP, "Run folder written by train.py.",
                               config_required=False)
  output = flags.DEFINE_string("output", None, "Write predictions here (.csv or .json); "
                               "default: CSV to stdout.")
  overlays = flags.DEFINE_string("overlays", None, "Folder for attention overlay figures.")
  per_step = flags.DEFINE_bool("per_step", False, "Also output the prediction of every "
                               "recurrent step (step 1 first; the last is the final one).")
  estimates = flags.DEFINE_string("estimates", None, "Pose runs: also write the poses as "
                                  "per-frame estimates (.txt; 'rgb_file qw qx qy qz tx ty tz', "
                                  "world to camera; rgb_file = the path as given).")
  _shown_in_help(predict, config, workdir, output, overlays, per_step, estimates)

  def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    run_cli(_stopping_on_signals(predict_images, "the prediction"), config.value,
            workdir.value, argv[1:], output.value, overlays.value, per_step.value,
            estimates.value)

  app.run(main, argv=argv, flags_parser=parse_flags)


def predict_images(config, workdir, paths, output, overlays, per_step, estimates=None) -> None:
  """predict's work once its flags are read; a summary line on stderr."""
  from lsattn import prediction
  if not paths:
    raise LsattnError("no images given: pass image files or folders after the flags")
  if output is not None:
    prediction.check_output_path(output, workdir)
  if estimates is not None:
    prediction.check_estimates_path(estimates)
    saved = run_folder.read(workdir)
    if saved is not None and saved.task != "pose":
      raise LsattnError(f"--estimates={estimates}: per-frame estimates are poses; the run "
                        f"{workdir} is a {saved.task} run")
  if overlays is not None:
    prediction.check_overlays_folder(overlays, workdir)
  interrupts.at_safe_points("no predictions were written")
  results = prediction.predict(workdir, config, paths, overlays=overlays, per_step=per_step)
  import jax  # started by `predict`, multi-process or not
  if jax.process_index() != 0:  # a multi-process job: process 0 writes and reports
    return
  prediction.write_predictions(output, results)
  if estimates is not None:
    prediction.write_estimates(estimates, results)
  failed = [r["path"] for r in results if "error" in r]
  skipped = [prediction.describe_skipped(path) for path in prediction.skipped_entries(paths)]
  print(f"Predicted {len(results) - len(failed)} of {len(results)} images"
        + (f"; wrote {output}" if output else "")
        + (f"; estimates in {estimates}" if estimates else "")
        + (f"; unreadable: {', '.join(failed)}" if failed else "")
        + (f"; skipped {len(skipped)} non-image "
           f"{'entry' if len(skipped) == 1 else 'entries'}: {', '.join(skipped)}"
           if skipped else ""), file=sys.stderr)
  if len(failed) == len(results):
    raise LsattnError(f"none of the {len(results)} images could be read")


def export(argv: list[str] | None = None) -> None:
  """Exports a trained run as one file that needs only jax and numpy (export.py)."""
  config, workdir = _run_flags(
      "Only for runs without <workdir>/config.json: the run's config file.",
      "Run folder written by train.py.", config_required=False)
  output = flags.DEFINE_string("output", None, "The file to write (and <output>.json).")
  platforms = flags.DEFINE_list("platforms", None, "Platforms to lower for (e.g. cpu,cuda); "
                                "default: this machine's.")
  flags.mark_flags_as_required(["output"])
  _shown_in_help(export, config, workdir, output, platforms)

  def main(argv):
    _no_arguments(argv)
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    run_cli(_stopping_on_signals(export_run, "the export"), config.value, workdir.value,
            output.value, tuple(platforms.value) if platforms.value else None)

  app.run(main, argv=argv, flags_parser=parse_flags)


def export_run(config, workdir, output, platforms) -> None:
  """export's work once its flags are read; a summary line on stdout."""
  from lsattn import exporting
  description = exporting.export_run(workdir, output, config, platforms=platforms)
  print(f"Wrote {output} and {output}.json (step {description['checkpoint_step']}, input "
        f"{description['input_size']}x{description['input_size']}, outputs "
        f"{', '.join(sorted(description['outputs']))})")


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
    if "<class 'NoneType'>" in str(error):
      # get_config() returned None: ml_collections applies the overrides to None and
      # names the type, before the flag's own None check.
      _exit_with(_config_flag_error("--config must have a value other than None", argv)
                 or f"{error}")
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
            f"(an ml_collections.ConfigDict, e.g. lsattn.config_schema.get_config() with changes)")
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
  keys = getattr(config, "keys", None)
  missing = sorted(set(config_schema.get_config().keys()) - set(keys() if keys else ()))
  if missing:
    shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
    _exit_with(f"--config={flag_values['config'].config_filename}: the config lacks the keys "
               f"{shown}; build it on lsattn.config_schema.get_config() (or configs/default.py) "
               f"and change what differs")


def _config_file_error(error: OSError) -> str:
  # The last line of ml_collections' report names the file and the OS error.
  return f"--config: cannot load the config file: {str(error).strip().splitlines()[-1].strip()}"


def _exit_with(message: str) -> NoReturn:
  print(f"error: {message}", file=sys.stderr)
  sys.stderr.flush()
  sys.exit(2)
