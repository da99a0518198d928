r"""Evaluates the latest checkpoint of a run on the test split.

  python eval.py --workdir=runs/demo_pose [--config=FILE --config.eval_batch_size=8 ...]

Uses the run's own config (<workdir>/config.json). A --config (with its
overrides) may change only keys that leave the model, its input and the data
as they are (eval_batch_size, data_dir, num_figure_examples, ...): those are
applied and listed in metrics.json's "config_overrides"; any other key that
differs is refused. Runs written before train.py saved its config need
--config. Writes <workdir>/eval/metrics.json, predictions.csv and figures (PNG).
While train.py is still training the run, evaluates its latest complete
checkpoint step N instead and writes <workdir>/eval/step_<N>/.
"""

from lsattn import cli

if __name__ == "__main__":
  cli.evaluate()
