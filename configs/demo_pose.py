r"""Demo: camera pose on lsattn's synthetic room (7-Scenes layout), CPU-sized.

  python train.py --config=configs/demo_pose.py --workdir=runs/demo_pose

Writes the synthetic scene (4 training and 1 test sequence of 200 frames,
~40 s), builds the dataset, trains the layer-spatial attention model with a
frozen, randomly initialised GoogLeNet (no weights are downloaded) on
112x112 crops for a fixed 1250 steps (the budget was fixed before the
measurements below and is not tuned on them), and evaluates the test
sequence with the last checkpoint. All values here are ours (a CPU-sized
demo), not the paper's.

Measured (2026-11-30, 2-core machine, from a clean checkout, with the
paper's model of issue 14: initial state from the image, per-step batch
norm, a head per step, the multi-convolution C_A), seeds 0, 1, 2 (one
rendered room, the seed-0 one, shared by the three runs through
``data_dir``; the seed changes initialisation, Gumbel noise and batch
order). Median errors of the final step, mean-pose baseline 0.414 m and
16.65 deg:

  seed 0: 0.243 m, 5.39 deg   seed 1: 0.281 m, 8.11 deg   seed 2: 0.212 m, 5.79 deg
  mean +- sd: 0.245 +- 0.035 m (0.59x the baseline), 6.43 +- 1.47 deg (0.39x)
  per step (mean over seeds): step 1 0.369 m / 9.22 deg, step 2 0.280 m / 7.41 deg,
  step 3 0.245 m / 6.43 deg

Seed 0 took 14 min 19 s of training and evaluation (seeds 1 and 2 ran
beside other work). The model before issue 14 reached 0.169 m / 4.96 deg
with seed 0 on 2026-11-25 (one seed, another machine): the faithful model
is not better on this demo. One comparison run, same checkout, room and
seed 0, with ``--config.initial_state=constant`` (the only change): 0.156 m,
5.14 deg (per step 0.285 / 0.199 / 0.156 m), below all three seeds of the
image-conditioned state. One seed proves little, but on this demo (random,
frozen features) [47]'s initial state costs accuracy rather than buying it;
the cause is not yet isolated. In every run step 1 chose Conv-3B for
every test image (its logits differ per image; their argmax does not).
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
