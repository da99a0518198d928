"""Pretrained backbone weights through train.py's code: --config.backbone_weights=FILE.

Each case writes a weights file of random values, trains one frozen-backbone
step of the test config with it (`experiment.train_and_evaluate`, what
train.py runs, in this process: the flag itself is a plain string key), and
reads the backbone back from the saved checkpoint: it must be the file's
values, bit for bit (params and batch-norm
statistics).
"""

import pathlib

import jax
import orbax.checkpoint as ocp
import pytest

import caffe_writer  # tests/caffe_writer.py, beside this file
from lsattn import experiment
from lsattn.backbones.googlenet import readers as weights
import trained_runs


def _write_npz(folder: pathlib.Path) -> tuple[pathlib.Path, str, dict]:
  """An lsattn .npz of the Caffe variant: its run compiles the programs of the caffemodel
  case. Batch-norm statistics from a file reach the checkpoint in the torchvision-pth
  case here and, in every environment, in tests/test_demo_path.py (EfficientNet-Lite0's
  pip weights); the .npz format keeps them (tests/test_weights.py)."""
  variables = caffe_writer.random_variables("caffe", 10, seed=1)
  path = folder / "backbone.npz"
  weights.save_npz(path, variables)
  return path, "caffe", variables


def _write_caffemodel(folder: pathlib.Path) -> tuple[pathlib.Path, str, dict]:
  variables = caffe_writer.random_variables("caffe", 205, seed=2)
  path = folder / "googlenet_places205.caffemodel"
  caffe_writer.write_caffemodel(path, caffe_writer.caffe_blobs(variables), "layers")
  return path, "caffe", variables


def _write_pth(folder: pathlib.Path) -> tuple[pathlib.Path, str, dict]:
  torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install 'lsattn[torch]')")
  torchvision = pytest.importorskip(
      "torchvision", reason="torchvision is not importable (pip install 'lsattn[torch]')")
  torch.manual_seed(3)
  reference = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True,
                                           num_classes=10)
  with torch.no_grad():  # statistics that differ from a fresh initialisation
    for module in reference.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.uniform_(-0.5, 0.5)
        module.running_var.uniform_(0.5, 1.5)
  path = folder / "googlenet-1378be20.pth"
  torch.save(reference.state_dict(), path)
  return path, "torchvision", weights.load_torchvision_googlenet(path)


def _restored_state(workdir: pathlib.Path) -> tuple[int, dict]:
  """(step, TrainState as a dict of arrays) of the run's first checkpoint."""
  manager = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "meta"),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  step = min(manager.all_steps())
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return step, jax.device_get(restored.state)


@pytest.mark.parametrize("write", [_write_npz, _write_caffemodel, _write_pth],
                         ids=["lsattn-npz", "caffemodel", "torchvision-pth"])
def test_train_cli_starts_from_the_weights_file(data, tmp_path, write):
  path, backbone, variables = write(tmp_path)
  workdir = tmp_path / "run"
  experiment.train_and_evaluate(
      trained_runs.config(data, backbone=backbone, backbone_weights=str(path),
                          freeze_backbone=True, num_train_steps=1), workdir)

  step, state = _restored_state(workdir)
  assert step == 1
  count = trained_runs.assert_subtree_of(state["params"]["backbone"], variables["params"], "params")
  assert count > 50  # the convolutions up to the deepest tap, not a stub
  saved_statistics = state["model_state"]["backbone"]
  if backbone == "torchvision":
    assert trained_runs.assert_subtree_of(saved_statistics, variables["batch_stats"], "batch_stats") > 50
  else:
    assert not jax.tree.leaves(saved_statistics)  # the Caffe GoogLeNet has no batch norm
