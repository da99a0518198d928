r"""Evaluates the latest checkpoint of a run on the test split; or tables runs over scenes.

  python eval.py --workdir=runs/demo_pose [--config=FILE --config.eval_batch_size=8 ...]
  python eval.py --runs=runs/chess,runs/fire,runs/heads [--table=seven_scenes.md]

Uses the run's own config (<workdir>/config.json). A --config (with its
overrides) may change only keys that leave the model, its input and the data
as they are (eval_batch_size, data_dir, num_figure_examples, ...): those are
applied and listed in metrics.json's "config_overrides"; any other key that
differs is refused. Runs written before train.py saved its config need
--config. Writes <workdir>/eval/metrics.json, predictions.csv, for pose runs
estimates_<scene>.txt (one line per frame, 'rgb_file qw qx qy qz tx ty tz',
world to camera: the pseudo-ground-truth repository's estimates format) and
figures (PNG).

--runs, instead of --workdir: the dataset's table from those runs'
eval/metrics.json (one run per scene of one dataset, one ground truth):
per scene, and the mean over scenes of the per-scene medians and threshold
fractions, as papers print them; --table also writes it (.md or .json).

While train.py is still training the run, evaluates its latest complete
checkpoint step N instead and writes <workdir>/eval/step_<N>/.
"""

from lsattn import cli

if __name__ == "__main__":
  cli.evaluate()
