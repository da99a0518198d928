"""A .caffemodel writer for tests, independent of lsattn.weight_formats.caffemodel's decoder.

google.protobuf itself serialises message types built at run time with the
field numbers of BVLC caffe.proto (NetParameter, V1LayerParameter,
LayerParameter, BlobProto, BlobShape). Versions: 'layers' (legacy V1 layers,
blobs with num/channels/height/width), 'layer' (current layers, BlobShape),
'unpacked' (current, repeated fields not packed), 'double' (current,
``double_data``).
"""

import functools

import jax
import numpy as np
from google.protobuf import descriptor_pb2, message_factory

from lsattn.backbones.googlenet import readers as weights

_F = descriptor_pb2.FieldDescriptorProto


@functools.cache
def _caffe_messages() -> dict:
  """The caffe.proto messages a .caffemodel needs (field numbers as in BVLC caffe.proto)."""
  proto = descriptor_pb2.FileDescriptorProto(name="test_caffe.proto", package="testcaffe",
                                             syntax="proto2")

  def message(name, *fields):
    descriptor = proto.message_type.add(name=name)
    for field_name, number, kind, label, type_name, packed in fields:
      field = descriptor.field.add(name=field_name, number=number, type=kind, label=label)
      if type_name:
        field.type_name = f".testcaffe.{type_name}"
      if packed:
        field.options.packed = True

  optional, repeated = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
  message("BlobShape", ("dim", 1, _F.TYPE_INT64, repeated, None, True))
  message("BlobProto",
          ("num", 1, _F.TYPE_INT32, optional, None, False),
          ("channels", 2, _F.TYPE_INT32, optional, None, False),
          ("height", 3, _F.TYPE_INT32, optional, None, False),
          ("width", 4, _F.TYPE_INT32, optional, None, False),
          ("data", 5, _F.TYPE_FLOAT, repeated, None, True),
          ("shape", 7, _F.TYPE_MESSAGE, optional, "BlobShape", False),
          ("double_data", 8, _F.TYPE_DOUBLE, repeated, None, True))
  # The same blob with unpacked repeated fields (what a proto without [packed] writes).
  message("UnpackedBlobProto",
          ("data", 5, _F.TYPE_FLOAT, repeated, None, False),
          ("shape", 7, _F.TYPE_MESSAGE, optional, "UnpackedBlobShape", False),
          ("double_data", 8, _F.TYPE_DOUBLE, repeated, None, False))
  message("UnpackedBlobShape", ("dim", 1, _F.TYPE_INT64, repeated, None, False))
  message("LayerParameter",
          ("name", 1, _F.TYPE_STRING, optional, None, False),
          ("type", 2, _F.TYPE_STRING, optional, None, False),
          ("blobs", 7, _F.TYPE_MESSAGE, repeated, "BlobProto", False))
  message("UnpackedLayerParameter",
          ("name", 1, _F.TYPE_STRING, optional, None, False),
          ("blobs", 7, _F.TYPE_MESSAGE, repeated, "UnpackedBlobProto", False))
  message("V1LayerParameter",
          ("bottom", 2, _F.TYPE_STRING, repeated, None, False),
          ("top", 3, _F.TYPE_STRING, repeated, None, False),
          ("name", 4, _F.TYPE_STRING, optional, None, False),
          ("type", 5, _F.TYPE_INT32, optional, None, False),  # an enum on the wire
          ("blobs", 6, _F.TYPE_MESSAGE, repeated, "BlobProto", False))
  message("NetParameter",
          ("name", 1, _F.TYPE_STRING, optional, None, False),
          ("layers", 2, _F.TYPE_MESSAGE, repeated, "V1LayerParameter", False),
          ("layer", 100, _F.TYPE_MESSAGE, repeated, "LayerParameter", False))
  message("UnpackedNetParameter",
          ("layer", 100, _F.TYPE_MESSAGE, repeated, "UnpackedLayerParameter", False))
  classes = message_factory.GetMessages([proto])
  return {name.split(".")[-1]: cls for name, cls in classes.items()}


def random_variables(variant: str, num_classes: int, *, seed: int) -> dict:
  """Random GoogLeNet variables of `variant` (HWIO kernels; positive batch-norm variances)."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    if path[-1].key == "var":
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    return rng.normal(0, 0.05, leaf.shape).astype(np.float32)
  return jax.tree_util.tree_map_with_path(draw, weights.template_variables(variant, num_classes))


def caffe_blobs(variables: dict) -> dict[str, list[np.ndarray]]:
  """{Caffe layer: [weight OIHW or [out, in], bias]} of 'caffe' GoogLeNet variables."""
  stem = {"conv1": "conv1/7x7_s2", "conv2_reduce": "conv2/3x3_reduce", "conv2": "conv2/3x3",
          "classifier": "loss3/classifier"}
  branch = {"b1x1": "1x1", "b3x3_reduce": "3x3_reduce", "b3x3": "3x3",
            "b5x5_reduce": "5x5_reduce", "b5x5": "5x5", "pool_proj": "pool_proj"}
  blobs = {}
  for path, value in jax.tree_util.tree_leaves_with_path(variables["params"]):
    keys = [p.key for p in path]
    layer = (f"{keys[0]}/{branch[keys[1]]}" if keys[0].startswith("inception_")
             else stem[keys[0]])
    value = np.asarray(value)
    if keys[-1] == "kernel":  # HWIO -> OIHW, [in, out] -> [out, in]
      value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
    blobs.setdefault(layer, [None, None])[0 if keys[-1] == "kernel" else 1] = value
  return blobs


def _legacy_dims(shape) -> dict:
  """V1 blob dimensions: the shape right-aligned in num/channels/height/width."""
  padded = (1,) * (4 - len(shape)) + tuple(shape)
  return dict(zip(("num", "channels", "height", "width"), padded))


def write_caffemodel(path, layers: dict[str, list[np.ndarray]], version: str) -> None:
  """Serialises {layer: blobs} as a NetParameter, with layers without blobs around them."""
  messages = _caffe_messages()
  if version == "unpacked":
    net = messages["UnpackedNetParameter"]()
  else:
    net = messages["NetParameter"](name="GoogleNet")
  for name, blobs in [("data", []), *layers.items(), ("prob", [])]:
    if version == "layers":
      layer = net.layers.add(name=name, type=4 if blobs else 5)
      for blob in blobs:
        layer.blobs.add(data=blob.ravel().tolist(), **_legacy_dims(blob.shape))
    else:
      layer = net.layer.add(name=name)
      for blob in blobs:
        proto = layer.blobs.add()
        proto.shape.dim.extend(blob.shape)
        if version == "double":
          proto.double_data.extend(blob.ravel().astype(np.float64).tolist())
        else:
          proto.data.extend(blob.ravel().tolist())
  path.write_bytes(net.SerializeToString())
