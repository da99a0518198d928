"""Caffe `.caffemodel` files read without Caffe: the weights of every layer.

A `.caffemodel` is a serialised ``caffe.NetParameter`` protocol buffer. This
module decodes the protobuf wire format by hand (varints, length-delimited
fields, fixed32/fixed64, packed and unpacked repeated values), reading only
the fields that hold weights. Field numbers, from Caffe's
``src/caffe/proto/caffe.proto``:

* ``NetParameter``: ``layers`` = 2 (``V1LayerParameter``, the legacy format
  of the 2014 models such as the Places205 GoogLeNet), ``layer`` = 100
  (``LayerParameter``, the current format). Caffe refuses a file with both,
  and so do we.
* ``LayerParameter``: ``name`` = 1, ``blobs`` = 7.
  ``V1LayerParameter``: ``name`` = 4, ``blobs`` = 6.
* ``BlobProto``: legacy ``num``/``channels``/``height``/``width`` = 1-4,
  ``data`` = 5 (float, declared packed; unpacked also read), ``shape`` = 7
  (``BlobShape``: ``dim`` = 1, int64, packed or not), ``double_data`` = 8.
  A blob with ``shape`` has that shape; otherwise, if any legacy dimension is
  set, the 4-D shape (num, channels, height, width), as Caffe's
  ``Blob::FromProto`` does; otherwise a flat vector.

Other fields (layer types, parameters, diffs) are skipped. Packed values are
viewed with `numpy.frombuffer`, and runs of unpacked fixed-width values are
read as one strided array, so a 50 MB model is read in well under a second
without a Python loop per value.
"""

from __future__ import annotations

import math
import os

import numpy as np

from lsattn.errors import LsattnError
from lsattn.weight_formats.files import read_weights_file

_NET_LAYERS_V1, _NET_LAYER = 2, 100
_LAYER_NAME, _LAYER_BLOBS = 1, 7
_V1_NAME, _V1_BLOBS = 4, 6
_BLOB_LEGACY_DIMS = (1, 2, 3, 4)  # num, channels, height, width
_BLOB_DATA, _BLOB_SHAPE, _BLOB_DOUBLE_DATA = 5, 7, 8
_SHAPE_DIM = 1

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
_FIXED_DTYPE = {_FIXED32: np.dtype("<f4"), _FIXED64: np.dtype("<f8")}


class _Malformed(Exception):
  """Bytes that are not a well-formed protobuf message: what, and where."""

  def __init__(self, reason: str, offset: int):
    super().__init__(f"{reason} at byte {offset}")


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
  """(value, position after it) of the base-128 varint at `pos`."""
  result = shift = 0
  start = pos
  while True:
    if pos >= end:
      raise _Malformed("truncated varint", start)
    byte = buf[pos]
    pos += 1
    result |= (byte & 0x7F) << shift
    if byte < 0x80:
      return result, pos
    shift += 7
    if shift >= 70:
      raise _Malformed("varint longer than 10 bytes", start)


