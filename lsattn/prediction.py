"""Prediction on new photos: pose (or class) of each image and the layer per step.

``predict(workdir, config, paths)`` restores the latest checkpoint of a run
and returns, per image, its camera pose (position, orientation; the pose
convention of `lsattn.geometry`) or its class and class probabilities, with
the layer chosen at each recurrent step and, with ``per_step=True``, the
prediction of every recurrent step. Only the run folder is needed, not
the dataset: the config is the run's own (``<workdir>/config.json``; a given
``config`` may change only what leaves the model as it is, see
`lsattn.runs.run_folder`), the channel mean comes from the checkpoint's meta (for
classification, the class names from the checkpoint, or for older runs from
the dataset's builder config or its built copy in ``config.data_dir``).

Each image is prepared as in training: decoded, turned upright by its EXIF
orientation, converted to RGB, resized to the stored size of the run's
dataset (256x455 pose, 256x256 classification) and then to
``config.resize_size``, centre-cropped to ``image_size`` and made
mean-subtracted. A file that cannot be read gets an ``error`` entry naming
it (and a warning on stderr); the other images are still predicted.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import io
import json
import pathlib
import sys
from typing import Callable, Iterable, Sequence

import jax
import ml_collections
import numpy as np

from lsattn import geometry, model, restoring
from lsattn.data import datasets, images, pipeline, pseudo_gt, scenes, splits
from lsattn.errors import LsattnError
from lsattn.evaluation import loop as eval_loop
from lsattn.runs import atomic, compilation, interrupts, parallel, run_folder

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
OUTPUT_SUFFIXES = (".csv", ".json")


@dataclasses.dataclass(frozen=True)
class Predictor:
  """A restored run, ready to predict.

  Attributes:
    config: the run's config (with a given config's run-time keys).
    model_config: the model's shapes and computation.
    params: restored parameters (replicated over `mesh`).
    model_state: restored batch-norm statistics.
    options: resize, crop and channel mean of the run.
    stored_size: (H, W) the run's dataset stored its images at.
    class_names: class names (classification) or None.
    step: the checkpoint's step.
    batch_size: images per eval step.
    mesh: the device mesh.
    eval_step: the jitted `eval_loop.make_eval_step`:
      (params, model_state, images) -> outputs.
    scene_names: a several-scene run's scenes (`lsattn.data.scenes.short_name`,
      in the order of its scene classifier); () for one scene.
  """
  config: ml_collections.ConfigDict
  model_config: model.ModelConfig
  params: dict
  model_state: dict
  options: pipeline.ImageOptions
  stored_size: tuple[int, int]
  class_names: tuple[str, ...] | None
  step: int
  batch_size: int
  mesh: jax.sharding.Mesh | None
  eval_step: Callable[..., dict] | None
  scene_names: tuple[str, ...] = ()


def _warn(message: str) -> None:
  print(f"warning: {message}", file=sys.stderr)


def expand_paths(paths: Iterable[str | pathlib.Path]) -> list[pathlib.Path]:
  """Image files to predict: files as given, folders as their .jpg/.jpeg/.png files.

  A folder contributes its own image files (not those of sub-folders), in
  natural name order (`splits.natural_key`). Paths that do not exist are kept,
  so that `predict` reports them as unreadable.
  """
  files = []
  for path in map(pathlib.Path, paths):
    path = path.expanduser()
    if path.is_dir():
      found = sorted((child for child in path.iterdir()
                      if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES),
                     key=lambda child: splits.natural_key(child.name))
      if not found:
        _warn(f"{path}: no {'/'.join(IMAGE_SUFFIXES)} images in this folder")
      files.extend(found)
    else:
      files.append(path)
  return files


def skipped_entries(paths: Iterable[str | pathlib.Path]) -> list[pathlib.Path]:
  """What `expand_paths` leaves out of the given folders: files that are not
  .jpg/.jpeg/.png, sub-folders, and broken or looping links (an image name that
  is no file), in natural name order."""
  skipped = []
  for path in map(pathlib.Path, paths):
    path = path.expanduser()
    if path.is_dir():
      skipped.extend(sorted((child for child in path.iterdir()
                             if not child.is_file() or child.suffix.lower() not in IMAGE_SUFFIXES),
                            key=lambda child: splits.natural_key(child.name)))
  return skipped


def describe_skipped(path: pathlib.Path) -> str:
  """How predict's summary names a skipped entry: 'name/' (folder), 'name (broken
  link)' (a link to nothing, or a loop of links), else its name."""
  if path.is_dir():
    return f"{path.name}/"
  if path.is_symlink() and not path.exists():  # exists() is False for a loop too
    return f"{path.name} (broken link)"
  return path.name


