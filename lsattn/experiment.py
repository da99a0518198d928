"""What train.py and eval.py run: ``train_and_evaluate`` and ``evaluate``.

The loop: check the config (before any compute), build or open the
dataset, create or restore the train state, then run the jitted train step
(state donated, batch split over the device mesh) with checkpoints every
``checkpoint_every_steps``, logs every ``log_every_steps`` (the only host
syncs), optional validation, and the test evaluation at the end, whose
eval/metrics.json names its ``protocol`` (`PROTOCOLS`): the paper's (the
whole training split, a fixed budget, the last checkpoint) or validation-
based checkpoint selection (``validation_split='auto'``). SIGTERM
and Ctrl-C save a checkpoint and stop with an `LsattnError` that says how to
resume (train.py exits with status 2: the run is not finished); outside the
loop they stop at once with one line (`lsattn.runs.interrupts`). train.py and
eval.py hold the run folder's lock (`lsattn.runs.run_lock`) while they write. What is
guaranteed, and the tests that prove it: RELIABILITY.md (its tests inject
faults by wrapping `training_batches` and `checkpoint.create_manager`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import sys
import time
from typing import Iterator

import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
import tqdm

from lsattn import config_checks, config_schema, model, restoring, training
from lsattn.backbones import loading
from lsattn.data import datasets, grain_loader, pipeline, scenes, splits
from lsattn.errors import LsattnError
from lsattn.evaluation import loop as eval_loop
from lsattn.runs import (atomic, checkpoint, choice_dynamics, compilation, interrupts, memory,
                         parallel, run_folder, run_lock)

__all__ = ["LsattnError", "Setup", "evaluate", "setup", "start_training", "train_and_evaluate"]

# The training loaders `config.input_pipeline` chooses from (benchmarks/results/
# 2026-12-06-grain.md measures them).
INPUT_PIPELINES = ("threads", "grain")


@dataclasses.dataclass
class Setup:
  """Everything derived from the config that train and eval share."""
  config: ml_collections.ConfigDict
  model_config: model.ModelConfig
  builder: tfds.core.DatasetBuilder
  train_split: pipeline.Split
  validation_split: pipeline.Split | None
  test_split: pipeline.Split
  options: pipeline.ImageOptions
  mesh: jax.sharding.Mesh
  class_names: tuple[str, ...] | None

  @property
  def image_shape(self):
    return (self.config.image_size, self.config.image_size, 3)


def start_training(config) -> model.ModelConfig:
  """Config checks and the multi-host start (`restoring.start`), and the training
  batch and the dataset's task: everything before the run folder is locked and the
  dataset built. Returns the model config."""
  model_config = restoring.start(config)
  parallel.check_batch_size(config.batch_size, "batch_size")
  _check_task(config)
  _check_memory(config, model_config)
  return model_config


# The keys that size a train step (`training.memory_needed`), named when it cannot fit.
SIZE_KEYS = ("hidden_size", "projection_size", "gate_embedding_size",
             "attention_branch_channels", "num_recurrent_steps", "convlstm_kernel_sizes",
             "attention_kernel_sizes", "num_classes", "image_size", "batch_size")


def _step_bytes(config, model_config: model.ModelConfig) -> tuple[int, dict[str, int]]:
  """(bytes the memory that holds a step needs at least, the parts): on CPU the host
  holds every local device's copy of the state and the whole batch; an accelerator its
  copy and its rows of the batch."""
  image_size = config.image_size
  parts = training.memory_needed(config, model_config, (image_size, image_size, 3))
  if memory.device_bytes() is None:
    copies, rows = jax.local_device_count(), 1
  else:
    copies, rows = 1, jax.device_count()
  return (parts["state"] + parts["gradients"]) * copies + parts["batch"] // rows, parts


def _check_memory(config, model_config: model.ModelConfig) -> None:
  """Refuses, before anything is written or compiled, a run whose train step cannot fit
  the host's or an accelerator's memory (a typo like hidden_size=1000000 otherwise
  hangs while its parameters are allocated), naming the keys that make it large."""
  needed, parts = _step_bytes(config, model_config)
  device = memory.device_bytes()
  limit, where = ((memory.host_bytes(), "this host's memory") if device is None
                  else (device, "an accelerator's memory"))
  if needed <= limit:
    return
  large = []
  defaults = config_schema.get_config()
  for key in SIZE_KEYS:
    if config_schema.jsonable(config[key]) == config_schema.jsonable(defaults[key]):
      continue
    smaller = ml_collections.ConfigDict(config.to_dict())
    smaller[key] = defaults[key]
    try:
      at_default, _ = _step_bytes(smaller, config_checks.check_config(smaller))
    except LsattnError:  # the default does not go with the other keys (image_size)
      continue
    if at_default <= needed // 2:
      large.append(f"{key}={config[key]!r} (at its default {defaults[key]!r}: "
                   f"{atomic.describe_size(at_default)})")
  shown = ", ".join(f"{name} {atomic.describe_size(count)}" for name, count in parts.items())
  raise LsattnError(
      f"the train step needs at least {atomic.describe_size(needed)} ({shown}; activations come "
      f"on top), more than {where} ({atomic.describe_size(limit)}): "
      + (f"{'; '.join(large)} make{'s' if len(large) == 1 else ''} it large" if large else
         "reduce batch_size, image_size or the model's sizes")
      + ". Nothing was written.")


def _compiler_options(config) -> dict[str, str] | None:
  """The steps' compiler options for the run's kernels and YNNPACK fusions."""
  return compilation.step_compiler_options(config.kernels, config.xla_cpu_ynn_fusions)


def _check_task(config) -> None:
  if datasets.task_of(config.dataset) != config.task:
    raise LsattnError(f"config.task = {config.task!r} does not match dataset "
                      f"{config.dataset!r} ({datasets.task_of(config.dataset)})")


def setup(config, model_config: model.ModelConfig | None = None) -> Setup:
  """Config checks and multi-host start (unless `start_training` gave `model_config`), then the
  dataset, splits, image options and mesh."""
  if model_config is None:
    model_config = start_training(config)
  return _with_data(config, model_config, parallel.create_mesh())


def _with_data(config, model_config: model.ModelConfig, mesh: jax.sharding.Mesh) -> Setup:
  """The dataset (built if needed), its splits and image options, of a started config.

  Several scenes (`lsattn.data.scenes`): each is built as its own dataset and
  split as one would be (its own validation examples), then the scenes' splits
  are joined (`pipeline.concatenate`); the channel mean is that of all their
  training images (each scene's stored mean weighted by its training images:
  ours).
  """
  _check_task(config)
  names = scenes.scene_names(config.dataset, config.scenes)
  parts = [_scene_data(config, name) for name in names]
  builder = parts[names.index(config.dataset)][0]
  if len(parts) == 1:
    _, train_split, validation_split, test_split, stored_mean = parts[0]
  else:
    short = [scenes.short_name(name) for name in names]
    train_split = pipeline.concatenate([part[1] for part in parts], short)
    validation_split = None
    if any(part[2] is not None for part in parts):
      if not all(part[2] is not None for part in parts):
        lacking = [name for name, part in zip(names, parts) if part[2] is None]
        raise LsattnError(f"config.validation_split = 'auto': scene {lacking[0]!r} has no "
                          f"validation examples to hold out; use validation_split='none'")
      validation_split = pipeline.concatenate([part[2] for part in parts], short)
    test_split = pipeline.concatenate([part[3] for part in parts], short)
    weights = np.asarray([len(part[1]) for part in parts], np.float64)
    stored_mean = tuple(float(v) for v in np.average(
        np.asarray([part[4] for part in parts], np.float64), axis=0, weights=weights))
  mean = tuple(config.channel_mean) or stored_mean
  options = pipeline.ImageOptions(resize_size=tuple(config.resize_size),
                                  image_size=config.image_size, channel_mean=mean,
                                  random_flip=config.random_flip)
  class_names = None
  if config.task == "classification":
    class_names = datasets.class_names(builder, config.dataset, config.num_classes)
  return Setup(config, model_config, builder, train_split, validation_split, test_split,
               options, mesh, class_names)


def _scene_data(config, dataset: str):
  """One dataset's (builder, train split, validation split or None, test split, stored mean)."""
  builder = datasets.prepare(dataset, config.data_dir, config.manual_dir,
                             synthetic_seed=config.seed, ground_truth=config.ground_truth)
  full_train = pipeline.Split(builder, "train")
  if config.validation_split == "auto" and "validation" in builder.info.splits:
    # The user's own validation rows (own scenes: split column 'val').
    train_split, validation_split = full_train, pipeline.Split(builder, "validation")
  else:
    train_positions, validation_positions = splits.validation_split(
        full_train.labels.get("sequence"), len(full_train), config.validation_split,
        full_train.labels["image_name"])
    train_split = full_train.subset(train_positions)
    validation_split = (full_train.subset(validation_positions)
                        if len(validation_positions) else None)
  return (builder, train_split, validation_split, pipeline.Split(builder, "test"),
          tuple(builder.info.metadata["channel_mean"]))


