r"""MIT-67 indoor scene classification (paper Table 2).

  python train.py --config=configs/mit67.py --workdir=runs/mit67 \
      --config.manual_dir=/data/mit67

Official split (80 train / 20 test images per class), 224x224 crops of
256x256 images with random horizontal flips, Places mean subtracted
(supplementary C), N = 2 recurrent steps, cross-entropy (eq. 5). The metric
is the mean per-class accuracy ('mean_class_accuracy').

Paper: 77.1 % at step 2 (GoogLeNet baseline 73.7 %).
"""

from configs import default

# Places205 GoogLeNet mean (Caffe BGR 105.49, 113.74, 116.06) as RGB.
PLACES_MEAN_RGB = (116.06, 113.74, 105.49)


def get_config():
  config = default.get_config()
  config.dataset = "mit67/full"
  config.task = "classification"
  config.num_classes = 67
  config.resize_size = (256, 256)
  config.random_flip = True
  config.channel_mean = PLACES_MEAN_RGB
  config.num_recurrent_steps = 2
  config.validation_split = "auto"
  return config
