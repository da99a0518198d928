"""PyTorch checkpoints (`.pth`) read without PyTorch: every tensor as a numpy array.

`torch.save` writes one of two formats, both read here (from PyTorch's
``torch/serialization.py`` and ``torch/_utils.py``):

* **zip** (torch >= 1.6, the default): an uncompressed zip archive whose
  records share one folder, ``<prefix>/``: ``data.pkl`` the pickled object,
  ``data/<key>`` the raw bytes of storage <key>, ``byteorder`` ('little' or
  'big'; absent: little) and ``version``. A storage is the persistent id
  ``('storage', storage_type, key, location, numel)``.
* **legacy** (``_use_new_zipfile_serialization=False``, and every file of
  torch < 1.6): a stream of pickles: the magic number 0x1950a86a20f9469cfc6c,
  the protocol version 1001, a dict of system information, the pickled object
  with the persistent ids ``('storage', storage_type, key, location, numel,
  view_metadata)``, the list of storage keys, then for each key its element
  count (8 bytes, little-endian) and its bytes (little-endian). A non-None
  ``view_metadata = (view_key, offset, numel)`` is a slice of that storage
  (files of torch < 1.0).

In both, a tensor is ``torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, requires_grad, backward_hooks[, metadata])`` (``_rebuild_tensor`` in
old files), a parameter ``_rebuild_parameter(tensor, requires_grad, hooks)``,
and a state dict a ``collections.OrderedDict`` (with a ``_metadata`` attribute,
ignored). Storage types: Float, Double, Half, BFloat16 (read as float32), Long,
Int, Short, Char, Byte and Bool. Each tensor becomes its own C-contiguous
array: strides (a transposed view), storage offsets and storages shared by
several tensors are resolved, and bytes are checked to lie within the storage.
The device a tensor was saved from is ignored.

**Safety.** A `.pth` is a pickle, and unpickling may call any function the
file names. The unpickler here resolves a global name only to this module's
own stand-ins for the names above; any other global (``os.system``,
``builtins.eval``, a model class of a whole pickled ``nn.Module``) is refused
before anything is called or imported, so no code of the file runs.

Not read: TorchScript archives (`torch.jit.save`), PyTorch's early tar
format, quantized, sparse and complex tensors, and numpy or other objects
stored beside the tensors (refused, named).
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import numpy as np

from lsattn.errors import LsattnError
from lsattn.weight_formats.files import read_weights_file

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# Storage class -> dtype of its little-endian bytes. BFloat16 is read as its
# raw 16 bits and widened to float32; Bool as bytes, then compared with 0.
_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "BFloat16Storage": "<u2", "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "u1",
}


class _Malformed(Exception):
  """The file's bytes or objects are not a well-formed checkpoint: what is wrong."""


class _Refused(Exception):
  """The file asks for something this reader does not do (one line, shown as is)."""


def _shown(text) -> str:
  """A name from the file, printable on one line and short."""
  text = text if isinstance(text, str) and text.isprintable() else ascii(text)
  return text if len(text) <= 80 else text[:77] + "..."


class _StandIn:
  """Base of the objects the unpickler builds: the file cannot set their state."""

  __slots__ = ()

  def __setstate__(self, state):
    raise _Malformed(f"unexpected state for a {type(self).__name__[1:]}")


class _StorageType(_StandIn):
  """What ``torch.FloatStorage`` etc. unpickle to: the storage's dtype."""

  __slots__ = ("name", "dtype")

  def __init__(self, name: str):
    self.name = name
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage(_StandIn):
  """A storage: `size` elements of `dtype` from element `start` of a root's bytes.

  The root's `data` is None until its bytes are read (in a legacy file they
  follow the pickle).
  """

  __slots__ = ("type", "key", "size", "root", "start", "data")

  def __init__(self, storage_type: _StorageType, key: str, size: int):
    self.type, self.key, self.size = storage_type, key, size
    self.root, self.start, self.data = self, 0, None

  def view(self, key: str, start: int, size: int) -> _Storage:
    if start < 0 or size < 0 or start + size > self.size:
      raise _Malformed(f"storage view {_shown(key)} [{start}, {start + size}) lies outside "
                       f"storage {_shown(self.key)} of {self.size} elements")
    storage = _Storage(self.type, key, size)
    storage.root, storage.start = self, start
    return storage

  def values(self) -> np.ndarray:
    """[size] the storage's elements, as stored (a view of the file's bytes)."""
    if self.root.data is None:
      raise _Malformed(f"storage {_shown(self.root.key)} has no data")
    return self.root.data[self.start:self.start + self.size]


