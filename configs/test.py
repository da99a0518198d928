r"""A tiny config for tests: seconds on a CPU, every code path of a real run.

  python train.py --config=configs/test.py --workdir=/tmp/t \
      --config.data_dir=/tmp/t/data --config.manual_dir=<small 7-Scenes-layout folder>

Tests write a few-frame synthetic scene (lsattn.data.synthetic.room) as the manual
folder; without one, the full synthetic room is written (about 20 s).

It builds on the schema in the package (`lsattn.config_schema`, what
configs/default.py returns), so a copy of this one file works with an
installed lsattn outside the repository (tests/test_install.py).
"""

from lsattn import config_schema


def get_config():
  config = config_schema.get_config()
  # Five small convolutions at GoogLeNet's tap strides (lsattn/backbones/tiny_cnn.py):
  # runs compile in a third of GoogLeNet's time. Tests about a backbone name it.
  config.backbone = "tiny_cnn"
  config.dataset = "seven_scenes/synthetic_room"
  config.data_dir = "/tmp/lsattn_test_data"
  config.resize_size = (40, 64)
  config.image_size = 32
  config.beta = 10.0
  config.freeze_backbone = True  # compiles in a fraction of the time; tests cover both
  config.hidden_size = 8
  config.projection_size = 8
  config.convlstm_kernel_sizes = (1, 3)
  config.attention_kernel_sizes = (1, 3)
  config.gate_embedding_size = 4
  config.num_recurrent_steps = 2
  config.batch_size = 4
  config.eval_batch_size = 4
  config.learning_rate = 1e-3
  config.num_train_steps = 4
  config.temperature_decay_steps = 100  # fixed, so a shorter run is a prefix of a longer one
  config.log_every_steps = 2
  config.eval_every_steps = 2
  config.checkpoint_every_steps = 2
  config.keep_checkpoints = 2
  config.num_figure_examples = 2
  # The final evaluation's extras cost more than the tiny run: off here, on in the
  # tests that check them (test_experiment.py, test_multiprocess.py, test_demo_path.py).
  config.eval_retrieval_baselines = False
  config.eval_figures = False
  return config
