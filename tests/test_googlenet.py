"""GoogLeNet backbone: tap shapes, pooling and LRN against direct formulas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsattn import LsattnError
from lsattn.backbones.googlenet.network import (GoogLeNet, local_response_norm, max_pool_ceil,
                                                tap_shape)

EXPECTED_224 = {"3b": (28, 28, 480), "4c": (14, 14, 512), "4e": (14, 14, 832),
                "5b": (7, 7, 1024)}


def _output_shapes(variant, height, width, **kwargs):
  model = GoogLeNet(variant=variant, **kwargs)
  outputs, _ = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), jnp.zeros((2, height, width, 3)), train=False))
  return {name: value.shape for name, value in outputs.items()}


@pytest.mark.parametrize("variant", ["caffe", "torchvision"])
def test_taps_at_224(variant):
  shapes = _output_shapes(variant, 224, 224, num_classes=365)
  assert shapes == {**{k: (2,) + v for k, v in EXPECTED_224.items()}, "logits": (2, 365)}


@pytest.mark.parametrize("variant", ["caffe", "torchvision"])
@pytest.mark.parametrize("height, width", [(64, 64), (97, 131), (256, 455), (300, 300)])
def test_taps_at_other_sizes(variant, height, width):
  shapes = _output_shapes(variant, height, width, compute_logits=False)
  for name in EXPECTED_224:
    assert shapes[name] == (2,) + tap_shape(name, height, width, variant), (name, shapes[name])


def test_subset_of_taps_without_logits_stops_early():
  model = GoogLeNet(taps=("3b",), compute_logits=False)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)),
                                                train=False))
  assert "inception_4a" not in variables["params"]


def test_real_forward_is_finite_and_depends_on_input():
  model = GoogLeNet(variant="torchvision", num_classes=10)
  images = jax.random.normal(jax.random.key(1), (2, 64, 64, 3)) * 60
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images)
  outputs = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
  assert all(bool(jnp.all(jnp.isfinite(v))) for v in outputs.values())
  assert not np.allclose(outputs["logits"][0], outputs["logits"][1])


@pytest.mark.parametrize("beta", [0.75, 0.5])  # Caffe's 0.75 has its own fast power
def test_caffe_lrn_matches_its_formula(beta):
  x = np.random.default_rng(0).normal(size=(1, 2, 3, 7)).astype(np.float32) * 500
  expected = np.empty_like(x)
  for c in range(7):
    window = x[..., max(0, c - 2):c + 3]
    expected[..., c] = x[..., c] / (1 + 1e-4 / 5 * np.sum(window ** 2, -1)) ** beta
  np.testing.assert_allclose(local_response_norm(jnp.asarray(x), beta=beta), expected,
                             rtol=1e-5)


def test_caffe_lrn_gradient_equals_autodiff_of_its_formula():
  # Large activations so that the normalising term matters (alpha = 1e-4).
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3, 3, 9)).astype(np.float32) * 80)
  probe = jnp.asarray(np.random.default_rng(2).normal(size=x.shape).astype(np.float32))

  def formula(x):
    squared = jnp.pad(jnp.square(x), [(0, 0)] * 3 + [(2, 2)])
    window = sum(squared[..., i:i + x.shape[-1]] for i in range(5))
    return x / (1 + 1e-4 / 5 * window) ** 0.75

  ours = jax.grad(lambda x: jnp.sum(local_response_norm(x) * probe))(x)
  expected = jax.grad(lambda x: jnp.sum(formula(x) * probe))(x)
  np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("size", [7, 8, 13, 14, 112, 113])
@pytest.mark.parametrize("window, stride", [(3, 2), (2, 2)])
def test_ceil_mode_pooling_sizes_and_values(size, window, stride):
  x = np.random.default_rng(size).normal(size=(1, size, size, 1)).astype(np.float32) - 10
  out = np.asarray(max_pool_ceil(jnp.asarray(x), window, stride))
  expected_size = math.ceil((size - window) / stride) + 1
  if (expected_size - 1) * stride >= size:
    expected_size -= 1
  assert out.shape == (1, expected_size, expected_size, 1)
  # The last window is clipped to the image: padding never wins (all inputs < 0).
  last = x[0, (expected_size - 1) * stride:, (expected_size - 1) * stride:, 0].max()
  assert out[0, -1, -1, 0] == last


def test_bad_input_shape_and_variant_are_refused():
  with pytest.raises(LsattnError, match="RGB"):
    GoogLeNet().init(jax.random.key(0), jnp.zeros((1, 64, 64, 1)), train=False)
  with pytest.raises(LsattnError, match="variant"):
    GoogLeNet(variant="resnet").init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)
