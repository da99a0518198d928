r"""Cambridge Landmarks, one scene per run (paper Table 1): ``configs/cambridge.py:<scene>``.

  python train.py --config=configs/cambridge.py:kings_college --workdir=runs/kings \
      --config.manual_dir=/data/cambridge --config.backbone_weights=/weights/googlenet_places.npz

Scenes: kings_college, old_hospital, shop_facade, st_marys_church,
great_court, street. 8,000 steps of batch 40: many hours of train steps on a
2-core CPU (benchmarks/results/2026-11-25-cpu.md, "Paper shapes", has the step time); a GPU
is the intended hardware. eval/metrics.json's ``protocol`` is
'whole_train_split_last_checkpoint'.

Paper (4.1, supplementary B and C): one model per scene, the scenes of
PoseNet [21] and LSTM-PoseNet [42] with their split (trained on
dataset_train.txt, evaluated on dataset_test.txt); the model, images,
batch and optimiser of configs/seven_scenes.py's "Paper" list; beta between
250 and 2000. Median (m, deg) at step 3: KingsCollege 0.90/3.70,
OldHospital 1.36/3.95, ShopFacade 0.91/5.29, StMarysChurch 1.42/6.07,
Street 13.9/30.0 (GreatCourt not reported).

Ours (the paper is silent):

* beta per scene (below), inside the paper's range: larger, more distant
  scenes, larger beta.
* The budget: 8,000 steps (320,000 images) on the whole training split,
  then the last checkpoint, evaluated once on the test split. PoseNet's
  training lists hold 231 (ShopFacade), 895 (OldHospital), 1,220
  (KingsCollege), 1,487 (StMarysChurch), 1,532 (GreatCourt) and 3,015
  (Street) images: 8,000 steps are 262 epochs of KingsCollege, 215 of
  StMarysChurch, 358 of OldHospital, 106 of the largest (Street) and 1,385
  of ShopFacade. As for 7-Scenes, about 200 epochs of a typical scene and
  at least 100 of the largest, one budget for every scene.
* Everything configs/default.py lists as ours.

Validation-based checkpoint selection instead (the last training sequence
held out, never trained on; ``protocol`` 'validation_selected'):
--config.validation_split=auto.
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
  config.validation_split = "none"  # the paper trains on the whole official training split
  config.num_train_steps = 8_000  # ours: see the docstring
  return config