def load_predictor(workdir: str | pathlib.Path, config=None) -> Predictor:
  """Restores the latest checkpoint of `workdir` (`restoring.restore`).

  Args:
    workdir: the run folder.
    config: None to use the run's own config (<workdir>/config.json), or a
      config merged with it by `run_folder.resolve` (keys that change the
      model or its input are refused); required for runs without config.json.

  Raises:
    LsattnError: no checkpoint, a config that changes the model (keys
      named), or a checkpoint without a channel mean and a config without
      `channel_mean`.
  """
  # A multi-process job: every process reads every photo (the job must agree on
  # which ones are readable), feeds its own rows of each batch to its devices
  # and gets every output back; process 0 alone writes (`predict`, cli).
  restored = restoring.restore(workdir, config)
  config, meta = restored.config, restored.meta
  name, _ = datasets.split_name(config.dataset)
  stored_size = datasets.builder_class(name).STORED_SIZE
  class_names = None
  if config.task == "classification":
    # Runs since class names were saved in the checkpoint need no dataset.
    class_names = tuple(meta.get("class_names") or ()) or datasets.class_names(
        datasets.get_builder(config.dataset, config.data_dir), config.dataset,
        config.num_classes)
  mean = meta.get("channel_mean") or tuple(config.channel_mean)
  if not mean:
    raise LsattnError(f"checkpoint {restored.folder} records no channel mean; "
                      f"set --config.channel_mean to the training set's RGB mean")
  options = pipeline.ImageOptions(resize_size=tuple(config.resize_size),
                                  image_size=config.image_size,
                                  channel_mean=tuple(float(v) for v in mean))
  compiler_options = compilation.step_compiler_options(config.kernels, config.xla_cpu_ynn_fusions)
  eval_step = eval_loop.compiled_eval_step(restored.model_config, restored.mesh,
                                           compiler_options)
  scene_names = ()
  if len(config.scenes) > 1:
    scene_names = tuple(scenes.short_name(name) for name in config.scenes)
  return Predictor(config, restored.model_config, restored.state.params,
                   restored.state.model_state, options, tuple(stored_size), class_names,
                   restored.step, config.eval_batch_size, restored.mesh, eval_step,
                   scene_names)


def _load(path: pathlib.Path, predictor: Predictor) -> np.ndarray | str:
  """float32 [S, S, 3] model input, or why the file cannot be used."""
  try:
    image = images.load_image(path, predictor.stored_size)
    return pipeline.preprocess(image, predictor.options, offset=None)
  except LsattnError as error:
    return str(error)
  except Exception as error:  # Broken files raise many types; one must not stop the rest.
    return f"{path}: cannot decode image ({type(error).__name__}: {error})"


def _run(predictor: Predictor, prepared: list[np.ndarray]) -> dict[str, np.ndarray]:
  """Eval-step outputs for up to batch_size prepared images (padded to batch_size)."""
  count = len(prepared)
  padded = prepared + [prepared[-1]] * (predictor.batch_size - count)
  rows = parallel.process_batch_slice(predictor.batch_size)  # this process's rows
  batch = parallel.shard_batch({"image": np.stack(padded[rows])}, predictor.mesh)
  outputs = parallel.to_host(predictor.eval_step(predictor.params, predictor.model_state,
                                                 batch["image"]))
  return {name: np.asarray(value)[:count] for name, value in outputs.items()}


