r"""Cambridge Landmarks, one scene per run (paper Table 1): ``configs/cambridge.py:<scene>``.

  python train.py --config=configs/cambridge.py:kings_college --workdir=runs/kings \
      --config.manual_dir=/data/cambridge

Scenes: kings_college, old_hospital, shop_facade, st_marys_church,
great_court, street. Protocol as configs/seven_scenes.py: per-scene
training on PoseNet's dataset_train.txt, one evaluation on dataset_test.txt,
validation carved from the training sequences. The paper gives beta only as
a range for Cambridge (250 to 2000); the per-scene values below are our
choices within it (larger, more distant scenes take larger beta).

Paper, median (m, deg) at step 3: KingsCollege 0.90/3.70, OldHospital
1.36/3.95, ShopFacade 0.91/5.29, StMarysChurch 1.42/6.07, Street 13.9/30.0
(GreatCourt not reported).
"""

from configs import default

BETA = {"kings_college": 500.0, "old_hospital": 1500.0, "shop_facade": 250.0,
        "st_marys_church": 1000.0, "great_court": 2000.0, "street": 2000.0}


def get_config(scene="kings_college"):
  if scene not in BETA:
    raise ValueError(f"Unsupported Cambridge scene {scene!r}; expected one of {sorted(BETA)}")
  config = default.get_config()
  config.dataset = f"cambridge_landmarks/{scene}"
  config.beta = BETA[scene]
  config.validation_split = "auto"
  return config
