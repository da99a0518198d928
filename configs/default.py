r"""Default hyper-parameters: the paper's pose model, and our values where it is silent.

Every other config imports this one and overrides fields. Launch:

  python train.py --config=configs/default.py --workdir=runs/x \
      --config.dataset=seven_scenes/chess --config.manual_dir=/data/7scenes

The dataset configs (seven_scenes.py, cambridge.py, tum_lsi.py, mit67.py)
set beta, the protocol and the training budget; the values below are shared.

Paper (what it states, and where):

* GoogLeNet on Places (Caffe weights) as feature extractor, trained end to
  end with Adam (3.4, supplementary C): ``backbone='caffe'``,
  ``backbone_weights`` (the user's file), ``freeze_backbone=False``.
* Candidate layers Conv-{3B, 4C, 4E, 5B} (3.4: ``candidate_layers`` (),
  GoogLeNet's four taps); Conv-LSTM hidden size 96
  (3.4, supplementary C); N = 3 steps for pose, 2 for classification (4.2).
* Multi-convolutions, their branches "stacked": Conv-LSTM kernels 1/3/5/7,
  attention mask kernels 1/3/5 (supplementary C.1); leaky ReLU in spatial attention (supplementary
  A; eq. 1 writes ReLU).
* Layer selection: pooled state, a gate embedding E << C, logits,
  straight-through Gumbel-softmax whose temperature is "progressively
  lowered" (3.2, supplementary A); argmax without noise at test (3.2).
* Batch norm "with default parameters" in layer selection and spatial
  attention (3.4).
* Initial state learned "similar to [47]" (supplementary C; [47] predicts
  c0, h0 from the image's mean features): ``initial_state='image'``.
* After N steps the hidden states are concatenated, average-pooled and fed
  to one fully connected layer (3.3): ``step_loss='final'``. "At each time
  step the LSTM output is used for prediction" (supplementary A; step rows
  in tables 1, 7, 8).
* Loss eq. 4 (pose; beta per dataset, ranges in supplementary C; so
  ``learned_loss_weighting=False``) or eq. 5 (classification); batch 40
  (supplementary C).
* Images resized to 256x455 (pose) or 256x256 (classification), 224x224
  crops, random in training and central at test, horizontal flips for
  classification only, per-channel mean subtraction (4.1, supplementary C).
* Training on the official training split, evaluation on the test split
  (supplementary B): ``validation_split='none'``.

Ours (the paper is silent):

* ``learning_rate`` 1e-4, constant, no warm-up (the paper names Adam only).
* Gumbel temperature: exponential decay from ``temperature_init`` 1.0 to
  ``temperature_final`` 0.5 over the whole run (``temperature_decay_steps``
  0), then constant: the end points of Jang et al.'s annealing
  (tau = max(0.5, exp(-rt)), the paper's reference [15]).
* ``num_train_steps`` 30,000 here; each dataset config sets its own budget
  and says why. The checkpoint evaluated is the last one (the paper does
  not say which it reported); the test split never chooses one.
* ``gate_embedding_size`` E = 16 (the paper: only E << C).
* ``attention_branch_channels`` 4: channels of each 1x1/3x3/5x5 branch of the
  mask head C_A before the non-linearity (lsattn/attention.py); the
  Conv-LSTM's four branches give hidden_size / 4 channels of every gate each
  (lsattn/convlstm.py).
* The leaky-ReLU slope 0.01 (``jax.nn.leaky_relu``'s default; TensorFlow's
  ``tf.nn.leaky_relu`` defaults to 0.2).
* ``projection_size`` D = 96 and the common grid (the median spatial size of
  the candidates, 14x14 at 224x224) on which maps of different sizes and
  widths enter one Conv-LSTM (lsattn/core.py).
* The form of the image-conditioned initial state: one dense layer with tanh
  each for c0 and h0, from the spatial means of the candidate maps
  (lsattn/convlstm.py). ``initial_state='constant'`` (learned constant
  vectors) is for comparison.
* Per-step heads (head t reads the pooled states of steps 1..t,
  lsattn/model.py) and ``step_loss='mean'`` (the mean of their losses).
* Batch norm momentum 0.99 and epsilon 1e-3 (the defaults of TensorFlow's
  ``tf.layers.batch_normalization``: our reading of "default parameters"),
  running statistics per recurrent step, scale and offset shared by the
  steps (lsattn/core.py).
* ``beta`` 500 here (inside both pose ranges); the dataset configs choose
  per scene inside the paper's range.
* ``channel_mean`` () subtracts the training split's mean colour, one value
  per channel (a mean *image* per channel is the other reading of 4.1).
* Initialisation: LeCun-normal kernels, the position head's bias at the
  training split's mean position, the orientation's at the identity.
* ``eval_batch_size``, ``seed``, ``dtype`` float32, the log, checkpoint and
  compilation settings.

Keys (flax-examples names where one exists):

* data: ``channel_mean`` (RGB to subtract; () = the train split's mean),
  ``dataset`` ('<builder>/<config>', e.g. 'seven_scenes/chess'),
  ``data_dir`` (where tfds keeps built datasets), ``manual_dir`` (the user's
  download; for synthetic configs lsattn writes it), ``resize_size`` (H, W
  before cropping), ``image_size`` (square crop side), ``random_flip``
  (classification only), ``validation_split`` ('none': train on the whole
  training split and evaluate the last checkpoint, the paper's protocol;
  'auto': hold validation examples out of training and evaluate the best
  checkpoint on them; see lsattn/data/splits.py).
* model: ``task``, ``num_classes``, ``model_variant`` ('layer_spatial' |
  'spatial_only' | 'layer_only' | 'posenet' | 'lstm_posenet' (LSTM-PoseNet,
  Walch et al. [42]) | 'googlenet' (GoogLeNet classification baseline
  [38])), ``fixed_layer`` (the layer of 'spatial_only'; '' = the backbone's
  deepest tap, GoogLeNet's '5b'), ``candidate_layers`` (tap names of the
  backbone; () = all its taps, GoogLeNet's '3b', '4c', '4e', '5b'),
  ``backbone`` (a member of lsattn/backbones: 'caffe' |
  'torchvision', GoogLeNet's two forms), ``backbone_weights`` (a file the
  backbone reads: for GoogLeNet a Caffe .caffemodel, an lsattn or
  Caffe-named .npz, a Caffe pickle, or a torchvision .pth; or a name the
  backbone declares, a file a pip package ships, such as 'imagenet'; '' =
  random init), ``torchvision_transform_input`` ('auto': on
  when torchvision weights are loaded, as torchvision's pretrained GoogLeNet
  expects; 'on' | 'off'), ``freeze_backbone``, ``num_recurrent_steps``,
  ``hidden_size``, ``projection_size``, ``convlstm_kernel_sizes``,
  ``attention_kernel_sizes``, ``gate_embedding_size``,
  ``attention_nonlinearity`` ('leaky_relu' | 'relu'),
  ``attention_branch_channels``, ``initial_state`` ('image' | 'constant'),
  ``dtype`` ('float32' | 'bfloat16': mixed precision for the whole model.
  Backbone, recurrent core (Conv-LSTM gate convolutions, attention, layer
  selection), pooling and heads compute in bfloat16; parameters (cast at
  use), gradients, optimiser state, batch-norm statistics, the loss and
  every model output stay float32, and so do the Gumbel softmax (forward
  and backward), the attention softmax, the Conv-LSTM cell state c and the
  heads' accumulation (ARCHITECTURE.md, "Precision"). On CPU bfloat16 is not
  faster: benchmarks/README.md).
* loss: ``beta`` (eq. 4), ``learned_loss_weighting`` (Kendall 2017),
  ``step_loss`` ('final': the final step's prediction only, section 3.3 |
  'mean': the mean of the per-step heads' losses).
* optimisation: Adam; ``learning_rate``, ``learning_rate_schedule``
  ('constant' | 'cosine'), ``warmup_steps``; Gumbel temperature
  ``temperature_schedule`` ('exponential' | 'linear' | 'cosine' |
  'constant') from ``temperature_init`` to ``temperature_final`` over
  ``temperature_decay_steps`` (0 = num_train_steps).
* loop: ``seed``, ``batch_size`` (global), ``eval_batch_size``,
  ``num_train_steps``, ``log_every_steps``, ``eval_every_steps``
  (validation), ``checkpoint_every_steps``, ``keep_checkpoints``,
  ``nonfinite_policy`` ('skip' | 'stop') with ``max_consecutive_nonfinite``,
  ``num_figure_examples``, ``eval_retrieval_baselines`` (pose: the final
  evaluation's nearest-training-image baselines, ``knn_*`` in metrics.json;
  one more backbone pass over both splits), ``eval_figures`` (the final
  evaluation's figures in eval/), ``jax_distributed``, ``heartbeat_timeout_seconds``
  (multi-process jobs: when a process dies during a collective the others
  stop at once with a one-line error; a process that stops answering
  otherwise is declared dead after this many seconds and the job stops;
  README, 'Several devices and hosts').
* compilation: ``compilation_cache_dir`` (JAX's persistent compilation
  cache, so a resumed or repeated run does not compile again; '' = off; the
  environment's ``JAX_COMPILATION_CACHE_DIR`` wins), ``scan_unroll``,
  ``xla_cpu_ynn_fusions`` (see
  lsattn/compilation.py; ignored off CPU and with ``kernels='generic'``),
  ``kernels`` ('auto' (default): 'cpu' on the CPU backend, 'generic'
  elsewhere | 'cpu': separable max pooling with its own gradient, the mask
  head as one matmul plus shifted sums, 1x1 convolutions as matmuls, the
  YNNPACK options; the formulations measured fastest on CPU | 'generic':
  XLA's own ``reduce_window`` pooling and convolutions, no CPU options;
  same results either way), ``remat`` ('none' (default) | 'blocks': each
  inception block of the backbone | 'steps': each recurrent step | 'both'
  recompute their activations in the backward pass (``jax.checkpoint``,
  saving nothing inside; ours): less memory, more compute, same results;
  measured in benchmarks/README.md).
"""

from lsattn import defaults


def get_config():
  return defaults.get_config()
