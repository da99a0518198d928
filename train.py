r"""Trains a layer-spatial attention model, then evaluates it on the test split.

  python train.py --config=configs/demo_pose.py --workdir=runs/demo_pose \
      [--config.num_train_steps=100 ...]

Re-running the same command on the same workdir resumes from its latest
checkpoint (a config that changes the model is refused). Outputs:
<workdir>/config.json (the resolved config, read by eval.py, predict.py and
export.py), <workdir>/checkpoints, <workdir>/tensorboard,
<workdir>/eval/{metrics.json, predictions.csv, *.png}.
"""

from lsattn import cli

if __name__ == "__main__":
  cli.train()
