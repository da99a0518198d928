r"""The PoseNet baseline of paper Table 1: Conv-5B, no attention, direct regression.

  python train.py --config=configs/posenet.py:seven_scenes/chess --workdir=runs/posenet_chess

Same data, protocol, training budget and beta as the attention model's
config for the scene (the argument is the dataset name, '<builder>/<scene>').

Paper: Table 1's PoseNet column (e.g. chess 0.32 m, 6.08 deg) cites [21];
the paper does not say that it retrained PoseNet. Ours: retraining it here,
under the attention model's protocol and our values (learning rate, budget,
beta; no dropout or auxiliary branches: lsattn/nn/baselines.py), for a
comparison in which only the model differs.
"""

from configs import cambridge, seven_scenes, tum_lsi


def get_config(dataset="seven_scenes/chess"):
  builder, _, scene = dataset.partition("/")
  if builder == "seven_scenes":
    config = seven_scenes.get_config(scene)
  elif builder == "cambridge_landmarks":
    config = cambridge.get_config(scene)
  elif builder == "tum_lsi":
    config = tum_lsi.get_config()
  else:
    raise ValueError(f"Unsupported pose dataset {dataset!r}; expected seven_scenes/<scene>, "
                     f"cambridge_landmarks/<scene> or tum_lsi")
  config.model_variant = "posenet"
  return config
