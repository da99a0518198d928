r"""Demo: camera pose on lsattn's synthetic room (7-Scenes layout), CPU-sized.

  python train.py --config=configs/demo_pose.py --workdir=runs/demo_pose

Writes the synthetic scene (450 frames, ~20 s), builds the dataset, trains
the layer-spatial attention model with a frozen, randomly initialised
GoogLeNet (no weights are downloaded) on 112x112 crops, and evaluates the
test sequence. About 10 minutes on 2 CPU cores.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = "seven_scenes/synthetic_room"
  config.data_dir = "runs/data"
  config.resize_size = (128, 228)
  config.image_size = 112
  config.beta = 100.0
  config.freeze_backbone = True
  config.hidden_size = 48
  config.projection_size = 48
  config.num_recurrent_steps = 3
  config.batch_size = 16
  config.eval_batch_size = 30
  config.learning_rate = 1e-3
  config.learning_rate_schedule = "cosine"
  config.warmup_steps = 20
  config.num_train_steps = 600
  config.log_every_steps = 20
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 200
  return config
