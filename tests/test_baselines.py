"""The baselines' feature parts (lsattn/nn/baselines.py) and their configs."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from lsattn import LsattnError, config_checks
from lsattn.nn import baselines, primitives as layers

BATCH, HEIGHT, WIDTH, CHANNELS = 2, 3, 3, 16
EXPECTED_SIZE = {"posenet": 2048, "lstm_posenet": 4 * 128, "googlenet": CHANNELS}

# Jitted as in production (lsattn.model runs them inside the jitted steps);
# one compilation per variant serves every test.
_init = jax.jit(baselines.init_baseline, static_argnums=(1, 2))
_features = jax.jit(baselines.baseline_features, static_argnums=1)
_sweeps = jax.jit(baselines._sweeps)


def _tap(seed=0):
  return jax.random.normal(jax.random.key(seed), (BATCH, HEIGHT, WIDTH, CHANNELS))


@pytest.fixture(scope="module")
def lstm_params():
  return _init(jax.random.key(1), "lstm_posenet", CHANNELS)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _reference_lstm(params, sequence):
  """An independent numpy LSTM (gates i, f, g, o; forget bias +1): [T, B, D] -> h_T."""
  w_x = np.asarray(params["input"]["kernel"], np.float64)
  b = np.asarray(params["input"]["bias"], np.float64)
  w_h = np.asarray(params["hidden"]["kernel"], np.float64)
  hidden = w_h.shape[0]
  c = h = np.zeros((sequence.shape[1], hidden))
  for x in np.asarray(sequence, np.float64):
    z = x @ w_x + b + h @ w_h
    i, f, g, o = (z[:, k * hidden:(k + 1) * hidden] for k in range(4))
    c = _sigmoid(f + 1.0) * c + _sigmoid(i) * np.tanh(g)
    h = _sigmoid(o) * np.tanh(c)
  return h


@pytest.mark.parametrize("variant", baselines.BASELINES)
def test_features_have_the_documented_shape_and_size(variant):
  params = _init(jax.random.key(0), variant, CHANNELS)
  features = _features(params, variant, _tap())
  assert baselines.feature_size(variant, CHANNELS) == EXPECTED_SIZE[variant]
  assert features.shape == (BATCH, EXPECTED_SIZE[variant])
  assert features.dtype == jnp.float32
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
  assert np.all(np.isfinite(features))


def test_lstm_posenet_parameter_shapes(lstm_params):
  assert lstm_params["fc"]["kernel"].shape == (CHANNELS, 2048)
  for direction, input_size in [("up", 64), ("down", 64), ("left", 32), ("right", 32)]:
    cell = lstm_params["lstm"][direction]
    assert cell["input"]["kernel"].shape == (input_size, 4 * 128), direction
    assert cell["hidden"]["kernel"].shape == (128, 4 * 128), direction
  directions = [lstm_params["lstm"][d]["hidden"]["kernel"] for d in baselines.DIRECTIONS]
  assert not np.allclose(directions[0], directions[1])  # separate weights per direction


def test_posenet_is_the_previous_model_code():
  # model.py's former PoseNet path: the same dense init for the same key, then
  # ReLU(dense(spatial mean)). Keeping it identical keeps old checkpoints valid.
  key, tap = jax.random.key(3), _tap()
  params = baselines.init_baseline(key, "posenet", CHANNELS)
  previous = layers.init_dense(key, in_features=CHANNELS, out_features=2048)
  jax.tree.map(np.testing.assert_array_equal, params, previous)
  expected = np.maximum(np.asarray(tap).mean(axis=(1, 2)) @ np.asarray(previous["kernel"]), 0)
  np.testing.assert_allclose(_features(params, "posenet", tap), expected,
                             rtol=1e-5, atol=1e-5)


def test_googlenet_features_are_the_spatial_mean():
  assert baselines.init_baseline(jax.random.key(0), "googlenet", CHANNELS) == {}
  tap = _tap()
  np.testing.assert_allclose(_features({}, "googlenet", tap),
                             np.asarray(tap).mean(axis=(1, 2)), rtol=1e-6, atol=1e-6)


def test_lstm_posenet_matches_a_reference_in_four_directions(lstm_params):
  # [42]: pooled Conv-5B -> FC 2048 (ReLU) -> 32 x 64 matrix, read row by row
  # (down: top to bottom; up: bottom to top) and column by column (right:
  # left to right; left: right to left) by four LSTMs.
  tap = _tap(4)
  fc = lstm_params["fc"]
  hidden = np.maximum(np.asarray(tap).mean(axis=(1, 2)) @ np.asarray(fc["kernel"])
                      + np.asarray(fc["bias"]), 0)
  matrix = hidden.reshape(BATCH, 32, 64)
  rows = matrix.transpose(1, 0, 2)
  columns = matrix.transpose(2, 0, 1)
  sequences = {"up": rows[::-1], "down": rows, "left": columns[::-1], "right": columns}
  features = np.asarray(_features(lstm_params, "lstm_posenet", tap))
  for index, direction in enumerate(baselines.DIRECTIONS):
    expected = _reference_lstm(lstm_params["lstm"][direction], sequences[direction])
    np.testing.assert_allclose(features[:, index * 128:(index + 1) * 128], expected,
                               rtol=1e-4, atol=1e-5, err_msg=direction)


@pytest.mark.parametrize("axis, swapped", [(1, ("up", "down")), (2, ("left", "right"))])
def test_flipping_the_matrix_swaps_opposite_sweeps(lstm_params, axis, swapped):
  matrix = jax.random.normal(jax.random.key(5), (BATCH, 32, 64))
  first, second = swapped
  exchanged = dict(lstm_params["lstm"], **{first: lstm_params["lstm"][second],
                                           second: lstm_params["lstm"][first]})
  original = np.asarray(_sweeps(lstm_params["lstm"], matrix)).reshape(BATCH, 4, 128)
  flipped = np.asarray(_sweeps(exchanged, jnp.flip(matrix, axis=axis))
                       ).reshape(BATCH, 4, 128)
  i, j = baselines.DIRECTIONS.index(first), baselines.DIRECTIONS.index(second)
  np.testing.assert_allclose(flipped[:, i], original[:, j], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(flipped[:, j], original[:, i], rtol=1e-5, atol=1e-6)
  # The same weights read in the opposite order give something else.
  same_weights = np.asarray(_sweeps(exchanged, matrix)).reshape(BATCH, 4, 128)
  assert not np.allclose(same_weights[:, i], original[:, j], atol=1e-4)


@pytest.mark.parametrize("variant", baselines.BASELINES)
def test_gradients_reach_every_parameter_and_the_tap(variant):
  params = _init(jax.random.key(6), variant, CHANNELS)
  weights = jax.random.normal(jax.random.key(7), (BATCH, EXPECTED_SIZE[variant]))

  def loss_fn(params, tap):
    return jnp.sum(weights * baselines.baseline_features(params, variant, tap))

  param_grads, tap_grad = jax.jit(jax.grad(loss_fn, argnums=(0, 1)))(params, _tap())
  leaves = jax.tree_util.tree_leaves_with_path(param_grads)
  assert len(leaves) == {"posenet": 2, "lstm_posenet": 2 + 4 * 3, "googlenet": 0}[variant]
  for path, grad in leaves + [("tap", tap_grad)]:
    assert np.all(np.isfinite(grad)), path
    assert np.any(grad != 0), path


@pytest.mark.parametrize("call", [
    lambda: baselines.init_baseline(jax.random.key(0), "resnet", CHANNELS),
    lambda: baselines.baseline_features({}, "resnet", _tap()),
    lambda: baselines.feature_size("resnet", CHANNELS)],
    ids=["init_baseline", "baseline_features", "feature_size"])
def test_unknown_variant_names_it_and_the_allowed_ones(call):
  with pytest.raises(LsattnError) as error:
    call()
  message = str(error.value)
  assert "'resnet'" in message and "model_variant" in message
  assert all(name in message for name in baselines.BASELINES)


@pytest.mark.parametrize("dataset", ["seven_scenes/heads", "cambridge_landmarks/shop_facade",
                                     "tum_lsi"])
def test_lstm_posenet_config(dataset):
  from configs import lstm_posenet
  config = lstm_posenet.get_config(dataset)
  assert config.model_variant == "lstm_posenet"
  assert config.dataset.startswith(dataset.split("/")[0])
  assert config_checks.check_config(config).variant == "lstm_posenet"


def test_googlenet_config():
  from configs import googlenet, mit67
  for args in [(), ("mit67",)]:
    config = googlenet.get_config(*args)
    assert config.model_variant == "googlenet"
    reference = mit67.get_config()
    reference.model_variant = "googlenet"
    assert config.to_dict() == reference.to_dict()
    assert config_checks.check_config(config).variant == "googlenet"
  with pytest.raises(ValueError, match="places365"):
    googlenet.get_config("places365")


def test_lstm_posenet_config_refuses_an_unknown_dataset():
  from configs import lstm_posenet
  with pytest.raises(ValueError, match="sun397"):
    lstm_posenet.get_config("sun397/all")
