"""Train step, schedules, frozen backbone, non-finite handling, config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import test as test_config
from lsattn import LsattnError, config_checks, model, training


@pytest.fixture(scope="module")
def setup():
  config = test_config.get_config()
  model_config = config_checks.check_config(config)
  return config, model_config


@pytest.fixture(scope="module")
def frozen_step(setup):
  """One compiled train step (frozen backbone) shared by the tests that only run it."""
  config, model_config = setup
  assert config.freeze_backbone
  return jax.jit(training.make_train_step(config, model_config), donate_argnums=0)


def _initial_state(config, model_config):
  return training.create_train_state(jax.random.key(0), config, model_config, (32, 32, 3))


def _batch(size=4, image=32, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": rng.normal(0, 50, (size, image, image, 3)).astype(np.float32),
          "position": rng.normal(0, 1, (size, 3)).astype(np.float32),
          "orientation": np.tile(np.float32([1, 0, 0, 0]), (size, 1))}


@pytest.mark.parametrize("kind, expected_middle", [
    ("linear", 0.75), ("exponential", 0.5 ** 0.5), ("cosine", 0.75), ("constant", 1.0)])
def test_temperature_schedules_go_from_init_to_final(setup, kind, expected_middle):
  config = setup[0].copy_and_resolve_references()
  config.temperature_schedule = kind
  config.num_train_steps = 100
  schedule = training.temperature_schedule(config)
  final = 1.0 if kind == "constant" else 0.5
  np.testing.assert_allclose(schedule(0), 1.0, rtol=1e-6)
  np.testing.assert_allclose(schedule(50), expected_middle, rtol=1e-5)
  np.testing.assert_allclose(schedule(100), final, rtol=1e-5)
  np.testing.assert_allclose(schedule(1000), final, rtol=1e-5)  # stays at the end value


def test_learning_rate_warmup_then_cosine(setup):
  config = setup[0].copy_and_resolve_references()
  config.learning_rate_schedule, config.warmup_steps, config.num_train_steps = "cosine", 10, 110
  schedule = training.learning_rate_schedule(config)
  np.testing.assert_allclose([schedule(0), schedule(5), schedule(10), schedule(110)],
                             [0.0, 5e-4, 1e-3, 0.0], atol=1e-8)


def test_end_to_end_train_step_changes_params_and_is_deterministic(setup):
  config = setup[0].copy_and_resolve_references()
  config.freeze_backbone = False
  model_config = setup[1]
  step = jax.jit(training.make_train_step(config, model_config), donate_argnums=0)
  results = []
  for _ in range(2):
    state = _initial_state(config, model_config)
    for i in range(2):
      state, metrics = step(state, _batch(seed=i), jax.random.key(3))
    results.append((jax.device_get(state.params), jax.device_get(metrics)))
  (params_a, metrics_a), (params_b, metrics_b) = results
  jax.tree.map(np.testing.assert_array_equal, params_a, params_b)
  assert metrics_a["loss"] == metrics_b["loss"]
  initial = training.create_train_state(jax.random.key(0), config, model_config, (32, 32, 3))
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), params_a, jax.device_get(
      initial.params))
  assert any(jax.tree.leaves(changed["core"])) and any(jax.tree.leaves(changed["head"]))
  assert any(jax.tree.leaves(changed["backbone"]))
  assert int(state.step) == 2 and metrics_a["layer_counts"].shape == (2, 4)
  np.testing.assert_allclose(metrics_a["layer_counts"].sum(axis=1), 4)


def test_backbone_learning_rate_scale_scales_only_the_backbones_updates(setup):
  config = setup[0].copy_and_resolve_references()
  config.freeze_backbone = False
  rng = np.random.default_rng(0)
  params = {name: {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}
            for name in ("backbone", "core", "head")}
  grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
           for _ in range(3)]

  def updates(scale):  # three Adam steps: the moments differ from the first step's
    config.backbone_learning_rate_scale = scale
    optimizer = training.make_optimizer(config)
    state, out = optimizer.init(params), []
    for grad in grads:
      update, state = optimizer.update(grad, state, params)
      out.append(update)
    return out

  for plain, scaled in zip(updates(1.0), updates(0.1)):
    np.testing.assert_allclose(scaled["backbone"]["w"], 0.1 * plain["backbone"]["w"], rtol=1e-6)
    for name in ("core", "head"):
      np.testing.assert_array_equal(scaled[name]["w"], plain[name]["w"])
    assert np.all(plain["backbone"]["w"] != 0)


def test_backbone_learning_rate_scale_with_a_frozen_backbone_is_refused(setup):
  config = setup[0].copy_and_resolve_references()
  assert config.freeze_backbone
  config.backbone_learning_rate_scale = 0.1
  with pytest.raises(LsattnError, match=r"^config.backbone_learning_rate_scale = 0.1: "
                     r"expected 1.0 with freeze_backbone=True"):
    config_checks.check_config(config)


def test_frozen_backbone_gets_exactly_zero_updates(setup, frozen_step):
  state, step = _initial_state(*setup), frozen_step
  before = jax.device_get(state.params)
  state, _ = step(state, _batch(), jax.random.key(1))
  after = jax.device_get(state.params)
  jax.tree.map(np.testing.assert_array_equal, before["backbone"], after["backbone"])
  assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(before["head"]),
                                            jax.tree.leaves(after["head"])))


def test_nonfinite_batch_is_skipped_and_counted(setup, frozen_step):
  state, step = _initial_state(*setup), frozen_step
  state, _ = step(state, _batch(), jax.random.key(1))
  good = jax.device_get(state)
  bad = _batch()
  bad["image"][0, 0, 0, 0] = np.nan
  state, metrics = step(state, bad, jax.random.key(1))
  assert int(metrics["nonfinite"]) == 1
  after = jax.device_get(state)
  jax.tree.map(np.testing.assert_array_equal, good.params, after.params)
  jax.tree.map(np.testing.assert_array_equal, good.opt_state, after.opt_state)
  assert int(after.step) == 2 and int(after.skipped_steps) == 1
  assert int(after.consecutive_nonfinite) == 1
  state, metrics = step(state, _batch(seed=5), jax.random.key(1))
  assert int(metrics["nonfinite"]) == 0 and int(state.consecutive_nonfinite) == 0
  assert int(state.max_consecutive_nonfinite) == 1
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(jax.device_get(state.params)))


def test_learned_loss_weighting_parameters_train(setup):
  config = setup[0].copy_and_resolve_references()
  config.learned_loss_weighting = True
  state = _initial_state(config, setup[1])
  step = jax.jit(training.make_train_step(config, setup[1]), donate_argnums=0)
  np.testing.assert_allclose([state.params["loss"]["s_x"], state.params["loss"]["s_q"]],
                             [0.0, -3.0])
  state, metrics = step(state, _batch(), jax.random.key(1))
  assert float(state.params["loss"]["s_x"]) != 0.0 and "s_q" in metrics


@pytest.mark.parametrize("key, value, message", [
    ("num_train_steps", 0, "num_train_steps"),
    ("temperature_init", 0.0, "temperature_init"),
    ("temperature_final", -1.0, "temperature_final"),
    ("beta", -1.0, "beta"),
    ("image_size", 100, "image_size"),
    ("model_variant", "magic", "model_variant"),
    ("candidate_layers", ("3b", "9z"), "candidate_layers"),
    ("random_flip", True, "random_flip"),
    ("temperature_schedule", "fast", "temperature_schedule"),
])
def test_bad_config_values_name_the_key(setup, key, value, message):
  config = setup[0].copy_and_resolve_references()
  config[key] = value
  with pytest.raises(LsattnError, match=message):
    config_checks.check_config(config)


def test_unknown_config_key_is_refused(setup):
  config = setup[0].copy_and_resolve_references()
  config.num_trian_steps = 5
  with pytest.raises(LsattnError, match="num_trian_steps"):
    config_checks.check_config(config)


def test_every_config_file_passes_the_checks():
  import importlib
  for name, args in [("default", ()), ("demo_pose", ()), ("demo_scenes", ()),
                     ("seven_scenes", ("office",)), ("cambridge", ("old_hospital",)),
                     ("tum_lsi", ()), ("mit67", ()), ("ablation", ("spatial_4e,mit67",)),
                     ("ablation", ("layer_only,tum_lsi",)), ("posenet", ("seven_scenes/fire",))]:
    module = importlib.import_module(f"configs.{name}")
    model_config = config_checks.check_config(module.get_config(*args))
    assert isinstance(model_config, model.ModelConfig), name
  for name in ("demo_pose", "demo_scenes"):  # their first backbone, as their docstrings say
    config = importlib.import_module(f"configs.{name}").get_config()
    config.backbone, config.backbone_weights = "caffe", ""
    assert config_checks.check_config(config).backbone == "caffe"


def test_initial_state_is_init_model_with_a_shared_backbone_program(setup):
  """The backbone is initialised by its own program, shared by models with the same
  deepest tap, and the values are those of model.init_model on the same key."""
  config, model_config = setup
  state = training.create_train_state(jax.random.key(3), config, model_config, (32, 32, 3),
                                      position_mean=np.ones(3))
  seed = jax.random.randint(jax.random.key(3), (), 0, jnp.iinfo(jnp.int32).max)
  rng = jax.random.key(seed, impl="unsafe_rbg")
  reference, _ = jax.jit(lambda r: model.init_model(r, model_config, (32, 32, 3),
                                                    position_mean=jnp.ones(3)))(rng)
  assert jax.tree.structure(state.params) == jax.tree.structure(reference)
  for ours, theirs in zip(jax.tree.leaves(state.params), jax.tree.leaves(reference)):
    np.testing.assert_array_equal(ours, theirs)
  programs = model._init_backbone._cache_size()
  baseline = config.copy_and_resolve_references()
  baseline.model_variant = "posenet"  # taps only 5b, the test config's deepest layer
  posenet = training.create_train_state(jax.random.key(3), baseline,
                                        config_checks.check_config(baseline), (32, 32, 3),
                                        position_mean=np.ones(3))
  assert model._init_backbone._cache_size() == programs  # the same program
  for ours, theirs in zip(jax.tree.leaves(posenet.params["backbone"]),
                          jax.tree.leaves(state.params["backbone"])):
    np.testing.assert_array_equal(ours, theirs)


def test_unknown_keys_are_refused_without_the_repository(tmp_path):
  """The key schema is in the package: a copy of lsattn/ alone (as installed, no
  configs/ beside it) still refuses a misspelled key."""
  import pathlib
  import shutil
  import subprocess
  import sys
  root = pathlib.Path(__file__).resolve().parent.parent
  shutil.copytree(root / "lsattn", tmp_path / "site" / "lsattn",
                  ignore=shutil.ignore_patterns("__pycache__"))
  script = ("from lsattn import LsattnError, config_checks, config_schema as defaults\n"
            "config = defaults.get_config()\n"
            "config.batchsize = 4\n"
            "try:\n"
            "  config_checks.check_config(config)\n"
            "except LsattnError as error:\n"
            "  print(error)\n"
            "try:\n"
            "  import configs\n"
            "except ImportError:\n"
            "  print('no configs')\n")
  result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "site")})
  assert result.returncode == 0, result.stderr
  assert "unknown config key(s) ['batchsize']" in result.stdout
  assert result.stdout.strip().endswith("no configs")