def initial_state(run: Setup) -> training.TrainState:
  config = run.config
  position_mean = None
  if config.task == "pose" and run.model_config.num_scenes > 1:  # each scene's head its own
    labels = run.train_split.labels
    position_mean = np.stack([labels["position"][labels["scene"] == k].mean(axis=0)
                              for k in range(run.model_config.num_scenes)])
  elif config.task == "pose":
    position_mean = run.train_split.labels["position"].mean(axis=0)
  rng = jax.random.key(config.seed)
  state = training.create_train_state(rng, config, run.model_config, run.image_shape,
                                      position_mean=position_mean)
  if config.backbone_weights:
    loaded = loading.load_backbone_weights(config.backbone_weights, config.backbone)
    backbone_params = loading.select_like(state.params["backbone"], loaded["params"],
                                          "params", config.backbone_weights)
    params = dict(state.params, backbone=backbone_params)
    model_state = dict(state.model_state)
    if state.model_state["backbone"]:
      model_state["backbone"] = loading.select_like(
          state.model_state["backbone"], loaded["batch_stats"], "batch_stats",
          config.backbone_weights)
    state = state.replace(params=params, model_state=model_state,
                          opt_state=training.make_optimizer(config).init(params))
  return state


class _StopRequest:
  """Turns SIGTERM / Ctrl-C into a flag the loop checks between steps."""

  def __init__(self):
    self.signal = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    self.signal = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _meta(run: Setup, signature) -> dict:
  return {"signature": signature, "dataset": run.config.dataset,
          "ground_truth": run.config.ground_truth,
          "channel_mean": list(run.options.channel_mean),
          "class_names": list(run.class_names or []),
          "validation_split": run.config.validation_split}


