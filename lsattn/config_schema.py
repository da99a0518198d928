"""Every config key, declared once: default, allowed values, one-line doc, kind.

`KEYS` is the schema. Everything else about a key is derived from it:

* `get_config()`: a config with every key at its default (the base of
  configs/default.py and every other config);
* `listing()`: the keys documented in configs/default.py;
* `check_values(config)` (called by `config_checks`): each value against
  its domain, before any compute: types, choices, integer ranges, and
  numbers finite (an infinite learning rate, beta or temperature trains
  NaN parameters or nothing, without an error);
* `run_keys()` / `runtime_keys()` (`run_folder`): what a given config may not
  / may change of a run (a run key changes the model, its input or its data);
* `signature_paths()` (`checkpoint.shape_signature`): where a key's resolved
  value sits in a checkpoint's shape signature.

Adding a key is one `Key(...)` here, plus the code that uses it. Checks that
relate several keys (image_size within resize_size, flips only for
classification, the backbone's taps) stay in `config_checks` and `model`.
The schema lives in the package so that an installed lsattn, without the
repository's configs/ beside it, still refuses unknown keys; it imports
nothing of lsattn but its error type.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import ml_collections

from lsattn.errors import LsattnError

RUN = "run"  # changes the model, its input or its data: fixed for the run's life
RUNTIME = "runtime"  # how a run runs (folders, budgets, logging, compilation)


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class Choice:
  values: tuple

  def accepts(self, value) -> bool:
    return isinstance(value, type(self.values[0])) and value in self.values

  def describe(self) -> str:
    return f"one of {self.values}"


@dataclasses.dataclass(frozen=True)
class Integer:
  minimum: int
  maximum: int | None = None

  def accepts(self, value) -> bool:
    return _is_int(value) and value >= self.minimum and (self.maximum is None
                                                         or value <= self.maximum)

  def describe(self) -> str:
    if self.maximum is None:
      return f"an integer >= {self.minimum}"
    return f"an integer in [{self.minimum}, {self.maximum}]"


@dataclasses.dataclass(frozen=True)
class Number:
  """A finite real number >= minimum (> minimum when `above`)."""
  minimum: float
  above: bool = False

  def accepts(self, value) -> bool:
    return _is_number(value) and (value > self.minimum if self.above else value >= self.minimum)

  def describe(self) -> str:
    return f"a finite number {'>' if self.above else '>='} {self.minimum:g}"


@dataclasses.dataclass(frozen=True)
class Boolean:
  def accepts(self, value) -> bool:
    return isinstance(value, bool)

  def describe(self) -> str:
    return "True or False"


@dataclasses.dataclass(frozen=True)
class Text:
  def accepts(self, value) -> bool:
    return isinstance(value, str)

  def describe(self) -> str:
    return "a string"


@dataclasses.dataclass(frozen=True)
class Integers:
  """A tuple of integers >= 1: `count` of them (None: one or more), odd if `odd`."""
  count: int | None = None
  odd: bool = False

  def accepts(self, value) -> bool:
    return (isinstance(value, (tuple, list)) and len(value) == (self.count or len(value)) > 0
            and all(_is_int(v) and v >= 1 and (v % 2 == 1 or not self.odd) for v in value))

  def describe(self) -> str:
    what = "odd integers >= 1" if self.odd else "integers >= 1"
    return f"{self.count} {what}" if self.count else f"one or more {what}"


@dataclasses.dataclass(frozen=True)
class Names:
  """A tuple of strings (their meaning checked where it is known: the backbone's taps)."""

  def accepts(self, value) -> bool:
    return isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value)

  def describe(self) -> str:
    return "a tuple of names"


@dataclasses.dataclass(frozen=True)
class ChannelMean:
  def accepts(self, value) -> bool:
    return isinstance(value, (tuple, list)) and (
        len(value) == 0 or (len(value) == 3 and all(_is_number(v) and 0 <= v <= 255
                                                    for v in value)))

  def describe(self) -> str:
    # A mean of 0-255 pixels lies in [0, 255]; one outside (1e30) made every image the same
    # input, so every prediction the same, without an error.
    return "() (the dataset's mean) or three numbers in [0, 255] (R, G, B)"


Domain = Choice | Integer | Number | Boolean | Text | Integers | Names | ChannelMean


