"""Every config key and its default value: the schema `config_checks` checks against.

`configs/default.py` returns this config and documents each value (which
are the paper's and which are ours); every other config builds on it. The
schema lives in the package so that an installed lsattn, without the
repository's configs/ beside it, still refuses unknown keys.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """A fresh config with every key at its default (see configs/default.py)."""
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
  # () = every tap of the backbone (GoogLeNet: 3b, 4c, 4e, 5b), '' = its deepest (5b);
  # resolved to the names when the config is read (lsattn.backbones.default_layers).
  config.fixed_layer = ""
  config.candidate_layers = ()
  config.backbone = "caffe"  # a member of lsattn.backbones
  config.backbone_weights = ""  # a file, or a name the backbone declares ('imagenet')
  # torchvision's input remapping: 'auto' = on with a torchvision weights file (its
  # pretrained GoogLeNet was trained with it), off otherwise; 'on' | 'off' force it.
  config.torchvision_transform_input = "auto"
  config.freeze_backbone = False
  config.num_recurrent_steps = 3
  config.hidden_size = 96
  config.projection_size = 96
  config.convlstm_kernel_sizes = (1, 3, 5, 7)
  config.attention_kernel_sizes = (1, 3, 5)
  config.gate_embedding_size = 16
  config.attention_nonlinearity = "leaky_relu"
  config.attention_branch_channels = 4  # channels of each C_A branch (ours)
  config.initial_state = "image"  # "image" ([47]-style, from the taps) or "constant"
  config.dtype = "float32"  # or "bfloat16": mixed precision (ARCHITECTURE.md, Precision)
  config.scan_unroll = 0  # 0: auto (full unroll on CPU, see CoreConfig)
  # 'auto' = 'cpu' on the CPU backend, 'generic' elsewhere; 'cpu' | 'generic' force
  # the CPU-tuned or the plain XLA ops (same results; lsattn/compilation.py).
  config.kernels = "auto"
  # jax.checkpoint over the backbone's inception 'blocks', the recurrent 'steps',
  # 'both' or 'none': less memory, more compute, same results (lsattn/compilation.py).
  config.remat = "none"
  # Op kinds XLA's CPU compiler gives YNNPACK ('xla_default' = XLA's choice); its
  # convolutions are slower than XLA's own here (lsattn/compilation.py).
  config.xla_cpu_ynn_fusions = "dot,reduce"
  config.compilation_cache_dir = "~/.cache/lsattn/jax_compilation"  # '' = no cache
  # Loss.
  config.beta = 500.0
  config.learned_loss_weighting = False
  config.step_loss = "final"  # "final" (section 3.3) or "mean" over the per-step heads
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
  # The final evaluation's extras: the nearest-training-image baselines (pose; one more
  # backbone pass over the train and test splits) and the figures in eval/.
  config.eval_retrieval_baselines = True
  config.eval_figures = True
  config.jax_distributed = False
  # Multi-process jobs: a process silent this long counts as dead and the job stops
  # (jax.distributed's heartbeat timeout; a peer dying mid-collective is seen at once).
  config.heartbeat_timeout_seconds = 100
  return config