class _Tensor(_StandIn):
  """A tensor to build once every storage is read: `size` elements at `stride`."""

  __slots__ = ("storage", "offset", "size", "stride")

  def __init__(self, storage, offset, size, stride):
    if not isinstance(storage, _Storage):
      raise _Malformed(f"a tensor's storage is a {type(storage).__name__}")
    for name, value in (("size", size), ("stride", stride)):
      if not (isinstance(value, tuple) and all(_is_count(v) for v in value)):
        raise _Malformed(f"a tensor's {name} is {_shown(repr(value))}, expected a tuple of "
                         "non-negative integers")
    if not _is_count(offset) or len(size) != len(stride):
      raise _Malformed(f"a tensor's offset {_shown(repr(offset))} or rank "
                       f"({len(size)} sizes, {len(stride)} strides) is wrong")
    self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

  def array(self) -> np.ndarray:
    """The tensor's values, a fresh C-contiguous array (bfloat16 -> float32)."""
    values = self.storage.values()
    if 0 in self.size:
      view = np.empty(self.size, values.dtype)
    else:
      last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
      if last >= values.size:
        raise _Malformed(f"a tensor of size {self.size}, stride {self.stride} at offset "
                         f"{self.offset} reads past storage {_shown(self.storage.key)} of "
                         f"{values.size} elements")
      view = np.lib.stride_tricks.as_strided(
          values[self.offset:], self.size, [s * values.itemsize for s in self.stride],
          writeable=False)
    name = self.storage.type.name
    if name == "BFloat16Storage":
      return (view.astype(np.uint32, order="C") << 16).view(np.float32)
    if name == "BoolStorage":
      return view.astype(bool, order="C")
    return view.astype(values.dtype.newbyteorder("="), order="C")


def _is_count(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _rebuild_tensor(storage, storage_offset, size, stride):
  return _Tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None):
  if not isinstance(data, _Tensor):
    raise _Malformed(f"a parameter's data is a {type(data).__name__}")
  return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
  return _rebuild_parameter(data)


class _OrderedDict(dict):
  """``collections.OrderedDict`` (a state dict): a dict, ordered as in the file.

  The ``_metadata`` a state dict carries (each module's version) is dropped.
  """

  def __setstate__(self, state):
    if not isinstance(state, dict):
      raise _Malformed("unexpected state for an OrderedDict")


_ALLOWED = {
    ("collections", "OrderedDict"): _OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    # Legacy files of CUDA tensors may name torch.cuda's storage classes.
    **{(module, name): _StorageType(name) for name in _STORAGE_DTYPES
       for module in ("torch", "torch.cuda")},
}


class _Unpickler(pickle.Unpickler):
  """Unpickles only the names in `_ALLOWED`, storages through `storage_fn`.

  storage_fn(storage_type, key, numel, view_metadata) -> _Storage; the zip
  format's ids have no view_metadata (None).
  """

  def __init__(self, data: io.BytesIO, storage_fn=None):
    super().__init__(data, encoding="utf-8")
    self._storage_fn = storage_fn

  def find_class(self, module, name):
    stand_in = _ALLOWED.get((module, name))
    if stand_in is None:
      raise _Refused(f"refused global {_shown(module)}.{_shown(name)}: a checkpoint may hold "
                     "only tensors and containers; nothing of the file was run")
    return stand_in

  def persistent_load(self, pid):
    kind = pid[0] if isinstance(pid, tuple) and pid else pid
    kind = kind.decode("ascii", "replace") if isinstance(kind, bytes) else kind
    if kind == "module":
      raise _Refused("holds a pickled nn.Module (torch.save(model)), not a state dict: "
                     "save model.state_dict() instead")
    if kind != "storage" or self._storage_fn is None or len(pid) not in (5, 6):
      raise _Malformed(f"unexpected persistent id {_shown(repr(pid))}")
    _, storage_type, key, _location, numel, *view = pid
    key = key.decode("ascii", "replace") if isinstance(key, bytes) else key
    if not isinstance(storage_type, _StorageType) or not isinstance(key, str) \
        or not _is_count(numel):
      raise _Malformed(f"unexpected storage id {_shown(repr(pid))}")
    return self._storage_fn(storage_type, key, numel, view[0] if view else None)