@dataclasses.dataclass(frozen=True)
class Key:
  """One config key.

  Attributes:
    name: the key.
    default: its value in `get_config()`.
    domain: the values it may take (`check_values`).
    doc: one line for configs/default.py.
    kind: RUN (fixed for a run: eval, predict, export and a resume refuse a
      change) or RUNTIME.
    group: its section of the listing.
    signature: where its resolved value sits in a checkpoint's shape signature
      (dotted paths into `checkpoint.shape_signature`'s dict); () = not there.
  """
  name: str
  default: Any
  domain: Domain
  doc: str
  kind: str = RUNTIME
  group: str = ""
  signature: tuple[str, ...] = ()

  def __post_init__(self):
    # A malformed declaration is a programming error, found when lsattn is imported.
    assert self.kind in (RUN, RUNTIME), self
    assert not self.signature or self.kind == RUN, f"{self.name}: a signature key is a run key"
    assert self.domain.accepts(self.default), f"{self.name}: default outside its domain"

  def check(self, value) -> None:
    """Raises LsattnError('config.<name> = <value>: expected ...') outside the domain."""
    if not self.domain.accepts(value):
      raise LsattnError(f"config.{self.name} = {value!r}: expected {self.domain.describe()}")


def _keys(group: str, *keys: Key) -> tuple[Key, ...]:
  return tuple(dataclasses.replace(key, group=group) for key in keys)


# Choices the code implements (each module dispatches on them with if/elif/else):
# tests/test_config_keys.py checks these against the modules' own tuples.
MODEL_VARIANTS = ("layer_spatial", "spatial_only", "layer_only", "posenet", "lstm_posenet",
                  "googlenet")