def _check_validation_split(run: Setup, meta: dict, path) -> None:
  """Refuses a config whose validation_split differs from the checkpoint's run:
  it changes which examples are trained on, the protocol metrics.json reports
  and the mean-pose baseline (computed on the training examples)."""
  saved = meta.get("validation_split")
  if saved is not None and saved != run.config.validation_split:
    raise LsattnError(f"{path} was trained with validation_split={saved!r}, but the config "
                      f"has {run.config.validation_split!r}. Pass "
                      f"--config.validation_split={saved}, or use a new --workdir.")


@parallel.stop_on_peer_failure
def train_and_evaluate(config, workdir: str | pathlib.Path) -> dict:
  """Trains (resuming from workdir's latest checkpoint) and evaluates the test split.

  The run folder is locked for the whole run (`run_lock`); Ctrl-C or SIGTERM
  outside the training loop stop it with one line (`interrupts`).

  Returns:
    The test metrics (also in <workdir>/eval/metrics.json).
  """
  workdir = run_folder.check_workdir(workdir)
  with interrupts.stopping_on_signals(
      "the start (config checks, dataset build, restore)",
      "Run the same command again: it resumes from the last complete checkpoint.") as stage:
    model_config = start_training(config)
    with run_lock.holding(workdir, "train.py", enabled=jax.process_index() == 0):
      run_folder.check_entries(workdir)
      run_folder.check_resume(workdir, config)  # before the dataset is built
      return _train_and_evaluate(setup(config, model_config), workdir, stage)


