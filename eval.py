r"""Evaluates the latest checkpoint of a run on the test split.

  python eval.py --config=configs/demo_pose.py --workdir=runs/demo_pose

Writes <workdir>/eval/metrics.json, predictions.csv and figures (PNG).
"""

from absl import app, flags, logging
from ml_collections import config_flags

from lsattn import experiment
from lsattn.errors import parse_flags, run_cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder written by train.py.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  run_cli(experiment.evaluate, _CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