def _pose(position, orientation) -> dict:
  """position [3] and orientation [4] as lists; the quaternion unit and canonical sign."""
  orientation = geometry.canonical_quaternion(geometry.normalize_quaternion(orientation))
  return {"position": [float(v) for v in position],
          "orientation": [float(v) for v in orientation]}


def _best_class(probabilities: np.ndarray, class_names) -> dict:
  """'class' and 'probability' of the most probable class; probabilities: [C]."""
  best = int(np.argmax(probabilities))
  return {"class": class_names[best], "probability": float(probabilities[best])}


def _result(path: pathlib.Path, outputs: dict, i: int, predictor: Predictor, *,
            per_step: bool = False) -> dict:
  """The entry of image `i` of `outputs` (see `predict`'s Returns)."""
  names = predictor.model_config.layer_names
  result = {"path": str(path),
            "layers": eval_loop.chosen_layers(outputs["layer_choices"][i], names)}
  if predictor.class_names is None:
    result.update(_pose(outputs["position"][i], outputs["orientation"][i]))
    if "scene_logits" in outputs:  # several scenes: the classifier's scene chose the head
      scene_probabilities = eval_loop.probabilities(outputs["scene_logits"][i])
      best = int(np.argmax(scene_probabilities))
      result["scene"] = predictor.scene_names[best]
      result["scene_probability"] = float(scene_probabilities[best])
    if per_step:
      steps = eval_loop.num_prediction_steps(outputs, "step_position")
      result["steps"] = [_pose(outputs["step_position"][i, t], outputs["step_orientation"][i, t])
                         for t in range(steps)]
  else:
    probabilities = eval_loop.probabilities(outputs["logits"][i])
    result.update(_best_class(probabilities, predictor.class_names))
    result["probabilities"] = {name: float(p)
                               for name, p in zip(predictor.class_names, probabilities)}
    if per_step:
      steps = eval_loop.num_prediction_steps(outputs, "step_logits")
      result["steps"] = [_best_class(eval_loop.probabilities(outputs["step_logits"][i, t]),
                                     predictor.class_names) for t in range(steps)]
  return result


def _overlay_path(folder: pathlib.Path, path: pathlib.Path, used: set) -> pathlib.Path:
  """`<stem>.attention.png` in `folder`, numbered if two inputs share a stem."""
  name, number = f"{path.stem}.attention.png", 2
  while name in used:
    name, number = f"{path.stem}-{number}.attention.png", number + 1
  used.add(name)
  return folder / name


def predict(workdir: str | pathlib.Path, config, paths: Sequence[str | pathlib.Path], *,
            overlays: str | pathlib.Path | None = None, per_step: bool = False) -> list[dict]:
  """Predicts every image of `paths` with the latest checkpoint of `workdir`.

  Args:
    workdir: the run folder (its `checkpoints/` and `config.json`).
    config: None (the run's own config), or a config that may change only
      keys that leave the model as it is (see `load_predictor`).
    paths: image files and folders (see `expand_paths`).
    overlays: a folder to write one attention figure per image into
      (`<stem>.attention.png`: the crop and each step's attention, the chosen
      layer named), or None.
    per_step: also give the prediction of every recurrent step.

  Returns:
    One dict per image, in input order: 'path'; then either 'error' (why
    the file could not be used), or 'layers' (display name of the layer
    chosen at each step, [N]) with 'position' [3] and 'orientation' [4]
    (pose; a several-scene run adds 'scene', the scene its classifier
    chose, whose head gave the pose, and 'scene_probability'), or 'class',
    'probability' and 'probabilities' {class: p} (classification) of the
    final prediction; 'overlay' when `overlays` is
    given; with `per_step`, 'steps': N dicts, step 1 first, each
    {'position', 'orientation'} (pose; the orientation canonical as the
    top-level one) or {'class', 'probability'} (classification), [] for a
    model without recurrent steps. The last step is the final prediction.

  Raises:
    LsattnError: no image given, or the run cannot be restored.
  """
  files = expand_paths(paths)
  if not files:
    raise LsattnError(f"no images to predict in {[str(p) for p in paths]}: expected image "
                      f"files or folders of {'/'.join(IMAGE_SUFFIXES)} files")
  predictor = load_predictor(workdir, config)
  overlay_dir = None if overlays is None else pathlib.Path(overlays).expanduser()
  if jax.process_index() != 0:  # process 0 writes for the job
    overlay_dir = None
  if overlay_dir is not None:
    overlay_dir.mkdir(parents=True, exist_ok=True)
  used_names: set = set()
  mean = np.asarray(predictor.options.channel_mean, np.float32)
  results = []
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    for start in range(0, len(files), predictor.batch_size):
      # Ctrl-C stops here, between batches (`interrupts.at_safe_points`).
      interrupts.safe_point(f"after {start} of {len(files)} images")
      chunk = files[start:start + predictor.batch_size]
      loaded = list(pool.map(lambda path: _load(path, predictor), chunk))
      good = [image for image in loaded if not isinstance(image, str)]
      outputs = _run(predictor, good) if good else {}
      position = 0
      for path, image in zip(chunk, loaded):
        if isinstance(image, str):
          _warn(f"skipped: {image}")
          results.append({"path": str(path), "error": image})
          continue
        result = _result(path, outputs, position, predictor, per_step=per_step)
        if overlay_dir is not None:
          from lsattn.evaluation import figures  # matplotlib: paid only when overlays are asked for
          crop = np.clip(image + mean, 0, 255).astype(np.uint8)
          result["overlay"] = str(figures.attention_overlays(
              _overlay_path(overlay_dir, path, used_names), crop[None],
              outputs["attention_masks"][position:position + 1], [result["layers"]],
              [path.name]))
        results.append(result)
        position += 1
  return results


