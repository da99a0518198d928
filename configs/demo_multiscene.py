r"""Demo: one model for three scenes, lsattn's embedded rooms (7-Scenes layout), CPU-sized.

  python train.py --config=configs/demo_multiscene.py --workdir=runs/demo_multiscene

The rooms ``seven_scenes/synthetic_study``, ``synthetic_hall`` and
``synthetic_gallery`` (lsattn/data/synthetic/rooms.py) differ in size,
textures and layout; each is written (4 training and 1 test sequence of 200
frames, ~40 s a room) and built as its own dataset. One model is trained for
all three (lsattn/data/scenes.py, lsattn/model.py): backbone and
recurrent core shared, a scene classifier, one pose head per scene; the loss
is the true scene's pose loss plus the scene cross-entropy; batches give each
scene the same number of rows (``scene_sampling='equal'``; 'by_size' samples
in proportion to the scenes' training images). eval/metrics.json holds, beside
the pooled numbers, ``per_scene`` (medians, thresholds, scene accuracy, the
oracle: each image through its true scene's head), ``mean_over_scenes`` (the
mean of the per-scene medians, what papers print) and ``scene_accuracy``.

The recipe is configs/demo_pose.py's (frozen EfficientNet-Lite0 with ImageNet
weights from its pip package, 112x112 crops, the same beta and learning
rate), with three times its 1250 steps: the same steps per scene as one
demo_pose run per scene. All values are ours, not the paper's (which trains
one model per scene) nor MS-Transformer's; this recipe has not been run to
its end in the commit that adds it.

Tiny check at the test suite's shapes (writing the three rooms at full size takes
about 2 minutes, then the run seconds; tests/test_multiscene.py writes few-frame
rooms into --config.manual_dir instead):

  python train.py --config=configs/demo_multiscene.py --workdir=/tmp/ms \
      --config.backbone=tiny_cnn --config.backbone_weights='' --config.num_train_steps=4 \
      --config.hidden_size=8 --config.projection_size=8 --config.resize_size='(40, 64)' \
      --config.image_size=32
"""

from configs import demo_pose

SCENES = ("seven_scenes/synthetic_study", "seven_scenes/synthetic_hall",
          "seven_scenes/synthetic_gallery")


def get_config():
  config = demo_pose.get_config("room")
  config.scenes = SCENES
  config.dataset = SCENES[0]
  config.scene_sampling = "equal"
  config.num_train_steps = 3 * 1250
  config.eval_every_steps = 750
  config.checkpoint_every_steps = 250
  return config