KEYS: tuple[Key, ...] = (
    *_keys(
        "data",
        Key("dataset", "seven_scenes/chess", Text(), "'<builder>/<config>', e.g. "
            "'seven_scenes/chess' (lsattn/data/datasets.py)", RUN),
        Key("ground_truth", "dslam", Choice(("dslam", "sfm")), "a 7-Scenes scene's poses: "
            "'dslam' the original (the paper's), 'sfm' the SfM pseudo ground truth of "
            "Brachmann et al. 2021, a build of its own (docs/datasets.md); other datasets: "
            "'dslam' (their own poses)", RUN),
        Key("scenes", (), Names(), "several scenes of one dataset, one model for all "
            "('<builder>/<config>' names; dataset must be one of them); () = the one "
            "dataset (lsattn/data/scenes.py)", RUN),
        Key("scene_sampling", "equal", Choice(("equal", "by_size")), "with several scenes: "
            "each batch row's scene in turn ('equal') or in proportion to the scenes' "
            "training images ('by_size'; lsattn/data/pipeline.py)", RUN),
        Key("data_dir", "~/tensorflow_datasets", Text(), "where tfds keeps built datasets"),
        Key("manual_dir", "", Text(), "the user's download; for synthetic datasets lsattn "
            "writes it"),
        Key("resize_size", (256, 455), Integers(count=2), "(H, W) images are resized to "
            "before cropping", RUN),
        Key("image_size", 224, Integer(1), "side of the square crop the model sees", RUN,
            signature=("image_shape",)),
        Key("random_flip", False, Boolean(), "horizontal flips in training (classification "
            "only)"),
        Key("channel_mean", (), ChannelMean(), "RGB subtracted from every image; () = the "
            "train split's mean, stored with the dataset", RUN),
        Key("validation_split", "none", Choice(("none", "auto")), "'none': train on the "
            "whole training split, evaluate the last checkpoint (the paper's protocol); "
            "'auto': hold validation examples out, evaluate the best (lsattn/data/splits.py)",
            RUN),
        Key("input_pipeline", "threads", Choice(("threads", "grain")), "what makes the "
            "training batches: 'threads' in this process, 'grain' in worker processes; the "
            "same batches either way (lsattn/data/grain_loader.py)"),
        Key("input_workers", -1, Integer(-1), "grain's worker processes "
            "(input_pipeline='grain'): 0 = none (batches made in this process), -1 = one per "
            "usable core less one"),
    ),
    *_keys(
        "model",
        Key("task", "pose", Choice(("pose", "classification")), "what the head predicts", RUN,
            signature=("task",)),
        Key("num_classes", 0, Integer(0), "classes of a classification dataset (0 for pose)",
            RUN, signature=("num_classes",)),
        Key("model_variant", "layer_spatial", Choice(MODEL_VARIANTS), "the paper's model, "
            "its ablations (table 3) or a baseline: PoseNet, LSTM-PoseNet [42], GoogLeNet "
            "[38] (lsattn/model.py)", RUN,
            signature=("variant", "core.select_layer", "core.spatial_attention")),
        Key("fixed_layer", "", Text(), "the tap of 'spatial_only'; '' = the backbone's "
            "deepest (GoogLeNet: '5b')", RUN, signature=("fixed_layer",)),
        Key("candidate_layers", (), Names(), "the taps layer selection chooses from; () = "
            "all the backbone's (GoogLeNet: '3b', '4c', '4e', '5b')", RUN,
            signature=("candidate_layers",)),
        Key("backbone", "caffe", Text(), "a member of lsattn/backbones: 'caffe' | "
            "'torchvision' (GoogLeNet's two forms) | 'efficientnet_lite0' | 'tiny_cnn' (random "
            "only, for quick checks)", RUN,
            signature=("backbone",)),
        Key("backbone_weights", "", Text(), "a weights file the backbone reads, or a name "
            "it declares (a pip package's file, e.g. 'imagenet'); '' = random init"),
        Key("torchvision_transform_input", "auto", Choice(("auto", "on", "off")),
            "torchvision's input remapping; 'auto' = on with torchvision weights (its "
            "pretrained GoogLeNet expects it)", RUN),
        Key("freeze_backbone", False, Boolean(), "the backbone gets no updates", RUN,
            signature=("freeze_backbone",)),
        Key("num_recurrent_steps", 3, Integer(1), "N, recurrent steps (paper: 3 pose, 2 "
            "classification)", RUN, signature=("core.num_steps",)),
        Key("hidden_size", 96, Integer(1), "Conv-LSTM channels", RUN,
            signature=("core.hidden_size",)),
        Key("projection_size", 96, Integer(1), "D, the common width of the Conv-LSTM input",
            RUN, signature=("core.projection_size",)),
        Key("convlstm_kernel_sizes", (1, 3, 5, 7), Integers(odd=True), "kernels of the "
            "multi-convolutional Conv-LSTM (supplementary C.1)", RUN,
            signature=("core.convlstm_kernel_sizes",)),
        Key("attention_kernel_sizes", (1, 3, 5), Integers(odd=True), "kernels of the "
            "attention mask head C_A (supplementary C.1)", RUN,
            signature=("core.attention_kernel_sizes",)),
        Key("gate_embedding_size", 16, Integer(1), "E of layer selection's gate embedding",
            RUN, signature=("core.gate_embedding_size",)),
        Key("attention_nonlinearity", "leaky_relu", Choice(("leaky_relu", "relu")),
            "of spatial attention (supplementary A; eq. 1 writes ReLU)", RUN,
            signature=("core.attention_nonlinearity",)),
        Key("attention_branch_channels", 4, Integer(1), "channels of each branch of C_A "
            "(ours)", RUN, signature=("core.attention_branch_channels",)),
        Key("initial_state", "image", Choice(("image", "constant")), "(c0, h0) from the "
            "taps' means ([47]) or learned constants", RUN,
            signature=("core.initial_state",)),
        Key("dtype", "float32", Choice(("float32", "bfloat16")), "mixed precision for the "
            "whole model (ARCHITECTURE.md, Precision)", RUN, signature=("dtype",)),
    ),
    *_keys(
        "loss",
        Key("beta", 500.0, Number(0), "weight of the orientation term (eq. 4)"),
        Key("learned_loss_weighting", False, Boolean(), "learned weighting of position and "
            "orientation (Kendall 2017) instead of beta", RUN,
            signature=("learned_loss_weighting",)),
        Key("step_loss", "final", Choice(("final", "mean")), "'final': the final step's "
            "prediction (3.3); 'mean': the mean of every step head's loss"),
    ),
    *_keys(
        "optimisation",
        Key("learning_rate", 1e-4, Number(0, above=True), "Adam's step size"),
        Key("learning_rate_schedule", "constant", Choice(("constant", "cosine")),
            "after the warm-up"),
        Key("warmup_steps", 0, Integer(0), "linear warm-up from 0"),
        Key("backbone_learning_rate_scale", 1.0, Number(0, above=True), "the backbone's "
            "learning rate as a fraction of learning_rate (end to end only; ours: the paper "
            "gives one rate)", RUN),
        Key("temperature_schedule", "exponential",
            Choice(("exponential", "linear", "cosine", "constant")),
            "Gumbel-softmax temperature from temperature_init to temperature_final"),
        Key("temperature_init", 1.0, Number(0, above=True), "first temperature"),
        Key("temperature_final", 0.5, Number(0, above=True), "last temperature"),
        Key("temperature_decay_steps", 0, Integer(0), "steps to reach temperature_final; "
            "0 = num_train_steps"),
    ),
    *_keys(
        "loop",
        Key("seed", 0, Integer(0, 2**32 - 1), "parameters, batches and Gumbel noise", RUN),
        Key("batch_size", 40, Integer(1), "global training batch"),
        Key("eval_batch_size", 40, Integer(1), "global evaluation batch"),
        Key("num_train_steps", 30_000, Integer(1), "the training budget"),
        Key("log_every_steps", 100, Integer(1), "TensorBoard logs (the only host syncs)"),
        Key("eval_every_steps", 5_000, Integer(1), "validation (with validation_split)"),
        Key("checkpoint_every_steps", 1_000, Integer(1), "checkpoint interval"),
        Key("keep_checkpoints", 3, Integer(1), "checkpoints kept"),
        Key("nonfinite_policy", "skip", Choice(("skip", "stop")), "a step with a non-finite "
            "loss or gradient is skipped; 'stop' also stops after max_consecutive_nonfinite"),
        Key("max_consecutive_nonfinite", 10, Integer(1), "of nonfinite_policy='stop'"),
        Key("num_figure_examples", 4, Integer(0), "test images in the final evaluation's "
            "attention figures"),
        Key("eval_retrieval_baselines", True, Boolean(), "pose: the final evaluation's "
            "nearest-training-image baselines (knn_* in metrics.json)"),
        Key("eval_figures", True, Boolean(), "the final evaluation's figures in eval/"),
        Key("jax_distributed", False, Boolean(), "start jax.distributed (several hosts)"),
        Key("heartbeat_timeout_seconds", 100, Integer(1), "multi-process jobs: a process "
            "silent this long counts as dead and the job stops"),
    ),
    *_keys(
        "compilation",
        Key("scan_unroll", 0, Integer(0), "steps per compiled loop iteration; 0 = auto (full "
            "unroll on CPU; lsattn/nn/core.py)"),
        Key("kernels", "auto", Choice(("auto", "cpu", "generic")), "'cpu': the formulations "
            "measured fastest on CPU, 'generic': plain XLA ops, 'auto': by backend (same "
            "results; lsattn/runs/compilation.py)"),
        Key("remat", "none", Choice(("none", "blocks", "steps", "both")), "recompute the "
            "backbone's blocks and/or the recurrent steps in the backward pass: less "
            "memory, same results"),
        Key("xla_cpu_ynn_fusions", "dot,reduce", Text(), "op kinds XLA's CPU compiler gives "
            "YNNPACK ('xla_default' = XLA's choice; lsattn/runs/compilation.py)"),
        Key("compilation_cache_dir", "~/.cache/lsattn/jax_compilation", Text(),
            "JAX's persistent compilation cache ('' = none; JAX_COMPILATION_CACHE_DIR wins)"),
    ),
)
BY_NAME: dict[str, Key] = {key.name: key for key in KEYS}
assert len(BY_NAME) == len(KEYS), "a key declared twice"


