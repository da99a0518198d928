r"""Demo: camera pose on lsattn's synthetic room (7-Scenes layout), CPU-sized.

  python train.py --config=configs/demo_pose.py --workdir=runs/demo_pose

Writes the synthetic scene (4 training and 1 test sequence of 200 frames,
~40 s), builds the dataset, trains the layer-spatial attention model with a
frozen, randomly initialised GoogLeNet (no weights are downloaded) on
112x112 crops for 1250 steps, and evaluates the test sequence. Measured
(2026-11-25, 2-core machine, the README's first command from a clean
checkout: install, data, training, evaluation, figures): 9 min 20 s; median
translation 0.169 m against 0.414 m for the mean-pose baseline (0.41x),
median rotation 4.96 deg against 16.65 deg (0.30x). The run is deterministic
on one machine, but its errors move with floating-point rounding: with 1000
steps they were 0.199, 0.181 and 0.228 m for three numerically different
versions of the same function (YNNPACK or XLA convolutions, LRN power as a
pow or as rsqrt; the last above the 0.207 m half-baseline line), hence 1250.
With 1250 steps and XLA's default CPU kernels
(``--config.xla_cpu_ynn_fusions=xla_default``): 0.159 m and 5.21 deg.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = "seven_scenes/synthetic_room"
  config.data_dir = "runs/data"
  # The room is rendered at 4:3; stored at 256x455 (the paper's pose size),
  # resized back to 4:3 so that crops keep most of the view.
  config.resize_size = (120, 160)
  config.image_size = 112
  config.beta = 3.0  # small: random frozen features need the position term's gradient
  config.freeze_backbone = True
  config.hidden_size = 96  # the paper's; 48 reached only 0.33 m in 600 steps
  config.projection_size = 96
  config.num_recurrent_steps = 3
  config.batch_size = 16
  config.eval_batch_size = 30
  config.learning_rate = 1e-3
  config.learning_rate_schedule = "cosine"
  config.warmup_steps = 20
  config.num_train_steps = 1250  # 1000 left the translation criterion within rounding of failing
  config.log_every_steps = 20
  config.eval_every_steps = 250
  config.checkpoint_every_steps = 250
  return config