def _train_and_evaluate(run: Setup, workdir: pathlib.Path, stage: interrupts.Stage) -> dict:
  config = run.config
  signature = checkpoint.shape_signature(config, run.model_config, run.image_shape)
  manager = checkpoint.create_manager(workdir, save_every=config.checkpoint_every_steps,
                                      keep=config.keep_checkpoints)
  replicated = parallel.replicated(run.mesh)
  state = initial_state(run)
  # A damaged latest step is kept aside, and the run resumes from the intact one before it.
  restored = checkpoint.restore_latest(manager, checkpoint.abstract_like(state, replicated),
                                       signature, fall_back=True)
  if restored is not None:
    _check_validation_split(run, restored[1], manager.directory / str(restored[2]))
    state = restored[0]
    print(f"Resuming from {manager.directory / str(restored[2])} (step {restored[2]}).",
          file=sys.stderr)
  if jax.process_index() == 0:
    path = run_folder.write(workdir, config)  # the run's config, for eval/predict/export
    _, given = run_folder.absolute_paths(config)
    if given:
      print(f"{path} holds the relative paths as absolute: " + ", ".join(
          f"{key}={value!r} -> {os.path.abspath(value)}" for key, value in given.items()),
          file=sys.stderr)
  state = parallel.replicate(state, run.mesh)
  start_step = int(jax.device_get(state.step))

  train_step = jax.jit(training.make_train_step(config, run.model_config), donate_argnums=0,
                       out_shardings=(replicated, replicated),
                       compiler_options=_compiler_options(config))
  train_rng = jax.random.fold_in(jax.random.key(config.seed), 1)
  batches = training_batches(run, start_step)
  logger = _Logger(workdir, run, start_step)
  best = None if run.validation_split is None else _BestCheckpoint(workdir, run, signature)
  history = []
  stage.set("training")
  with _StopRequest() as stop, tqdm.tqdm(total=config.num_train_steps, initial=start_step,
                                         desc="train", unit="step") as progress:
    for step in range(start_step, config.num_train_steps):
      batch = next(batches)
      state, metrics = train_step(state, parallel.shard_batch(batch, run.mesh), train_rng)
      history.append(metrics)
      done = step + 1
      progress.update(1)
      if done % config.log_every_steps == 0 or done == config.num_train_steps:
        summary = logger.train_metrics(done, history)
        history = []
        progress.set_postfix(loss=f"{summary['loss']:.4g}")
        _check_nonfinite(state, config, done)
      checkpoint.save(manager, done, state, _meta(run, signature))
      if best is not None and (done % config.eval_every_steps == 0
                               or done == config.num_train_steps):
        evaluated = _evaluate(run, state, run.validation_split, "validation")
        logger.validation(done, evaluated)
        best.consider(done, state, evaluated[1])
      if stop.signal is not None:
        if manager.latest_step() != done:  # not already saved at this step just above
          checkpoint.save(manager, done, state, _meta(run, signature), force=True)
        manager.wait_until_finished()
        raise LsattnError(f"stopped by {stop.signal} after step {done}; checkpoint saved in "
                          f"{manager.directory / str(done)}. Run the same command again to "
                          f"resume.")
  _check_trained(state, config)  # before the last save: never a non-finite latest checkpoint
  if manager.latest_step() != config.num_train_steps:
    checkpoint.save(manager, config.num_train_steps, state, _meta(run, signature), force=True)
  manager.wait_until_finished()
  step, selection = config.num_train_steps, None
  if best is not None:
    state, step, selection = best.restore()
  stage.set("the final evaluation", f"Training is finished (checkpoint of step {step}); "
            f"evaluate it with eval.py --workdir={workdir}.")
  interrupts.at_safe_points(f"the evaluation wrote nothing ({workdir / 'eval'} is as it was)")
  result = _final_evaluation(run, state, workdir, step=step, selection=selection)
  logger.close()
  return result


