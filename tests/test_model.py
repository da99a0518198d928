"""The full model: every variant forward and backward under jit, config checks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsattn import LsattnError, config_checks, config_schema as defaults, model
from lsattn.nn import core

TINY_CORE = core.CoreConfig(num_steps=2, hidden_size=8, projection_size=8,
                            convlstm_kernel_sizes=(1, 3), attention_kernel_sizes=(1, 3),
                            gate_embedding_size=4)


def _config(**kwargs):
  return model.ModelConfig(core=TINY_CORE, **kwargs)


@pytest.mark.parametrize("task, backbone", [("pose", "caffe"), ("classification", "torchvision")])
def test_full_model_forward_and_backward(task, backbone):
  config = _config(task=task, backbone=backbone, num_classes=5)
  params, state = model.init_model(jax.random.key(0), config, (48, 48, 3))
  images = jax.random.normal(jax.random.key(1), (2, 48, 48, 3)) * 50

  @jax.jit
  def loss_fn(params, state):
    outputs, new_state = model.apply_model(params, state, images, key=jax.random.key(2),
                                           temperature=0.5, train=True, config=config)
    value = sum(jnp.sum(v ** 2) for v in outputs.prediction.values())
    return value, new_state

  (value, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state)
  assert np.isfinite(value)
  for group in ("backbone", "core", "head"):
    leaves = jax.tree.leaves(grads[group])
    assert all(np.all(np.isfinite(g)) for g in leaves), group
    assert any(np.any(g != 0) for g in leaves), group
  assert jax.tree.structure(new_state) == jax.tree.structure(state)


@pytest.mark.parametrize("variant, task", [
    ("layer_spatial", "pose"), ("spatial_only", "pose"), ("layer_only", "classification"),
    ("posenet", "pose")])
def test_variant_heads_forward_and_backward(variant, task):
  """Each variant's core and head on cached taps (tiny_cnn's four: the backbones' own
  forward and backward are the full-model test's above)."""
  config = _config(variant=variant, task=task, num_classes=5, backbone="tiny_cnn",
                   fixed_layer="t3")
  params, state = model.init_model(jax.random.key(0), config, (64, 64, 3))
  images = jax.random.normal(jax.random.key(1), (2, 64, 64, 3)) * 50
  taps, _ = model.apply_backbone(params, state, images, train=False, config=config)

  @jax.jit
  def loss_fn(params):
    outputs, _ = model.apply_head(params, state, taps, key=jax.random.key(2), temperature=0.5,
                                  train=True, config=config)
    return sum(jnp.sum(v ** 2) for v in outputs.prediction.values()), outputs

  (value, outputs), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  assert np.isfinite(value)
  steps = 0 if variant == "posenet" else 2
  layers_ = 1 if variant in ("spatial_only", "posenet") else 4
  assert outputs.layer_choices.shape == (steps, 2, layers_)
  if task == "pose":
    assert outputs.prediction["position"].shape == (2, 3)
    np.testing.assert_allclose(jnp.linalg.norm(outputs.prediction["orientation"], axis=-1), 1,
                               rtol=1e-5)
  else:
    assert outputs.prediction["logits"].shape == (2, 5)
  for group in ("core", "head"):
    leaves = jax.tree.leaves(grads[group])
    assert all(np.all(np.isfinite(g)) for g in leaves), group
    assert any(np.any(g != 0) for g in leaves), group


def test_eval_is_deterministic_and_independent_of_the_batch():
  config = _config(backbone="torchvision")
  params, state = model.init_model(jax.random.key(0), config, (48, 48, 3))
  images = jax.random.normal(jax.random.key(1), (3, 48, 48, 3)) * 50
  apply = jax.jit(lambda p, s, x: model.apply_model(p, s, x, train=False,
                                                    config=config)[0])
  full, again, single = apply(params, state, images), apply(params, state, images), apply(
      params, state, images[:1])
  jax.tree.map(np.testing.assert_array_equal, full, again)
  np.testing.assert_allclose(single.prediction["position"][0], full.prediction["position"][0],
                             rtol=1e-4, atol=1e-5)


