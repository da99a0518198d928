r"""Demo: scene classification on lsattn's synthetic MIT-67-layout set, CPU-sized.

  python train.py --config=configs/demo_scenes.py --workdir=runs/demo_scenes

Writes 6 synthetic classes (40 images each), builds the dataset, trains with
a frozen EfficientNet-Lite0 with ImageNet weights (from pip, as in
configs/demo_pose.py) on 96x96 crops, N = 2 steps, and evaluates the test
images. The frozen random GoogLeNet it used first: ``--config.backbone=caffe
--config.backbone_weights=''``. Measured results:
benchmarks/results/2026-11-30-demo-runs.md.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = "mit67/synthetic"
  config.data_dir = "runs/data"
  config.task = "classification"
  config.num_classes = 6
  config.resize_size = (112, 112)
  config.image_size = 96
  config.random_flip = True
  config.backbone = "efficientnet_lite0"
  config.backbone_weights = "imagenet"  # the pip package's file
  config.freeze_backbone = True
  config.hidden_size = 32
  config.projection_size = 32
  config.num_recurrent_steps = 2
  config.batch_size = 20
  config.eval_batch_size = 20
  config.learning_rate = 1e-3
  config.learning_rate_schedule = "cosine"
  config.num_train_steps = 300
  config.log_every_steps = 20
  config.eval_every_steps = 100
  config.checkpoint_every_steps = 100
  return config