def training_batches(run: Setup, start_step: int) -> Iterator[dict]:
  """This process's rows of the training batches from `start_step` on (a pure function
  of seed and step, so a resumed run sees the batches an uninterrupted one would), made
  by the loader `config.input_pipeline` names: the same batches either way."""
  config = run.config
  batches = pipeline.TrainBatches(
      run.train_split, task=config.task, options=run.options, batch_size=config.batch_size,
      seed=config.seed, rows=parallel.process_batch_slice(config.batch_size),
      scene_sampling=config.scene_sampling)
  if config.input_pipeline == "threads":
    return batches.iterate(start_step)
  elif config.input_pipeline == "grain":
    workers = config.input_workers
    if workers == -1:
      workers = grain_loader.automatic_workers()
    return grain_loader.iterate(batches, start_step, workers)
  else:
    raise LsattnError(f"config.input_pipeline = {config.input_pipeline!r}: expected one of "
                      f"{INPUT_PIPELINES}")


def _check_nonfinite(state, config, step: int) -> None:
  worst = int(jax.device_get(state.max_consecutive_nonfinite))
  if config.nonfinite_policy == "stop" and worst >= config.max_consecutive_nonfinite:
    raise LsattnError(
        f"stopped at step {step}: {worst} consecutive train steps had a non-finite loss or "
        f"gradient (nonfinite_policy='stop', max_consecutive_nonfinite="
        f"{config.max_consecutive_nonfinite}); those updates were skipped, so the last "
        f"checkpoint holds finite params. Check the data and learning_rate.")


def _check_trained(state, config) -> None:
  """A run in which no step updated the model, or whose params are not finite, fails.

  The train step skips a step whose loss, gradients or new params are not
  finite, so a learning rate or loss weight that poisons every update would
  otherwise end with the untrained model's metrics and exit 0.
  """
  steps, skipped = (int(value) for value in jax.device_get((state.step, state.skipped_steps)))
  if steps and skipped >= steps:
    raise LsattnError(
        f"no train step updated the model: all {steps} steps had a non-finite loss, gradient "
        f"or parameter update and were skipped (learning_rate={config.learning_rate}, "
        f"beta={config.beta}); the checkpoints hold the initial params. Check these values "
        f"and the data, then use a new --workdir.")
  # On the host, in NumPy: jnp would compile one small program per leaf shape.
  if not all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(jax.device_get(state.params))):
    raise LsattnError(f"the params after step {steps} are not finite; the last checkpoint is "
                      f"not replaced by them. Check learning_rate and the data.")


def _evaluate(run: Setup, state, split, name) -> tuple[dict, dict]:
  eval_step = eval_loop.compiled_eval_step(
      run.model_config, run.mesh, _compiler_options(run.config))
  outputs = eval_loop.evaluate_split(eval_step, state.params, state.model_state, split,
                                      task=run.config.task, options=run.options,
                                      batch_size=run.config.eval_batch_size, mesh=run.mesh,
                                      description=name)
  if run.config.task == "pose":
    result = eval_loop.pose_metrics(outputs, split, run.train_split,
                                     run.model_config.layer_names)
  else:
    result = eval_loop.classification_metrics(outputs, split, run.class_names,
                                               run.model_config.layer_names)
  return outputs, result


# metrics.json "protocol": how the evaluated checkpoint was trained and chosen.
# The paper's: the whole training split, a fixed budget, the last checkpoint.
WHOLE_TRAIN_SPLIT_LAST_CHECKPOINT = "whole_train_split_last_checkpoint"
# validation_split='auto': validation examples never trained on pick the checkpoint.
VALIDATION_SELECTED = "validation_selected"
# A validation split was held out but no checkpoint was chosen with it (eval.py
# after a run stopped before its first validation): the last one is evaluated.
VALIDATION_HELD_OUT_LAST_CHECKPOINT = "validation_held_out_last_checkpoint"
PROTOCOLS = (WHOLE_TRAIN_SPLIT_LAST_CHECKPOINT, VALIDATION_SELECTED,
             VALIDATION_HELD_OUT_LAST_CHECKPOINT)