def _fixed_run(buf: bytes, tag_pos: int, end: int, width: int) -> tuple[np.ndarray, int]:
  """Consecutive unpacked fixed-width values sharing the one-byte tag at `tag_pos`.

  Each record is the tag byte then `width` little-endian bytes; the run is
  found in growing chunks, so an isolated value costs a few bytes of looking.

  Returns:
    (values [n] float32 or float64, position after the run).
  """
  record = width + 1
  tag = buf[tag_pos]
  count, chunk = 0, 16
  while True:
    offset = tag_pos + count * record
    n = min(chunk, (end - offset) // record)
    if n <= 0:
      break
    tags = np.frombuffer(buf, np.uint8, n * record, offset)[::record]
    mismatch = np.flatnonzero(tags != tag)
    if mismatch.size:
      count += int(mismatch[0])
      break
    count += n
    chunk *= 2
  records = np.frombuffer(buf, np.uint8, count * record, tag_pos).reshape(count, record)
  dtype = _FIXED_DTYPE[_FIXED32 if width == 4 else _FIXED64]
  return records[:, 1:].copy().view(dtype).ravel(), tag_pos + count * record


def _fields(buf: bytes, start: int, end: int):
  """Yields (field number, wire type, value, tag position) of the message in buf[start:end].

  value: an int (varint), a (start, end) span (length-delimited), or an array
  of the values of a run of unpacked fixed32/fixed64 fields of one number
  (float32/float64 as stored; one field may thus yield several arrays).
  """
  pos = start
  while pos < end:
    tag_pos = pos
    key, pos = _varint(buf, pos, end)
    field, wire = key >> 3, key & 7
    if field == 0:
      raise _Malformed("field number 0", tag_pos)
    if wire == _VARINT:
      value, pos = _varint(buf, pos, end)
    elif wire == _LENGTH_DELIMITED:
      length, pos = _varint(buf, pos, end)
      if pos + length > end:
        raise _Malformed(f"field {field} of {length} bytes runs past the end", tag_pos)
      value = (pos, pos + length)
      pos += length
    elif wire in _FIXED_DTYPE:
      width = _FIXED_DTYPE[wire].itemsize
      if pos + width > end:
        raise _Malformed(f"field {field} of {width} bytes runs past the end", tag_pos)
      if pos - tag_pos == 1:
        value, pos = _fixed_run(buf, tag_pos, end, width)
      else:
        value = np.frombuffer(buf, _FIXED_DTYPE[wire], 1, pos)
        pos += width
    else:  # 3/4 are proto1 groups (not in caffe.proto), 6/7 do not exist
      raise _Malformed(f"wire type {wire} of field {field}", tag_pos)
    yield field, wire, value, tag_pos


def _expect(field: int, wire: int, expected: tuple[int, ...], pos: int) -> None:
  if wire not in expected:
    raise _Malformed(f"field {field} has wire type {wire}, expected one of {expected}", pos)


def _values(buf: bytes, field: int, wire: int, value, dtype: np.dtype, pos: int) -> np.ndarray:
  """A repeated float/double field's values: a packed span or an unpacked run."""
  if wire == _LENGTH_DELIMITED:
    start, end = value
    if (end - start) % dtype.itemsize:
      raise _Malformed(f"packed field {field} of {end - start} bytes is not whole "
                       f"{dtype.itemsize}-byte values", pos)
    return np.frombuffer(buf, dtype, (end - start) // dtype.itemsize, start)
  _expect(field, wire, (_FIXED32 if dtype.itemsize == 4 else _FIXED64,), pos)
  return value


def _blob_shape(buf: bytes, start: int, end: int) -> tuple[int, ...]:
  dims = []
  for field, wire, value, pos in _fields(buf, start, end):
    if field != _SHAPE_DIM:
      continue
    _expect(field, wire, (_VARINT, _LENGTH_DELIMITED), pos)
    if wire == _VARINT:
      dims.append(value)
    else:
      cursor, stop = value
      while cursor < stop:
        dim, cursor = _varint(buf, cursor, stop)
        dims.append(dim)
  return tuple(dims)


def _blob(buf: bytes, start: int, end: int) -> np.ndarray:
  """One BlobProto -> float32 array in its Caffe shape."""
  shape, legacy, data, doubles = None, {}, [], []
  for field, wire, value, pos in _fields(buf, start, end):
    if field == _BLOB_SHAPE:
      _expect(field, wire, (_LENGTH_DELIMITED,), pos)
      shape = _blob_shape(buf, *value)
    elif field in _BLOB_LEGACY_DIMS:
      _expect(field, wire, (_VARINT,), pos)
      legacy[field] = value
    elif field == _BLOB_DATA:
      data.append(_values(buf, field, wire, value, _FIXED_DTYPE[_FIXED32], pos))
    elif field == _BLOB_DOUBLE_DATA:
      doubles.append(_values(buf, field, wire, value, _FIXED_DTYPE[_FIXED64], pos))
  values = np.concatenate(data or doubles or [np.zeros(0, np.float32)])
  values = values.astype(np.float32, copy=False)
  if shape is None:
    shape = (tuple(legacy.get(f, 0) for f in _BLOB_LEGACY_DIMS) if legacy
             else (values.size,))
  if values.size != math.prod(shape):
    raise _Malformed(f"blob of shape {shape} holds {values.size} values", start)
  return values.reshape(shape)


def _layer(buf: bytes, start: int, end: int, name_field: int, blobs_field: int
           ) -> tuple[str, list[np.ndarray]]:
  name, blobs = "", []
  for field, wire, value, pos in _fields(buf, start, end):
    if field == name_field:
      _expect(field, wire, (_LENGTH_DELIMITED,), pos)
      try:
        name = buf[value[0]:value[1]].decode("utf-8")
      except UnicodeDecodeError:
        raise _Malformed("layer name is not UTF-8", value[0]) from None
    elif field == blobs_field:
      _expect(field, wire, (_LENGTH_DELIMITED,), pos)
      blobs.append(_blob(buf, *value))
  return name, blobs


def read_layers(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
  """{layer name: [blob 0, blob 1, ...]} of every layer with weights, in Caffe's shapes.

  For a convolution blob 0 is the weight [O, I, kh, kw] and blob 1 the bias
  [O]; an inner product's weight is [out, in]. Legacy (V1) files give their
  4-D shapes, e.g. a bias [1, 1, 1, O]. Layers without blobs are left out.

  Raises:
    LsattnError: the file is missing, unreadable, truncated or not a
      NetParameter (named, with the byte where decoding failed).
  """
  path = os.fspath(path)
  buf = read_weights_file(path)
  layers: dict[str, dict[str, list[np.ndarray]]] = {"layer": {}, "layers": {}}
  try:
    for field, wire, value, pos in _fields(buf, 0, len(buf)):
      if field == _NET_LAYER:
        _expect(field, wire, (_LENGTH_DELIMITED,), pos)
        name, blobs = _layer(buf, *value, _LAYER_NAME, _LAYER_BLOBS)
        kind = "layer"
      elif field == _NET_LAYERS_V1:
        _expect(field, wire, (_LENGTH_DELIMITED,), pos)
        name, blobs = _layer(buf, *value, _V1_NAME, _V1_BLOBS)
        kind = "layers"
      else:
        continue
      if blobs:
        layers[kind][name] = blobs  # a repeated name: the last wins, as in Caffe's copy
  except _Malformed as error:
    raise LsattnError(f"{path}: not a readable .caffemodel ({error}); truncated download, "
                      "or not a Caffe NetParameter?") from None
  if layers["layer"] and layers["layers"]:
    raise LsattnError(f"{path}: has both 'layer' and legacy 'layers' fields, which Caffe "
                      "refuses too")
  found = layers["layer"] or layers["layers"]
  if not found:
    raise LsattnError(f"{path}: no layer with weights (an empty file, a deploy .prototxt "
                      "or not a .caffemodel?)")
  return found


def read_blobs(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The Caffe-named arrays of a .caffemodel: ``<layer>_<i>`` = blob i of <layer>.

  The naming of `lsattn.backbones.googlenet.readers.load_caffe`'s .npz and pickles.
  """
  return {f"{name}_{i}": blob for name, blobs in read_layers(path).items()
          for i, blob in enumerate(blobs)}
