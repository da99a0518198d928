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
* ``backbone_learning_rate_scale`` 1.0: one rate for the whole model, the
  backbone included (the paper names one optimiser and no second rate).
* Gumbel temperature: exponential decay from ``temperature_init`` 1.0 to
  ``temperature_final`` 0.5 over the whole run (``temperature_decay_steps``
  0), then constant: the end points of Jang et al.'s annealing
  (tau = max(0.5, exp(-rt)), the paper's reference [15]).
* ``num_train_steps`` 30,000 here; each dataset config sets its own budget
  and says why. The checkpoint evaluated is the last one (the paper does
  not say which it reported); the test split never chooses one.
* ``gate_embedding_size`` E = 16 (the paper: only E << C).
* ``attention_branch_channels`` 4: channels of each 1x1/3x3/5x5 branch of the
  mask head C_A before the non-linearity (lsattn/nn/attention.py); the
  Conv-LSTM's four branches give hidden_size / 4 channels of every gate each
  (lsattn/nn/convlstm.py).
* The leaky-ReLU slope 0.01 (``jax.nn.leaky_relu``'s default; TensorFlow's
  ``tf.nn.leaky_relu`` defaults to 0.2).
* ``projection_size`` D = 96 and the common grid (the median spatial size of
  the candidates, 14x14 at 224x224) on which maps of different sizes and
  widths enter one Conv-LSTM (lsattn/nn/core.py).
* The form of the image-conditioned initial state: one dense layer with tanh
  each for c0 and h0, from the spatial means of the candidate maps
  (lsattn/nn/convlstm.py). ``initial_state='constant'`` (learned constant
  vectors) is for comparison.
* Per-step heads (head t reads the pooled states of steps 1..t,
  lsattn/model.py) and ``step_loss='mean'`` (the mean of their losses).
* Batch norm momentum 0.99 and epsilon 1e-3 (the defaults of TensorFlow's
  ``tf.layers.batch_normalization``: our reading of "default parameters"),
  running statistics per recurrent step, scale and offset shared by the
  steps (lsattn/nn/core.py).
* ``beta`` 500 here (inside both pose ranges); the dataset configs choose
  per scene inside the paper's range.
* ``channel_mean`` () subtracts the training split's mean colour, one value
  per channel (a mean *image* per channel is the other reading of 4.1).
* Initialisation: LeCun-normal kernels, the position head's bias at the
  training split's mean position, the orientation's at the identity.
* ``eval_batch_size``, ``seed``, ``dtype`` float32, the log, checkpoint and
  compilation settings.

Keys, each declared once in `lsattn.config_schema.KEYS` (default, allowed values, one
line, whether it is a run key: one that eval, predict, export and a resume may
not change); the listing below is made from those declarations:
"""

from lsattn import config_schema

__doc__ += config_schema.listing()


def get_config():
  return config_schema.get_config()