_TEST_ONCE = "the test split is evaluated only here, never used to choose a checkpoint"


def _last_checkpoint_protocol(run: Setup, step: int) -> tuple[str, str]:
  """(protocol, checkpoint_selection) when the last checkpoint is evaluated."""
  budget = run.config.num_train_steps
  last = (f"the last checkpoint, step {step} of the fixed budget of {budget} steps"
          + ("" if step == budget else " (training not finished)"))
  if run.validation_split is None:
    return WHOLE_TRAIN_SPLIT_LAST_CHECKPOINT, (
        f"{last}, trained on the whole training split ({len(run.train_split)} examples, none "
        f"held out); {_TEST_ONCE}")
  return VALIDATION_HELD_OUT_LAST_CHECKPOINT, (
      f"{last}, trained on {len(run.train_split)} examples; {len(run.validation_split)} "
      f"validation examples were held out but chose no checkpoint; {_TEST_ONCE}")


def validation_score(result: dict, task: str) -> float:
  """Lower is better. Pose: median errors relative to the mean-pose baseline on
  the validation split, translation and rotation weighted equally (unitless);
  classification: minus the mean class accuracy."""
  if task == "pose":
    return (result["median_translation_m"] / max(result["baseline_median_translation_m"], 1e-9)
            + result["median_rotation_deg"] / max(result["baseline_median_rotation_deg"], 1e-9))
  return -result["mean_class_accuracy"]


class _BestCheckpoint:
  """Keeps the train state that scores best on validation (<workdir>/best_checkpoint)."""

  def __init__(self, workdir: pathlib.Path, run: Setup, signature: dict):
    self.workdir, self.run, self.signature = workdir, run, signature
    self.manager = checkpoint.create_manager(workdir, save_every=1, keep=1,
                                             folder="best_checkpoint")
    self.step = self.manager.latest_step()
    self.score = None
    if self.step is not None:
      self.score = checkpoint.read_meta(self.manager, self.step)["validation_score"]

  def consider(self, step: int, state, result: dict) -> None:
    score = validation_score(result, self.run.config.task)
    if self.score is not None and (score >= self.score or step == self.step):
      return
    meta = dict(_meta(self.run, self.signature), validation_score=score,
                validation={k: v for k, v in result.items() if isinstance(v, (int, float))})
    checkpoint.save(self.manager, step, state, meta, force=True)
    self.manager.wait_until_finished()
    self.step, self.score = step, score

  def restore(self) -> tuple[restoring.TrainedVariables, int, str]:
    """The best step's parameters and statistics, its step, and how it was selected."""
    abstract = restoring.abstract_variables(self.run.model_config, self.run.image_shape)
    variables, _, step, _ = checkpoint.restore_run(
        self.workdir, checkpoint.abstract_like(abstract, parallel.replicated(self.run.mesh)),
        self.signature, partial=True, folder="best_checkpoint")
    state = restoring.TrainedVariables(**variables)
    selection = (f"best validation score at step {step} of {self.run.config.num_train_steps} "
                 f"(median translation / mean-pose baseline + median rotation / baseline on "
                 f"{len(self.run.validation_split)} validation examples; lower is better)"
                 if self.run.config.task == "pose" else
                 f"best validation mean class accuracy at step {step} of "
                 f"{self.run.config.num_train_steps} ({len(self.run.validation_split)} "
                 f"validation examples)")
    return state, step, (f"{selection}; trained on {len(self.run.train_split)} examples, none "
                         f"of them validation examples; {_TEST_ONCE}")