def write_predictions(path: str | pathlib.Path | None, results: Sequence[dict]) -> None:
  """Writes `predict`'s results as CSV or JSON (by suffix); None: CSV to stdout.

  CSV columns: path; x, y, z, qw, qx, qy, qz (pose; a several-scene run's
  then scene, scene_probability) or class, probability and p_<class> per
  class (classification); layer_step1..N; when the results
  have 'steps', each step's prediction, step 1 first: x_step<t>, y_step<t>,
  z_step<t>, qw_step<t>, qx_step<t>, qy_step<t>, qz_step<t> (pose) or
  class_step<t>, probability_step<t> (classification); error (empty for
  predicted images).
  """
  if path is not None:
    path = pathlib.Path(path).expanduser()
    check_output_path(path)
    if path.suffix.lower() == ".json":  # a non-UTF-8 name as JSON's \udcXX escape
      atomic.write_text(path, json.dumps(list(results), indent=2) + "\n")
      return
  steps = max((len(r.get("layers", [])) for r in results), default=0)
  prediction_steps = max((len(r.get("steps", [])) for r in results), default=0)
  classes = next((list(r["probabilities"]) for r in results if "probabilities" in r), [])
  is_pose = any("position" in r for r in results) or not classes
  values = (["x", "y", "z", "qw", "qx", "qy", "qz"] if is_pose
            else ["class", "probability", *(f"p_{name}" for name in classes)])
  step_values = values if is_pose else ["class", "probability"]
  with_scene = any("scene" in r for r in results)
  if with_scene:
    values = [*values, "scene", "scene_probability"]
  header = ["path", *values, *(f"layer_step{t + 1}" for t in range(steps)),
            *(f"{name}_step{t + 1}" for t in range(prediction_steps) for name in step_values),
            "error"]
  rows = []
  for r in results:
    if "error" in r:
      rows.append([r["path"]] + [""] * (len(header) - 2) + [r["error"]])
      continue
    if is_pose:
      numbers = [f"{v:.6f}" for v in (*r["position"], *r["orientation"])]
      if with_scene:
        numbers += [r["scene"], f"{r['scene_probability']:.6f}"]
      step_numbers = [f"{v:.6f}" for step in r.get("steps", [])
                      for v in (*step["position"], *step["orientation"])]
    else:
      numbers = [r["class"], f"{r['probability']:.6f}",
                 *(f"{r['probabilities'][name]:.6f}" for name in classes)]
      step_numbers = [value for step in r.get("steps", [])
                      for value in (step["class"], f"{step['probability']:.6f}")]
    rows.append([r["path"], *numbers, *r["layers"], *step_numbers, ""])
  # A file name that is not UTF-8 (Python holds its bytes as surrogate escapes)
  # is written as its own bytes, so the CSV names the file as the disk does.
  if path is None:
    text = io.StringIO(newline="")
    csv.writer(text).writerows([header, *rows])
    sys.stdout.flush()
    sys.stdout.buffer.write(text.getvalue().encode("utf-8", "surrogateescape"))
    sys.stdout.buffer.flush()
    return
  with atomic.writing(path, "w", newline="", encoding="utf-8",
                      errors="surrogateescape") as handle:
    csv.writer(handle).writerows([header, *rows])


