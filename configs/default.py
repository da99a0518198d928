"""Default hyper-parameters: the paper's pose model (supplementary C).

Every other config imports this one and overrides fields. Launch:

  python train.py --config=configs/default.py --workdir=runs/x \
      --config.dataset=seven_scenes/chess --config.manual_dir=/data/7scenes

Keys (flax-examples names where one exists):

* data: ``channel_mean`` (RGB to subtract; () = the train split's mean),
  ``dataset`` ('<builder>/<config>', e.g. 'seven_scenes/chess'),
  ``data_dir`` (where tfds keeps built datasets), ``manual_dir`` (the user's
  download; for synthetic configs lsattn writes it), ``resize_size`` (H, W
  before cropping; paper 256x455 for pose, 256x256 for classification),
  ``image_size`` (square crop side, 224), ``random_flip`` (classification
  only), ``validation_split`` (see lsattn/data/splits.py).
* model: ``task``, ``num_classes``, ``model_variant``
  ('layer_spatial' | 'spatial_only' | 'layer_only' | 'posenet'),
  ``fixed_layer``, ``candidate_layers``, ``backbone`` ('caffe' | 'torchvision'),
  ``backbone_weights`` (a .npz, Caffe pickle or torchvision .pth; '' = random
  init), ``freeze_backbone``, ``num_recurrent_steps``, ``hidden_size``, ...
* loss: ``beta`` (eq. 4), ``learned_loss_weighting`` (Kendall 2017).
* optimisation: Adam; ``learning_rate``, ``learning_rate_schedule``
  ('constant' | 'cosine' | 'exponential'), ``warmup_steps``;
  Gumbel temperature ``temperature_schedule`` ('exponential' | 'linear' |
  'cosine' | 'constant') from ``temperature_init`` to ``temperature_final``
  over ``temperature_decay_steps`` (0 = num_train_steps).
* loop: ``seed``, ``batch_size`` (global; paper 40), ``eval_batch_size``,
  ``num_train_steps``, ``log_every_steps``, ``eval_every_steps``,
  ``checkpoint_every_steps``, ``keep_checkpoints``, ``nonfinite_policy``
  ('skip' | 'stop') with ``max_consecutive_nonfinite``.
* compilation: ``scan_unroll``, ``xla_cpu_ynn_fusions`` (see
  lsattn/compilation.py; ignored off CPU).
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  # Data.
  config.dataset = "seven_scenes/chess"
  config.data_dir = "~/tensorflow_datasets"
  config.manual_dir = ""
  config.resize_size = (256, 455)
  config.image_size = 224
  config.random_flip = False
  config.channel_mean = ()  # () = the train split's mean, stored with the dataset
  config.validation_split = "none"  # or "auto": see lsattn/data/splits.py
  # Model.
  config.task = "pose"
  config.num_classes = 0
  config.model_variant = "layer_spatial"
  config.fixed_layer = "5b"
  config.candidate_layers = ("3b", "4c", "4e", "5b")
  config.backbone = "caffe"
  config.backbone_weights = ""
  config.freeze_backbone = False
  config.num_recurrent_steps = 3
  config.hidden_size = 96
  config.projection_size = 96
  config.convlstm_kernel_sizes = (1, 3, 5, 7)
  config.attention_kernel_sizes = (1, 3, 5)
  config.gate_embedding_size = 16
  config.attention_nonlinearity = "leaky_relu"
  config.dtype = "float32"
  config.scan_unroll = 0  # 0: auto (full unroll on CPU, see CoreConfig)
  # Op kinds XLA's CPU compiler gives YNNPACK ('xla_default' = XLA's choice); its
  # convolutions are slower than XLA's own here (lsattn/compilation.py).
  config.xla_cpu_ynn_fusions = "dot,reduce"
  # Loss.
  config.beta = 500.0
  config.learned_loss_weighting = False
  # Optimisation.
  config.learning_rate = 1e-4
  config.learning_rate_schedule = "constant"
  config.warmup_steps = 0
  config.temperature_schedule = "exponential"
  config.temperature_init = 1.0
  config.temperature_final = 0.5
  config.temperature_decay_steps = 0
  # Loop.
  config.seed = 0
  config.batch_size = 40
  config.eval_batch_size = 40
  config.num_train_steps = 30_000
  config.log_every_steps = 100
  config.eval_every_steps = 5_000
  config.checkpoint_every_steps = 1_000
  config.keep_checkpoints = 3
  config.nonfinite_policy = "skip"
  config.max_consecutive_nonfinite = 10
  config.num_figure_examples = 4
  config.jax_distributed = False
  return config