def test_bfloat16_backbone_stays_close_to_the_float32_reference():
  """dtype='bfloat16' runs the whole model in bfloat16 (tests/test_precision.py); its
  outputs are float32 and close to the float32 model's."""
  reference = _config(backbone="torchvision", variant="spatial_only", fixed_layer="4e")
  half = dataclasses.replace(reference, dtype="bfloat16")
  params, state = model.init_model(jax.random.key(0), reference, (32, 32, 3))
  images = jax.random.normal(jax.random.key(1), (2, 32, 32, 3)) * 50

  def predict(config):
    apply = lambda p, s, x: model.apply_model(p, s, x, train=False, config=config)
    return jax.jit(apply)(params, state, images)[0].prediction

  reference_out, half_out = predict(reference), predict(half)
  assert half_out["position"].dtype == jnp.float32
  assert not np.array_equal(half_out["position"], reference_out["position"])  # really bf16
  np.testing.assert_allclose(half_out["position"], reference_out["position"], rtol=0.02,
                             atol=0.02)
  np.testing.assert_allclose(half_out["orientation"], reference_out["orientation"], atol=0.02)


def test_position_heads_start_at_the_training_mean():
  params, _ = model.init_model(jax.random.key(0), _config(), (32, 32, 3),
                               position_mean=[10.0, -2.0, 3.0])
  for head in [params["head"], *params["step_heads"]]:
    np.testing.assert_array_equal(head["bias"], [10, -2, 3, 1, 0, 0, 0])


@pytest.fixture(scope="module")
def tiny_model():
  """(config, params, state, images): the tiny model at 48x48, three different images."""
  config = _config(backbone="torchvision")
  params, state = model.init_model(jax.random.key(0), config, (48, 48, 3))
  images = jax.random.normal(jax.random.key(1), (3, 48, 48, 3)) * 50
  return config, params, state, images


def _step1_logits(config, params, state, images):
  """Step-1 layer logits [mode, B, k] in eval and in train mode, through the public API."""
  def logits(params, state, images, key):
    outputs = [model.apply_model(params, state, images, key=k, train=train,
                                 config=config)[0].layer_logits[0]
               for train, k in ((False, None), (True, key))]
    return jnp.stack(outputs)
  return np.asarray(jax.jit(logits)(params, state, images, jax.random.key(2)))


def test_step1_layer_logits_depend_on_the_image(tiny_model):
  """[47]'s image-conditioned initial state: step 1 chooses per image, not per dataset."""
  config, params, state, images = tiny_model
  logits = _step1_logits(config, params, state, images)
  for mode in logits:  # eval, train
    assert np.max(np.abs(mode - mode[0])) > 1e-3, mode
  # The constant initial state (the old behaviour) gives every image the same logits.
  constant = dataclasses.replace(config, core=dataclasses.replace(
      config.core, initial_state="constant"))
  params, state = model.init_model(jax.random.key(0), constant, (48, 48, 3))
  logits = _step1_logits(constant, params, state, images)
  np.testing.assert_allclose(logits, np.broadcast_to(logits[:, :1], logits.shape), atol=1e-6)


def test_each_step_keeps_and_uses_its_own_batch_norm_statistics(tiny_model):
  config, params, state, images = tiny_model
  train = jax.jit(lambda s, k: model.apply_model(params, s, images, key=k, train=True,
                                                 config=config)[1])
  for step in range(3):
    state = train(state, jax.random.key(step))
  for leaf in jax.tree.leaves(state["core"]):
    assert leaf.shape[0] == 2  # N = 2 steps, one set of statistics each
    assert np.max(np.abs(leaf[0] - leaf[1])) > 1e-6
  # Evaluation normalises step t with step t's statistics: changing step 2's
  # leaves step 1 alone and changes step 2.
  evaluate = jax.jit(lambda s: model.apply_model(params, s, images, train=False,
                                                 config=config)[0].layer_logits)
  changed = dict(state, core=jax.tree.map(lambda x: x.at[1].add(0.5), state["core"]))
  before, after = evaluate(state), evaluate(changed)
  np.testing.assert_array_equal(before[0], after[0])
  assert np.max(np.abs(before[1] - after[1])) > 1e-4


