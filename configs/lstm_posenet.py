r"""The LSTM-PoseNet baseline of paper Table 1 (Walch et al. [42], ICCV 2017).

  python train.py --config=configs/lstm_posenet.py:seven_scenes/chess \
      --workdir=runs/lstm_posenet_chess --config.manual_dir=/data/7scenes \
      --config.backbone_weights=/weights/googlenet_places.npz

The argument is the dataset, '<builder>/<scene>' as in configs/posenet.py:
seven_scenes/<scene>, cambridge_landmarks/<scene> or tum_lsi. The model
(lsattn/nn/baselines.py): GoogLeNet Conv-5B average-pooled, a 2048-wide fully
connected layer, reshaped to 32 x 64 and swept by four LSTMs (up, down, left,
right, 128 hidden units each), their final hidden states concatenated and
regressed to the pose; no attention, no recurrence over layers.

Paper: Table 1 quotes [42]'s published numbers (it did not retrain
LSTM-PoseNet) and keeps beta equal to its baselines' (section 3.3.1); the
architecture is [42]'s (lsattn/nn/baselines.py says which of its details are
[42]'s and which are ours). Ours: retraining it here with everything else
taken from the attention model's config for the same dataset
(configs/seven_scenes.py, cambridge.py, tum_lsi.py: beta, training budget,
optimiser, crops, validation protocol), so that only the model differs;
[42]'s own training schedule, dropout and auxiliary branches are not
reproduced. Run time not measured (per step below the attention model's:
same backbone, no attention core).

Paper Table 1, LSTM-PoseNet column (median m, deg):
  Cambridge: KingsCollege 0.99/3.65, OldHospital 1.51/4.29, ShopFacade
    1.18/7.44, StMarysChurch 1.52/6.68 (Street, GreatCourt not reported).
  7-Scenes: chess 0.24/5.77, fire 0.34/11.9, heads 0.21/13.7, office
    0.30/8.08, pumpkin 0.33/7.00, redkitchen 0.37/8.83, stairs 0.40/13.7.
  TUM-LSI: 1.31/2.79.
"""

from configs import posenet


def get_config(dataset="seven_scenes/chess"):
  config = posenet.get_config(dataset)  # the same data, protocol and beta
  config.model_variant = "lstm_posenet"
  return config