def _final_evaluation(run: Setup, state, workdir: pathlib.Path, *, step: int,
                      selection: str | None = None, overrides: dict | None = None,
                      eval_dir: pathlib.Path | None = None) -> dict:
  """Evaluates the test split once and writes <workdir>/eval (or `eval_dir`).

  Args:
    selection: how validation chose the checkpoint (`_BestCheckpoint.restore`);
      None when it is the last one.
    overrides: eval.py's `run_folder.resolve` overrides (metrics.json's
      ``config_overrides``), or None.
  """
  if selection is None:
    protocol, selection = _last_checkpoint_protocol(run, step)
  else:
    protocol = VALIDATION_SELECTED
  outputs, result = _evaluate(run, state, run.test_split, "test")
  if run.config.task == "pose" and run.config.eval_retrieval_baselines:
    # Beside the mean pose (baseline_*): the nearest training image.
    result.update(eval_loop.retrieval_baselines(
        run.model_config, state.params, state.model_state, run.test_split, run.train_split,
        options=run.options, batch_size=run.config.eval_batch_size, mesh=run.mesh,
        compiler_options=_compiler_options(run.config)))
  result["checkpoint_step"] = step
  result["skipped_nonfinite_steps"] = int(jax.device_get(state.skipped_steps))
  result["protocol"] = protocol
  result["checkpoint_selection"] = selection
  result["dataset"] = run.config.dataset
  if datasets.has_two_ground_truths(run.config.dataset):
    result["ground_truth"] = run.config.ground_truth
  if run.test_split.scene_names:
    result["scenes"] = list(run.config.scenes)
    result["scene_sampling"] = run.config.scene_sampling
  result["split"] = "test"
  if overrides is not None:  # eval.py: what the given config changed of the run's
    result["config_overrides"] = overrides
  if jax.process_index() == 0:
    paths = eval_loop.write_outputs(
        eval_dir or workdir / "eval", outputs, result, run.test_split, task=run.config.task,
        layer_names=run.model_config.layer_names, options=run.options,
        train_split=run.train_split, class_names=run.class_names,
        num_figure_examples=run.config.num_figure_examples, draw_figures=run.config.eval_figures,
        scene=datasets.split_name(run.config.dataset)[1],
        layer_choice_dynamics=choice_dynamics.read(workdir / choice_dynamics.FILE_NAME))
    print(eval_loop.summary_table(result, run.config.task))
    print(f"Protocol {protocol}: {selection}")
    print(f"Wrote {', '.join(sorted(paths.values()))}")
  return result


@parallel.stop_on_peer_failure
def evaluate(config, workdir: str | pathlib.Path) -> dict:
  """Evaluates the test split with the checkpoint train.py chose.

  That is the best one on validation when the run has a validation split
  (<workdir>/best_checkpoint), else the latest; the results go to <workdir>/eval.
  While train.py still trains in `workdir` (it holds the run's lock), the
  latest complete checkpoint step N is evaluated instead, into
  <workdir>/eval/step_<N>/ (where training never writes), under that folder's
  own lock.

  Args:
    config: None to use the run's own (<workdir>/config.json), or a config
      merged with it by `run_folder.resolve` (keys that change the model are
      refused, the others applied and listed in metrics.json as
      ``config_overrides``); required for runs without config.json.
  """
  workdir = run_folder.check_workdir(workdir)
  with interrupts.stopping_on_signals("the evaluation", "Run the same command again."):
    restored = restoring.restore(workdir, config)  # before the dataset is built
    with contextlib.ExitStack() as locks:
      eval_dir = _locked_eval_folder(locks, workdir, restored.step)
      run_folder.check_entries(workdir)
      run = _with_data(restored.config, restored.model_config, restored.mesh)
      if eval_dir != workdir / "eval":  # beside training: the restored (latest) step
        _check_validation_split(run, restored.meta, restored.folder)
        return _final_evaluation(run, restored.state, workdir, step=restored.step,
                                 overrides=restored.overrides, eval_dir=eval_dir)
      return _evaluate_run(run, restored, workdir)