def _unpickle(data: io.BytesIO, storage_fn=None):
  return _Unpickler(data, storage_fn).load()


def _read_legacy(buf: bytes):
  """The object of a legacy-format file, storages filled from the bytes after it."""
  stream = io.BytesIO(buf)
  if _unpickle(stream) != _LEGACY_MAGIC:
    raise _Malformed("wrong magic number")
  protocol = _unpickle(stream)
  if protocol != _LEGACY_PROTOCOL:
    raise _Malformed(f"protocol version {_shown(repr(protocol))}, expected {_LEGACY_PROTOCOL}")
  if not isinstance(_unpickle(stream), dict):
    raise _Malformed("no system information after the protocol version")
  storages: dict[str, _Storage] = {}

  def storage_fn(storage_type, key, numel, view_metadata):
    root = storages.setdefault(key, _Storage(storage_type, key, numel))
    if root.type is not storage_type or root.size != numel:
      raise _Malformed(f"storage {_shown(key)} is named with two types or sizes")
    if view_metadata is None:
      return root
    if not (isinstance(view_metadata, tuple) and len(view_metadata) == 3):
      raise _Malformed(f"unexpected storage view {_shown(repr(view_metadata))}")
    view_key, start, size = view_metadata
    if not (_is_count(start) and _is_count(size)):
      raise _Malformed(f"unexpected storage view {_shown(repr(view_metadata))}")
    return root.view(str(view_key), start, size)

  result = _unpickle(stream, storage_fn)
  keys = _unpickle(stream)
  if not isinstance(keys, list) or set(keys) != set(storages):
    raise _Malformed("the list of storage keys does not match the tensors' storages")
  position = stream.tell()
  for key in keys:
    storage = storages[key]
    header = buf[position:position + 8]
    count = int.from_bytes(header, "little", signed=True)
    nbytes = count * storage.type.dtype.itemsize
    if len(header) < 8 or position + 8 + nbytes > len(buf):
      raise _Malformed(f"truncated: storage {_shown(key)} ends past the end of the file")
    if count != storage.size:
      raise _Malformed(f"storage {_shown(key)} holds {count} elements, expected {storage.size}")
    storage.data = np.frombuffer(buf, storage.type.dtype, count, position + 8)
    position += 8 + nbytes
  return result


def _archive_prefix(archive: zipfile.ZipFile) -> str:
  names = archive.namelist()
  if any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in names):
    raise _Refused("is a TorchScript archive (torch.jit.save), not a torch.save checkpoint")
  prefixes = [name[:-len("data.pkl")] for name in names
              if name.endswith("/data.pkl") and name.count("/") == 1]
  if len(prefixes) != 1:
    raise _Refused(f"is a zip archive with {len(prefixes)} <folder>/data.pkl records, expected "
                   "one: not a torch.save checkpoint")
  return prefixes[0]


def _read_zip(archive: zipfile.ZipFile):
  """The object of a zip-format checkpoint, storages read from its records."""
  prefix = _archive_prefix(archive)
  names = set(archive.namelist())
  byteorder = "little"
  if f"{prefix}byteorder" in names:
    byteorder = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
    if byteorder not in ("little", "big"):
      raise _Malformed(f"byte order {_shown(byteorder)}, expected little or big")
  if f"{prefix}version" in names:
    version = archive.read(f"{prefix}version").decode("ascii", "replace").strip()
    if not version.isdigit():
      raise _Malformed(f"version {_shown(version)}, expected an integer")
  storages: dict[str, _Storage] = {}

  def storage_fn(storage_type, key, numel, view_metadata):
    if view_metadata is not None:
      raise _Malformed(f"storage {_shown(key)} has view metadata, which zip checkpoints never have")
    if key in storages:
      if storages[key].type is not storage_type or storages[key].size != numel:
        raise _Malformed(f"storage {_shown(key)} is named with two types or sizes")
      return storages[key]
    name = f"{prefix}data/{key}"
    dtype = storage_type.dtype.newbyteorder("<" if byteorder == "little" else ">")
    if name not in names:
      raise _Malformed(f"record {_shown(name)} is missing")
    if archive.getinfo(name).file_size != numel * dtype.itemsize:
      raise _Malformed(f"record {_shown(name)} holds {archive.getinfo(name).file_size} bytes, "
                       f"expected {numel} x {dtype.itemsize}")
    storage = storages[key] = _Storage(storage_type, key, numel)
    storage.data = np.frombuffer(archive.read(name), dtype)
    return storage

  return _unpickle(io.BytesIO(archive.read(f"{prefix}data.pkl")), storage_fn)