def write_estimates(path: str | pathlib.Path, results: Sequence[dict]) -> int:
  """Writes a pose run's results as per-frame estimates in the community's format
  (`pseudo_gt.write_estimates`: `rgb_file qw qx qy qz tx ty tz`, world to camera, as
  the pseudo-ground-truth repository's evaluate_estimates.py reads them); returns
  the number of lines.

  `rgb_file` is each image's path as given (a folder's images: the folder as given,
  then the file name), so photos named relative to the scene folder
  (``seq-03/frame-000000.color.png``, from ``predict.py ... seq-03`` run in it)
  match the pGT files' names. Unreadable images have no line.
  """
  path = pathlib.Path(path).expanduser()
  predicted = [r for r in results if "error" not in r]
  if any("position" not in r for r in predicted):
    raise LsattnError(f"--estimates={path}: per-frame estimates are poses; this run "
                      f"classifies scenes")
  if not predicted:
    raise LsattnError(f"--estimates={path}: no image was predicted")
  pseudo_gt.write_estimates(path, [pathlib.PurePath(r["path"]).as_posix() for r in predicted],
                            [r["position"] for r in predicted],
                            [r["orientation"] for r in predicted])
  return len(predicted)


def check_estimates_path(path: str | pathlib.Path) -> None:
  """Refuses an estimates file that is not .txt, is a folder, or lies in a folder that
  does not exist (before any compute)."""
  path = pathlib.Path(path).expanduser()
  if path.suffix.lower() != ".txt":
    raise LsattnError(f"--estimates={path}: expected a .txt file name")
  if path.is_dir():
    raise LsattnError(f"--estimates={path} is a folder: expected a .txt file name")
  if not path.parent.is_dir():
    raise LsattnError(f"--estimates={path}: folder {path.parent} does not exist; create it "
                      f"first")


def check_output_path(path: str | pathlib.Path,
                      workdir: str | pathlib.Path | None = None) -> None:
  """Refuses an output file that is neither .csv nor .json, is a folder, lies in a
  folder that does not exist, or would replace one of run `workdir`'s own files
  (`run_folder.own_entry`: config.json, anything in checkpoints/, eval/, ...), before
  any compute."""
  path = pathlib.Path(path).expanduser()
  if path.suffix.lower() not in OUTPUT_SUFFIXES:
    raise LsattnError(f"--output={path}: expected a .csv or .json file name")
  if path.is_dir():
    raise LsattnError(f"--output={path} is a folder: expected a .csv or .json file name")
  if not path.parent.is_dir():
    raise LsattnError(f"--output={path}: folder {path.parent} does not exist; create it first")
  own = None if workdir is None else run_folder.own_entry(path, workdir)
  if own is not None:
    raise LsattnError(f"--output={path} would replace the run's own {own}; write the "
                      f"predictions to another file")


def check_overlays_folder(folder: str | pathlib.Path, workdir: str | pathlib.Path) -> None:
  """Refuses an overlays folder inside one of run `workdir`'s own entries (its eval/,
  checkpoints/, ...), before any compute."""
  own = run_folder.own_entry(folder, workdir)
  if own is not None:
    raise LsattnError(f"--overlays={folder} lies in the run's own {own}; write the overlays "
                      f"to another folder")
