r"""Predicts the camera pose (or scene class) of new photos with a trained run.

  python predict.py --config=configs/demo_pose.py --workdir=runs/demo_pose \
      [--output=preds.csv|preds.json] [--overlays=DIR] [--per_step] IMAGE_OR_FOLDER...

Folders are expanded to their .jpg/.jpeg/.png files. Each image (any size;
EXIF orientation applied) is resized and centre-cropped as in training. Per
image: position (x, y, z) and orientation (qw, qx, qy, qz, camera-to-world),
or class and probabilities, and the layer chosen at each step; without
--output a CSV goes to stdout. --per_step adds the prediction of each
recurrent step ('steps' in JSON; x_step1..qz_stepN or class_step1..
probability_stepN columns in CSV). --overlays writes one attention figure
per image. Unreadable files are named on stderr and in the output's 'error'
column; the rest are still predicted. Only the run folder is needed, not
the dataset.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from lsattn import prediction
from lsattn.errors import LsattnError, parse_flags, run_cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "The run's config (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder written by train.py.")
_OUTPUT = flags.DEFINE_string("output", None, "Write predictions here (.csv or .json); "
                              "default: CSV to stdout.")
_OVERLAYS = flags.DEFINE_string("overlays", None, "Folder for attention overlay figures.")
_PER_STEP = flags.DEFINE_bool("per_step", False, "Also output the prediction of every "
                              "recurrent step (step 1 first; the last is the final one).")
flags.mark_flags_as_required(["config", "workdir"])


def _predict(config, workdir, paths, output, overlays, per_step):
  if not paths:
    raise LsattnError("no images given: pass image files or folders after the flags")
  if output is not None:
    prediction.check_output_path(output)
  results = prediction.predict(workdir, config, paths, overlays=overlays, per_step=per_step)
  prediction.write_predictions(output, results)
  failed = [r["path"] for r in results if "error" in r]
  print(f"Predicted {len(results) - len(failed)} of {len(results)} images"
        + (f"; wrote {output}" if output else "")
        + (f"; unreadable: {', '.join(failed)}" if failed else ""), file=sys.stderr)
  if len(failed) == len(results):
    raise LsattnError(f"none of the {len(results)} images could be read")


def main(argv):
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  run_cli(_predict, _CONFIG.value, _WORKDIR.value, argv[1:], _OUTPUT.value, _OVERLAYS.value,
          _PER_STEP.value)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
