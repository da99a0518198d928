r"""Your own scene: ``configs/own_scene.py:<name>`` (any name; it names the built dataset).

  python train.py --config=configs/own_scene.py:my_room --workdir=runs/my_room \
      --config.manual_dir=/data/my_room [--config.beta=250]
  python predict.py --config=configs/own_scene.py:my_room --workdir=runs/my_room photos/

``manual_dir`` is the scene folder: the images (sub-folders are sequences)
and one pose file, ``poses.csv`` (``image,x,y,z,qw,qx,qy,qz[,split]``,
camera centre and camera-to-world quaternion), ``dataset_train.txt`` +
``dataset_test.txt`` (Cambridge format) or a COLMAP text model's
``images.txt`` (see `lsattn.data.builders.OwnScene`). The first run builds
``own_scene/<name>`` in ``data_dir``; later runs (and predict.py) reuse it,
so after changing the scene's files build it under a new name.

Splits: the CSV's ``split`` column or the Cambridge pair; otherwise the last
sequence, or the final 20% of the frames behind a gap, is the test split
(`lsattn.data.splits.holdout_split`). ``validation_split='auto'`` then
carves the validation set from the training sequences the same way (or
takes the ``val`` rows); it is never trained on and chooses the checkpoint,
and the test split is evaluated once, at the end (eval/metrics.json:
``protocol`` 'validation_selected'). ``--config.validation_split=none``
is the paper configs' protocol instead: the whole training split, the last
checkpoint of ``num_train_steps`` (``protocol``
'whole_train_split_last_checkpoint').

beta weighs orientation against position error (paper eq. 4) and must be
tuned per scene: the paper used 120 to 750 indoors and 250 to 2000 outdoors
(PoseNet's rule: about the ratio of typical position error, in metres, to
orientation error, in quaternion units). Start with 500 for a room and
try half and double, choosing on the validation metrics in TensorBoard,
never on the test split. Other defaults are configs/default.py's: the
paper's pose model where the paper gives a value, ours where it does not
(its docstring says which), with its 30,000 steps. Give
--config.backbone_weights for a pretrained GoogLeNet (README), or
--config.freeze_backbone=True to train faster without one.
"""

from configs import default


def get_config(name="my_scene"):
  config = default.get_config()
  config.dataset = f"own_scene/{name}"
  config.beta = 500.0
  config.validation_split = "auto"
  return config