def test_every_step_predicts_and_the_last_is_the_prediction(tiny_model):
  config, params, state, images = tiny_model
  assert [h["kernel"].shape for h in params["step_heads"]] == [(8, 7)]
  assert params["head"]["kernel"].shape == (16, 7)
  outputs, _ = jax.jit(lambda p, s, x: model.apply_model(p, s, x, train=False,
                                                         config=config))(params, state, images)
  steps = outputs.step_predictions
  assert steps["position"].shape == (2, 3, 3) and steps["orientation"].shape == (2, 3, 4)
  for name, value in outputs.prediction.items():
    np.testing.assert_array_equal(steps[name][-1], value)
  # Step 1's head reads only step 1's pooled state (the first hidden_size features).
  head = params["step_heads"][0]
  expected = outputs.features[:, :8] @ head["kernel"] + head["bias"]
  np.testing.assert_allclose(steps["position"][0], expected[:, :3], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(steps["orientation"], axis=-1), 1, rtol=1e-5)


def _config_dict(**overrides):
  config = defaults.get_config()
  config.update(overrides)
  return config


def test_from_config_reads_the_paper_defaults():
  config = model.ModelConfig.from_config(_config_dict())
  assert config.core.num_steps == 3 and config.core.hidden_size == 96
  assert config.layer_names == ("Conv-3B", "Conv-4C", "Conv-4E", "Conv-5B")
  spatial = model.ModelConfig.from_config(_config_dict(model_variant="spatial_only",
                                                       fixed_layer="4e"))
  assert spatial.layers == ("4e",) and not spatial.core.select_layer


@pytest.mark.parametrize("key, value", [
    ("model_variant", "attention"), ("candidate_layers", ("3b", "6a")), ("backbone", "vgg"),
    ("task", "depth"), ("num_recurrent_steps", 0), ("fixed_layer", "2a")])
def test_bad_values_name_their_key(key, value):
  with pytest.raises(LsattnError, match=key):
    config_checks.check_config(_config_dict(**{key: value}))


def test_classification_needs_classes():
  with pytest.raises(LsattnError, match="num_classes"):
    config_checks.check_config(_config_dict(task="classification", num_classes=1))


def test_wrong_image_shape_is_refused():
  config = _config()
  params, state = model.init_model(jax.random.key(0), config, (32, 32, 3))
  with pytest.raises(LsattnError, match="RGB"):
    model.apply_model(params, state, jnp.zeros((1, 32, 32, 4)), train=False,
                      config=config)


def test_too_small_image_is_refused():
  config = _config(backbone="torchvision")
  params, state = model.init_model(jax.random.key(0), config, (32, 32, 3))
  with pytest.raises(LsattnError, match="at least 32x32"):
    model.apply_model(params, state, jnp.zeros((1, 16, 40, 3)), train=False,
                      config=config)


@pytest.mark.parametrize("backbone, weights, setting, expected", [
    ("torchvision", "googlenet.pth", "auto", True),   # its pretrained weights expect it
    ("torchvision", "", "auto", False),               # random weights: nothing to match
    ("torchvision", "", "on", True),
    ("torchvision", "googlenet.pth", "off", False),
    ("caffe", "places.npz", "on", False),             # Caffe's input is BGR minus the mean
])
def test_torchvision_transform_input_follows_the_weights(backbone, weights, setting, expected):
  from configs import test as test_config
  config = test_config.get_config()
  config.backbone, config.backbone_weights = backbone, weights
  config.torchvision_transform_input = setting
  model_config = model.ModelConfig.from_config(config)
  assert model_config.transform_input is expected
  assert model.backbone_module(model_config).transform_input is expected
  config.torchvision_transform_input = "yes"
  with pytest.raises(LsattnError, match=r"config.torchvision_transform_input = 'yes': expected "
                                        r"one of \('auto', 'on', 'off'\)$"):
    config_checks.check_config(config)