def get_config() -> ml_collections.ConfigDict:
  """A fresh config with every key at its default."""
  return ml_collections.ConfigDict({key.name: key.default for key in KEYS})


def choices(name: str) -> tuple:
  """The values a choice key allows."""
  return BY_NAME[name].domain.values


def run_keys() -> tuple[str, ...]:
  return tuple(key.name for key in KEYS if key.kind == RUN)


def runtime_keys() -> tuple[str, ...]:
  return tuple(key.name for key in KEYS if key.kind == RUNTIME)


def signature_paths() -> dict[str, tuple[str, ...]]:
  """{key: its paths in the checkpoint's shape signature} of the keys that have some."""
  return {key.name: key.signature for key in KEYS if key.signature}


def check_values(config) -> None:
  """Raises LsattnError, one line naming key and value, for the first value outside its
  key's domain (keys the schema lacks are `config_checks`' to report)."""
  for key in KEYS:
    if key.name in config:
      key.check(config[key.name])


def jsonable(value):
  """`value` as JSON data: tuples (also inside dicts and lists) as lists."""
  if isinstance(value, dict):
    return {name: jsonable(item) for name, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [jsonable(item) for item in value]
  return value


def from_json(name: str, value):
  """A value read from JSON with the type of its key's default (lists back to tuples)."""
  if name in BY_NAME and isinstance(BY_NAME[name].default, tuple) and isinstance(value, list):
    return tuple(value)
  return value


def listing() -> str:
  """Every key by group, as configs/default.py documents them (reStructuredText)."""
  lines = []
  for group in dict.fromkeys(key.group for key in KEYS):
    lines += ["", f"{group.capitalize()}:", ""]
    for key in (key for key in KEYS if key.group == group):
      run = "; a run key" if key.kind == RUN else ""
      lines.append(f"* ``{key.name}`` = ``{key.default!r}`` ({key.domain.describe()}{run}): "
                   f"{key.doc}.")
  return "\n".join(lines) + "\n"
