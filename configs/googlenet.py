r"""The GoogLeNet baseline of paper Table 2 (Szegedy et al. [38]) on MIT-67.

  python train.py --config=configs/googlenet.py --workdir=runs/googlenet_mit67 \
      --config.manual_dir=/data/mit67 --config.backbone_weights=/weights/googlenet_places.npz

The optional argument is the dataset; only 'mit67' (the default) is
supported. The model (lsattn/nn/baselines.py): GoogLeNet's own classifier, a
dense layer on the average-pooled Conv-5B (1024 values); no attention, no
recurrence.

Paper: Table 2's GoogLeNet [38] row, 73.7 % mean accuracy (the attention
model: 77.1 % at step 2), under the MIT-67 protocol of configs/mit67.py
(official split, Places mean, 224x224 crops of 256x256 images with flips,
cross-entropy). Ours: retraining the baseline here with everything else
taken from configs/mit67.py (budget, optimiser, metric, protocol), so that
only the model differs; GoogLeNet's dropout (0.4) before its classifier is
left out. Run time not measured (per step below the attention model's: same
backbone, no attention core).
"""

from configs import mit67


def get_config(dataset=None):
  if dataset not in (None, "mit67"):
    raise ValueError(f"Unsupported GoogLeNet baseline dataset {dataset!r}; expected mit67")
  config = mit67.get_config()
  config.model_variant = "googlenet"
  return config
