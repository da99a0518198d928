r"""The ablation of paper Table 3: ``configs/ablation.py:<variant>,<dataset config>``.

  python train.py --config=configs/ablation.py:spatial_4e,office --workdir=runs/abl

Variants (layers Conv-{3B, 4E, 5B} as in the paper):
  spatial_3b | spatial_4e | spatial_5b  spatial attention only, one fixed layer
  layer_only                            layer selection only (no spatial attention)
  layer_spatial                         both (the full model)
Datasets as in the paper: old_hospital, office, tum_lsi, mit67. Each run
takes the data, protocol, training budget and beta of the dataset's config
(cambridge.py, seven_scenes.py, tum_lsi.py, mit67.py): the whole official
training split, a fixed budget, the last checkpoint evaluated once on the
test split. Those configs list which of these values are the paper's and
which are ours; the spatial-only and layer-only variants are ours in every
detail the paper does not give (same core, one branch switched off:
lsattn/nn/core.py).

The same variants on lsattn's embedded data, with the baselines and seeds,
in one command: ``python benchmarks/ablation.py`` (README, "Results").

Paper (median m/deg, or mean accuracy), columns in the order above:
  Old Hospital 1.49/4.29, 1.42/4.37, 1.76/4.44, 2.36/6.28, 1.36/3.95
  Office       0.27/7.37, 0.26/7.35, 0.28/7.52, 0.33/7.97, 0.29/8.02
  TUM-LSI      1.21/3.26, 1.13/3.66, 1.12/3.66, 5.27/10.8, 0.98/2.74
  MIT-67       61.6, 74.5, 74.2, 76.4, 77.1 %
"""

from configs import cambridge, mit67, seven_scenes, tum_lsi

VARIANTS = ("spatial_3b", "spatial_4e", "spatial_5b", "layer_only", "layer_spatial")


def get_config(arg="layer_spatial,office"):
  variant, _, dataset = arg.partition(",")
  if dataset == "old_hospital":
    config = cambridge.get_config("old_hospital")
  elif dataset == "office":
    config = seven_scenes.get_config("office")
  elif dataset == "tum_lsi":
    config = tum_lsi.get_config()
  elif dataset == "mit67":
    config = mit67.get_config()
  else:
    raise ValueError(f"Unsupported ablation dataset {dataset!r}; expected old_hospital, "
                     f"office, tum_lsi or mit67")
  config.candidate_layers = ("3b", "4e", "5b")
  if variant.startswith("spatial_"):
    config.model_variant = "spatial_only"
    config.fixed_layer = variant.removeprefix("spatial_")
  elif variant in ("layer_only", "layer_spatial"):
    config.model_variant = variant
  else:
    raise ValueError(f"Unsupported ablation variant {variant!r}; expected one of {VARIANTS}")
  return config