def _arrays(value):
  """`value` with every tensor an array and every dict a plain dict."""
  if isinstance(value, _Tensor):
    return value.array()
  if isinstance(value, _Storage):
    return value.values().astype(value.type.dtype.newbyteorder("="))
  if isinstance(value, _StandIn):
    raise _Malformed(f"holds a bare {type(value).__name__[1:]}")
  if isinstance(value, dict):
    return {key: _arrays(item) for key, item in value.items()}
  if isinstance(value, list):
    return [_arrays(item) for item in value]
  if isinstance(value, tuple):
    return tuple(_arrays(item) for item in value)
  return value


def read_checkpoint(path: str | os.PathLike):
  """The object a `.pth` holds, every tensor a numpy array.

  Dicts and OrderedDicts become dicts (in the file's order), lists and tuples
  stay; each tensor is its own C-contiguous array of the storage's dtype
  (bfloat16: float32).

  Raises:
    LsattnError: the file is missing, empty, truncated, not a PyTorch
      checkpoint, or names a global other than tensors' and OrderedDict (one
      line naming the file).
  """
  path = os.fspath(path)
  buf = read_weights_file(path)
  if not buf:
    raise LsattnError(f"{path}: empty file, not a PyTorch checkpoint")
  try:
    if buf.startswith(b"PK\x03\x04"):
      try:
        with zipfile.ZipFile(io.BytesIO(buf)) as archive:
          return _arrays(_read_zip(archive))
      except zipfile.BadZipFile as error:
        raise _Malformed(f"damaged zip archive, truncated download? ({error})") from None
    if buf[257:262] == b"ustar":
      raise _Refused("is in PyTorch's early tar format: load it with torch and save it again")
    return _arrays(_read_legacy(buf))
  except _Refused as error:
    raise LsattnError(f"{path}: {error}") from None
  except Exception as error:  # pickle, zip and numpy errors all mean a bad file
    detail = " ".join(str(error).split()) or type(error).__name__
    raise LsattnError(f"{path}: not a readable PyTorch checkpoint ({_shown(detail)})") from None


def _is_state_dict(value) -> bool:
  return (isinstance(value, dict) and bool(value)
          and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in value.items()))


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The state dict of a `.pth`: {name: array}, names as in the file.

  The file holds a state dict (a dict of names to tensors), or a dict with
  exactly one such state dict among its values (``{'state_dict': ...,
  'epoch': 3}``, ``{'model': ..., 'optimizer': ...}``: unwrapped, whatever
  its key). Which names the caller needs it checks itself.

  Raises:
    LsattnError: as `read_checkpoint`; or the file holds no state dict, or
      several (``{'model': ..., 'model_ema': ...}``), named.
  """
  checkpoint = read_checkpoint(path)
  if _is_state_dict(checkpoint):
    return checkpoint
  if not isinstance(checkpoint, dict):
    raise LsattnError(f"{path}: holds a {type(checkpoint).__name__}, expected a state dict "
                      "(a dict of names to tensors)")
  found = [key for key, value in checkpoint.items() if _is_state_dict(value)]
  if len(found) == 1:
    return checkpoint[found[0]]
  keys = ", ".join(_shown(repr(key)) for key in list(checkpoint)[:8])
  if found:
    raise LsattnError(f"{path}: holds {len(found)} state dicts ({keys}), expected one")
  raise LsattnError(f"{path}: holds no state dict (a dict of names to tensors); its entries: "
                    f"{keys or 'none'}")