def _locked_eval_folder(locks: contextlib.ExitStack, workdir: pathlib.Path, step: int
                        ) -> pathlib.Path:
  """<workdir>/eval under the run's lock; <workdir>/eval/step_<step> under its own while
  train.py holds the run's (a second evaluation of that step is refused by it; a
  multi-process eval.py is refused, as by any other writer)."""
  enabled = jax.process_index() == 0
  try:
    locks.enter_context(run_lock.holding(workdir, "eval.py", enabled=enabled))
    return workdir / "eval"
  except run_lock.Busy as busy:
    # A job of several processes would need them all to agree on the folder: refused.
    if busy.holder.get("purpose") != "train.py" or jax.process_count() > 1:
      raise
    holder = busy.holder
  eval_dir = workdir / "eval" / f"step_{step}"
  locks.enter_context(run_lock.holding(eval_dir, "eval.py", enabled=enabled))
  print(f"{workdir} is training (train.py, {run_lock.describe_holder(json.dumps(holder))}): "
        f"evaluating its latest complete checkpoint, step {step}, into {eval_dir}.",
        file=sys.stderr)
  return eval_dir


def _evaluate_run(run: Setup, restored: restoring.Restored, workdir: pathlib.Path) -> dict:
  interrupts.at_safe_points(f"nothing was written ({workdir / 'eval'} keeps its previous "
                            f"outputs)")
  _check_validation_split(run, restored.meta, restored.folder)
  if run.validation_split is not None and (workdir / "best_checkpoint").is_dir():
    best = _BestCheckpoint(workdir, run, restored.signature)
    if best.step is not None:
      state, step, selection = best.restore()
      return _final_evaluation(run, state, workdir, step=step, selection=selection,
                               overrides=restored.overrides)
  return _final_evaluation(run, restored.state, workdir, step=restored.step,
                           overrides=restored.overrides)


class _Logger:
  """TensorBoard events (process 0), the training history and, with layer selection, the
  layer-choice dynamics (`choice_dynamics`, from `start_step` on)."""

  def __init__(self, workdir: pathlib.Path, run: Setup, start_step: int):
    self.enabled = jax.process_index() == 0
    self.layer_names = run.model_config.layer_names
    self.writer = None
    if self.enabled:
      from tensorboardX import SummaryWriter
      self.writer = SummaryWriter(str(workdir / "tensorboard"))
    self.choice_path = None  # the baselines and spatial_only choose no layer: no file
    if self.enabled and model.num_steps(run.model_config) and run.model_config.core.select_layer:
      self.choice_path = workdir / choice_dynamics.FILE_NAME
      choice_dynamics.keep_until(self.choice_path, start_step)  # rows to be logged again go
    self.start = time.time()

  def train_metrics(self, step: int, history: list) -> dict:
    host = jax.device_get(history)
    summary = {name: float(np.mean([m[name] for m in host])) for name in host[0]
               if name not in ("layer_counts", "layer_entropy", "nonfinite")}
    summary["skipped_steps"] = float(sum(m["nonfinite"] for m in host))
    counts = np.sum([m["layer_counts"] for m in host], axis=0)  # [N, k]
    if self.writer is not None:
      for name, value in summary.items():
        self.writer.add_scalar(f"train/{name}", value, step)
      for t, row in enumerate(counts):
        total = max(row.sum(), 1)
        for name, count in zip(self.layer_names, row):
          self.writer.add_scalar(f"layers/step{t + 1}/{name}", count / total, step)
    if self.choice_path is not None:
      entropy = np.mean([m["layer_entropy"] for m in host], axis=0)  # [N]
      choice_dynamics.append(self.choice_path, choice_dynamics.row(
          step, len(host), self.layer_names, counts, entropy))
      for t, value in enumerate(entropy):
        self.writer.add_scalar(f"layers/step{t + 1}/entropy", value, step)
    if self.writer is not None:
      self.writer.flush()
    return summary

  def validation(self, step: int, evaluated) -> None:
    _, result = evaluated
    if self.writer is not None:
      for name, value in result.items():
        if isinstance(value, (int, float)):
          self.writer.add_scalar(f"validation/{name}", value, step)
      self.writer.flush()

  def close(self):
    if self.writer is not None:
      self.writer.close()
