r"""Predicts the camera pose (or scene class) of new photos with a trained run.

  python predict.py --workdir=runs/demo_pose \
      [--output=preds.csv|preds.json] [--overlays=DIR] [--per_step] \
      [--estimates=chess_lsattn.txt] IMAGE_OR_FOLDER...

The run's own config (<workdir>/config.json) is used; --config=FILE (with
--config.<key>=... overrides) may change only keys that leave the model and
its input as they are (e.g. eval_batch_size), and is needed for runs written
before train.py saved its config. Folders are expanded to their
.jpg/.jpeg/.png files; the summary on stderr names what else they held. Each image (any size;
EXIF orientation applied) is resized and centre-cropped as in training. Per
image: position (x, y, z) and orientation (qw, qx, qy, qz, camera-to-world),
or class and probabilities, and the layer chosen at each step; without
--output a CSV goes to stdout. --per_step adds the prediction of each
recurrent step ('steps' in JSON; x_step1..qz_stepN or class_step1..
probability_stepN columns in CSV). --overlays writes one attention figure
per image. --estimates (pose runs) also writes one line per image in the
pseudo-ground-truth community's format, 'rgb_file qw qx qy qz tx ty tz',
world to camera, rgb_file the path as given (run it in a 7-Scenes scene
folder on seq-03 to name frames as the pGT files do). Unreadable files are
named on stderr and in the output's 'error' column; the rest are still
predicted. Only the run folder is needed, not the dataset.
"""

from lsattn import cli

if __name__ == "__main__":
  cli.predict()
