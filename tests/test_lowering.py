"""The train step, the eval step and the exported predict function lower for GPU and TPU
on this CPU-only jax (`jax.export`), with nothing CPU-only baked in (issue 33, part 2).

What is CPU-only is chosen by the platform a program runs on: 'auto' kernels and the
scan's auto unroll are decided for the platforms lowered for
(`compute_options.lowering_for`, used by `compilation.export_for` and `export.py`),
not for the CPU backend the tracing runs on; the YNNPACK options are given to a CPU
compile only; lsattn sets no collective implementation (JAX picks Gloo on CPU).
Small shapes: tiny_cnn at 32x32, batch 2, N = 2; lowering only, nothing compiled.
"""

import pathlib
import re
import shutil

import jax
import jax.numpy as jnp
import pytest

from configs import test as test_config
from lsattn import exporting, model, training
from lsattn.evaluation import loop as eval_loop
from lsattn.nn import compute_options, core
from lsattn.runs import compilation, run_folder

FIXTURE = pathlib.Path(__file__).resolve().parent / "fixtures" / "run_v0_1_0"
PLATFORMS = ("cuda", "tpu")
LSATTN = pathlib.Path(exporting.__file__).resolve().parent


def _config(kernels: str = "auto"):
  config = test_config.get_config()
  config.batch_size = 2
  config.kernels = kernels
  return config


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def _train_args(config, model_config):
  size = config.image_size
  state = jax.eval_shape(lambda key: training.create_train_state(
      key, config, model_config, (size, size, 3)), jax.random.key(0))
  batch = {"image": jax.ShapeDtypeStruct((config.batch_size, size, size, 3), jnp.float32),
           "position": jax.ShapeDtypeStruct((config.batch_size, 3), jnp.float32),
           "orientation": jax.ShapeDtypeStruct((config.batch_size, 4), jnp.float32)}
  return _abstract(state), batch, jax.random.key(1)


def _lowered(step: str, platform: str, kernels: str = "auto") -> str:
  """The StableHLO text of `step` ('train' or 'eval') exported for `platform`."""
  config = _config(kernels)
  model_config = model.ModelConfig.from_config(config)
  state, batch, rng = _train_args(config, model_config)
  if step == "train":
    exported = compilation.export_for(training.make_train_step(config, model_config),
                                      (platform,), state, batch, rng)
  else:
    exported = compilation.export_for(eval_loop.make_eval_step(model_config), (platform,),
                                      state.params, state.model_state, batch["image"])
  assert exported.platforms == (platform,)
  return _program(exported)


# An MLIR location: ` loc(#loc12)`, ` loc("x")`, ` loc("name"(#loc3))`.
_LOCATION = re.compile(r" loc\((?:[^()]|\([^()]*\))*\)")


def _program(exported) -> str:
  """The module's text without its source locations (which name the calling lines)."""
  text = exported.mlir_module()
  lines = [_LOCATION.sub("", line) for line in text.splitlines()
           if not line.startswith("#loc")]
  program = "\n".join(lines)
  assert "loc(" not in program and "stablehlo." in program
  return program


@pytest.mark.parametrize("step", ["train", "eval"])
@pytest.mark.parametrize("platform", PLATFORMS)
def test_steps_lower_for_the_accelerator_with_its_own_choices(step, platform):
  auto = _lowered(step, platform)
  # 'auto' resolved for the platform lowered for, not for this CPU: the generic
  # kernels, the scan kept as one loop body (N = 2), no CPU option or library.
  assert auto == _lowered(step, platform, kernels="generic")
  assert auto != _lowered(step, platform, kernels="cpu")
  assert "stablehlo.while" in auto
  assert "ynn" not in auto.lower() and "gloo" not in auto.lower()


def test_lowering_for_this_cpu_keeps_the_cpu_choices():
  """The same path for 'cpu' bakes in the CPU's choices, so the test above can fail."""
  auto = _lowered("eval", "cpu")
  assert auto == _lowered("eval", "cpu", kernels="cpu")
  assert "stablehlo.while" not in auto  # the scan unrolled on CPU


def test_auto_choices_follow_the_platforms_lowered_for():
  assert jax.default_backend() == "cpu"
  assert compute_options.resolve_kernels("auto") == "cpu"
  for platforms, expected in ((("cuda",), "generic"), (("tpu",), "generic"),
                              (("cpu",), "cpu"), (("cpu", "cuda"), "generic")):
    with compute_options.lowering_for(platforms):
      assert compute_options.resolve_kernels("auto") == expected
      assert compute_options.resolve_kernels("cpu") == "cpu"  # an explicit choice stays
      unroll = core._unroll(core.CoreConfig(num_steps=3))
      assert unroll == (3 if expected == "cpu" else 1)
  assert compute_options.resolve_kernels("auto") == "cpu"  # the context is left


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_cpu_compiler_options_are_for_a_cpu_compile_only(platform):
  for kernels in compute_options.KERNELS:
    assert compilation.step_compiler_options(kernels, "dot,reduce", platform) is None
  assert compilation.step_compiler_options("auto", "dot,reduce", "cpu")  # here they apply


def test_no_module_sets_the_collectives_implementation():
  """Gloo is JAX's choice for CPU collectives at run time; lsattn never fixes it."""
  sources = [path.read_text() for path in LSATTN.rglob("*.py")]
  assert sources
  assert not any("collectives_implementation" in text for text in sources)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_exported_predict_function_lowers_for_the_accelerator(platform, tmp_path):
  """`export.py --platforms=<platform>` on a run folder, from this CPU-only machine."""
  run = shutil.copytree(FIXTURE / "run", tmp_path / "run")
  output = tmp_path / f"model_{platform}.jax"
  description = exporting.export_run(run, output, platforms=(platform,))
  assert description["platforms"] == [platform]
  exported, _ = exporting.load(output)
  assert exported.platforms == (platform,)
  text = _program(exported)
  assert "stablehlo.while" in text  # the fixture's N = 2 steps: one loop body, not unrolled
  assert "ynn" not in text.lower()
  # The run exported with explicit 'generic' kernels (a run-time key) gives the same
  # module; with 'cpu' kernels another one.
  for kernels, same in (("generic", True), ("cpu", False)):
    config = run_folder.read(run)
    config.kernels = kernels
    exporting.export_run(run, tmp_path / f"{kernels}.jax", config, platforms=(platform,))
    other, _ = exporting.load(tmp_path / f"{kernels}.jax")
    assert (_program(other) == text) == same, kernels
