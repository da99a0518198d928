r"""TUM-LSI (paper Table 1): beta = 1000 (supplementary C).

  python train.py --config=configs/tum_lsi.py --workdir=runs/tum_lsi \
      --config.manual_dir=/data/tum_lsi

875 training and 220 test images of Walch et al.'s split (layout in
lsattn.data.formats.read_tum_lsi); one sequence, so validation_split='auto'
holds out the final block of training frames with a gap before it.

Paper, median at step 3: 0.98 m, 2.74 deg.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = "tum_lsi/default"
  config.beta = 1000.0
  config.validation_split = "auto"
  return config
