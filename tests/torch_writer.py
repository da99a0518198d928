"""PyTorch checkpoints written without PyTorch, in both formats of `torch.save`.

A writer independent of the reader under test (`lsattn.weight_formats.torch_checkpoint`):
the pickle is emitted opcode by opcode (protocol 2, as `torch.save` writes),
so it names exactly the globals a test asks for: torch's tensor rebuild
function and storage classes, ``collections.OrderedDict``, or any other
callable (`Call`), which a safe reader must refuse. Tensors are described by
their storage, offset, size and stride, so transposed views and storages
shared by several tensors are written as torch writes them.

* `write_zip`: ``<prefix>/data.pkl``, ``<prefix>/byteorder``,
  ``<prefix>/data/<key>``, ``<prefix>/version``.
* `write_legacy`: magic number, protocol version, system information, the
  object, the storage keys, then each storage's element count and bytes.
"""

from __future__ import annotations

import dataclasses
import pickle
import struct
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

STORAGE_KINDS = {
    np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage", np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage", np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


@dataclasses.dataclass(eq=False)
class Storage:
  """A storage: `values` [n] as torch holds them (bfloat16: the uint16 bit patterns)."""
  key: str
  kind: str
  values: np.ndarray


@dataclasses.dataclass(eq=False)
class Tensor:
  """A view of `storage`: `size` elements, `stride` apart, from element `offset`."""
  storage: Storage
  offset: int
  size: tuple[int, ...]
  stride: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Global:
  """A global the pickle names (GLOBAL module name)."""
  module: str
  name: str


@dataclasses.dataclass(frozen=True)
class Persistent:
  """An object the unpickler's persistent_load makes of `pid` (BINPERSID)."""
  pid: tuple


@dataclasses.dataclass(eq=False)
class Call:
  """func(*args) when unpickled (REDUCE), then `items` set (SETITEMS), then `state` (BUILD)."""
  func: Global
  args: tuple = ()
  items: dict | None = None
  state: object = None


ORDERED_DICT = Global("collections", "OrderedDict")
REBUILD_TENSOR = Global("torch._utils", "_rebuild_tensor_v2")
REBUILD_PARAMETER = Global("torch._utils", "_rebuild_parameter")


def ordered_dict(items: dict, metadata: dict | None = None) -> Call:
  """An OrderedDict as a state dict pickles: with a ``_metadata`` attribute if given."""
  return Call(ORDERED_DICT, (), items, None if metadata is None else {"_metadata": metadata})


def parameter(tensor: Tensor) -> Call:
  """An ``nn.Parameter`` around `tensor`."""
  return Call(REBUILD_PARAMETER, (tensor, True, ordered_dict({})))


def tensor(array: np.ndarray, key: str) -> Tensor:
  """A contiguous tensor of `array`'s values and dtype, in a storage of its own."""
  array = np.asarray(array)
  storage = Storage(key, STORAGE_KINDS[array.dtype], array.reshape(-1))
  return contiguous(storage, 0, array.shape)


def bfloat16_tensor(array: np.ndarray, key: str) -> Tensor:
  """A bfloat16 tensor of float32 `array` (truncated to its upper 16 bits)."""
  array = np.asarray(array, np.float32)
  bits = (array.reshape(-1).view(np.uint32) >> 16).astype(np.uint16)
  return contiguous(Storage(key, "BFloat16Storage", bits), 0, array.shape)


def contiguous(storage: Storage, offset: int, size: tuple[int, ...]) -> Tensor:
  """A row-major tensor of `size` from element `offset` of `storage`."""
  stride = tuple(int(np.prod(size[i + 1:])) for i in range(len(size)))
  return Tensor(storage, offset, tuple(size), stride)


class _Emitter:
  """Pickle opcodes (protocol 2) of an object; collects the storages it refers to."""

  def __init__(self, storage_id):
    self.storage_id = storage_id
    self.storages: dict[str, Storage] = {}
    self.out: list[bytes] = [pickle.PROTO + bytes([2])]

  def emit(self, obj) -> None:
    out = self.out.append
    if obj is None:
      out(pickle.NONE)
    elif obj is True or obj is False:
      out(pickle.NEWTRUE if obj else pickle.NEWFALSE)
    elif isinstance(obj, int):
      if 0 <= obj < 256:
        out(pickle.BININT1 + bytes([obj]))
      elif -2**31 <= obj < 2**31:
        out(pickle.BININT + struct.pack("<i", obj))
      else:
        data = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
        out(pickle.LONG1 + bytes([len(data)]) + data)
    elif isinstance(obj, float):
      out(pickle.BINFLOAT + struct.pack(">d", obj))
    elif isinstance(obj, str):
      data = obj.encode("utf-8")
      out(pickle.BINUNICODE + struct.pack("<I", len(data)) + data)
    elif isinstance(obj, Global):
      out(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("utf-8"))
    elif isinstance(obj, Tensor):
      self.storages[obj.storage.key] = obj.storage
      storage = Persistent(self.storage_id(obj.storage))
      self.emit(Call(REBUILD_TENSOR, (storage, obj.offset, obj.size, obj.stride, False,
                                      ordered_dict({}))))
    elif isinstance(obj, Persistent):
      self.emit(obj.pid)
      out(pickle.BINPERSID)
    elif isinstance(obj, Call):
      self.emit(obj.func)
      self.emit(obj.args)
      out(pickle.REDUCE)
      if obj.items:
        self.emit_items(obj.items)
      if obj.state is not None:
        self.emit(obj.state)
        out(pickle.BUILD)
    elif isinstance(obj, tuple):
      out(pickle.MARK)
      for item in obj:
        self.emit(item)
      out(pickle.TUPLE)
    elif isinstance(obj, list):
      out(pickle.EMPTY_LIST)
      if obj:
        out(pickle.MARK)
        for item in obj:
          self.emit(item)
        out(pickle.APPENDS)
    elif isinstance(obj, dict):
      out(pickle.EMPTY_DICT)
      if obj:
        self.emit_items(obj)
    else:
      raise TypeError(f"cannot write a {type(obj).__name__}")

  def emit_items(self, items: dict) -> None:
    self.out.append(pickle.MARK)
    for key, value in items.items():
      self.emit(key)
      self.emit(value)
    self.out.append(pickle.SETITEMS)

  def dumps(self, obj) -> bytes:
    self.emit(obj)
    return b"".join(self.out) + pickle.STOP


def _zip_id(storage: Storage) -> tuple:
  return ("storage", Global("torch", storage.kind), storage.key, "cpu", storage.values.size)


def _legacy_id(storage: Storage) -> tuple:
  return _zip_id(storage) + (None,)


def pickled(obj, legacy: bool = False) -> tuple[bytes, dict[str, Storage]]:
  """(the pickle of `obj` with storages as persistent ids, the storages by key)."""
  emitter = _Emitter(_legacy_id if legacy else _zip_id)
  return emitter.dumps(obj), emitter.storages


def write_zip(path, obj, *, prefix: str = "archive", byteorder: str = "little") -> None:
  """`obj` in the zip format, storages in `byteorder`."""
  data, storages = pickled(obj)
  order = "<" if byteorder == "little" else ">"
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
    archive.writestr(f"{prefix}/data.pkl", data)
    archive.writestr(f"{prefix}/byteorder", byteorder)
    for key in sorted(storages):
      values = storages[key].values
      data = values.astype(values.dtype.newbyteorder(order)).tobytes()
      archive.writestr(f"{prefix}/data/{key}", data)
    archive.writestr(f"{prefix}/version", "3\n")


def write_legacy(path, obj, *, magic=LEGACY_MAGIC) -> None:
  """`obj` in the legacy format (little-endian, as torch writes it on any machine).

  `magic`: the first pickle's object (a `Call` makes a crafted file).
  """
  data, storages = pickled(obj, legacy=True)
  sys_info = {"protocol_version": 1001, "little_endian": True,
              "type_sizes": {"short": 2, "int": 4, "long": 8}}
  parts = [pickled(magic)[0], pickle.dumps(1001, 2), pickle.dumps(sys_info, 2), data,
           pickle.dumps(sorted(storages), 2)]
  for key in sorted(storages):
    values = storages[key].values
    parts += [struct.pack("<q", values.size),
              values.astype(values.dtype.newbyteorder("<")).tobytes()]
  with open(path, "wb") as f:
    f.write(b"".join(parts))
