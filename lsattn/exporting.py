r"""A trained run as one file that needs only jax and numpy: ``jax.export``.

``export_run(workdir, output)`` writes `output`, the bytes of
``jax.export.export(jax.jit(serve))(images).serialize()`` of the run's
evaluation function with the trained parameters and batch-norm statistics
baked in as constants and a symbolic batch size, and ``<output>.json``
beside it (what the input must be and what each output means; the
artefact's SHA-256 and the run it came from). Both are written atomically;
an output that would replace one of the run's own files, or an unknown
platform, is refused. Use::

  exported, description = lsattn.exporting.load(F)  # checks F against its sidecar's hash
  outputs = exported.call(images)  # images: float32 [B, S, S, 3]

(or, with jax alone, ``jax.export.deserialize(open(F, "rb").read())``).

`images`: RGB, 0-255 (not mean-subtracted: the run's channel mean is
subtracted inside), already resized and centre-cropped to the sidecar's
``input_size`` S as in training (`lsattn.data.pipeline.preprocess` without
its mean). Outputs: ``position`` [B, 3] and ``orientation`` [B, 4] (pose;
the convention of `lsattn.geometry`, the quaternion unit with the canonical
sign, as `predict.py` writes it) or ``logits`` [B, C] (classification), and
``layer_choices`` [N, B, k] (one-hot: the layer each recurrent step chose,
over the sidecar's ``layer_names``: the taps ``layers`` of its ``backbone``).
A several-scene run (``config.scenes``) adds ``scene_logits`` [B, S] over the
sidecar's ``scenes``; the pose is that of the scene ranked first.
Evaluation mode: no Gumbel noise (argmax layer choice), batch norm with its
stored statistics; so the output is a pure function of the images.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import subprocess

import jax
import jax.numpy as jnp
import numpy as np

import lsattn
from lsattn import prediction
from lsattn.errors import LsattnError
from lsattn.evaluation import loop as eval_loop
from lsattn.runs import atomic, compilation, run_folder, run_lock

POSE_CONVENTION = {
    "position": "camera centre in world coordinates, metres",
    "orientation": "unit quaternion (w, x, y, z) of the camera-to-world rotation, canonical "
                   "sign (first non-zero component positive)",
}


def _canonical_unit_quaternion(q: jax.Array) -> jax.Array:
  """`geometry.canonical_quaternion(geometry.normalize_quaternion(q))` in jnp; q: [B, 4]."""
  q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
  first = jnp.argmax(jnp.abs(q) > 1e-12, axis=-1)
  lead = jnp.take_along_axis(q, first[:, None], axis=-1)
  return jnp.where(lead < 0, -q, q)


def serving_function(predictor: prediction.Predictor):
  """``serve(images [B, S, S, 3] 0-255 RGB) -> outputs`` (module docstring) with the
  predictor's parameters, statistics and channel mean closed over as constants."""
  eval_step = eval_loop.make_eval_step(predictor.model_config)
  params, model_state = jax.device_get((predictor.params, predictor.model_state))
  mean = np.asarray(predictor.options.channel_mean, np.float32)
  pose = predictor.class_names is None

  def serve(images):
    outputs = eval_step(params, model_state, images - mean)
    # eval_step is batch-major [B, N, k]; the contract is step-major [N, B, k].
    served = {"layer_choices": jnp.moveaxis(outputs["layer_choices"], 1, 0)}
    if pose:
      served["position"] = outputs["position"]
      served["orientation"] = _canonical_unit_quaternion(outputs["orientation"])
      if predictor.scene_names:
        served["scene_logits"] = outputs["scene_logits"]
    else:
      served["logits"] = outputs["logits"]
    return served

  return serve


def _commit() -> str | None:
  """The repository's commit when lsattn runs from a git checkout, else None."""
  try:
    result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=pathlib.Path(lsattn.__file__).parent, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return None
  return result.stdout.strip() if result.returncode == 0 else None


def sidecar(predictor: prediction.Predictor, exported: jax.export.Exported) -> dict:
  """The JSON description of `exported`, made from `predictor` (what `export_run` writes)."""
  config = predictor.config
  size = predictor.options.image_size
  out_avals = jax.tree.unflatten(exported.out_tree, exported.out_avals)
  steps = int(out_avals["layer_choices"].shape[0])  # 0 for the baselines
  layer_names = list(predictor.model_config.layer_names)
  pose = predictor.class_names is None
  outputs = {"layer_choices": {
      "shape": ["N", "B", "k"], "dtype": "float32",
      "meaning": "one-hot over layer_names: the layer recurrent step n chose for image b "
                 "(N = num_steps, k = len(layer_names))"}}
  if pose:
    outputs["position"] = {"shape": ["B", 3], "dtype": "float32",
                           "meaning": POSE_CONVENTION["position"]}
    outputs["orientation"] = {"shape": ["B", 4], "dtype": "float32",
                              "meaning": POSE_CONVENTION["orientation"]}
    if predictor.scene_names:
      outputs["scene_logits"] = {
          "shape": ["B", len(predictor.scene_names)], "dtype": "float32",
          "meaning": "scene scores over scenes (softmax for probabilities); position and "
                     "orientation are those of the pose head of the scene scored highest"}
  else:
    outputs["logits"] = {"shape": ["B", len(predictor.class_names)], "dtype": "float32",
                         "meaning": "class scores over class_names (softmax for "
                                    "probabilities)"}
  description = {
      "format": "jax.export.Exported.serialize(); load with "
                "jax.export.deserialize(open(F, 'rb').read()).call(images)",
      "task": config.task,
      "input": {"shape": ["B", size, size, 3], "dtype": "float32", "channel_order": "RGB",
                "range": [0, 255],
                "preparation": f"resize to resize_size (H, W) = {list(config.resize_size)} "
                               f"(bilinear; of an image first stored as the dataset stores "
                               f"it, {list(predictor.stored_size)}), then centre-crop "
                               f"{size}x{size}; do NOT subtract the channel mean",
                "channel_mean_subtracted_inside": list(predictor.options.channel_mean)},
      "input_size": size,
      "resize_size": list(config.resize_size),
      "outputs": outputs,
      "backbone": predictor.model_config.backbone,
      "layers": list(predictor.model_config.layers),
      "layer_names": layer_names,
      "num_steps": steps,
      "model_variant": config.model_variant,
      "dataset": config.dataset,
      **({"scenes": list(predictor.scene_names)} if predictor.scene_names else {}),
      "checkpoint_step": predictor.step,
      "platforms": list(exported.platforms),
      "lsattn_version": lsattn.__version__,
      "lsattn_commit": _commit(),
      "jax_version": jax.__version__,
  }
  if pose:
    description["pose_convention"] = POSE_CONVENTION
  else:
    description["class_names"] = list(predictor.class_names)
  return description


def export_run(workdir: str | pathlib.Path, output: str | pathlib.Path, config=None, *,
               platforms: tuple[str, ...] | None = None) -> dict:
  """Exports the latest checkpoint of `workdir` to `output` and `<output>.json`.

  Args:
    workdir: the run folder (its checkpoints and config.json).
    output: the file to write.
    config: None (the run's own config), or a config as `prediction.predict` takes
      it (needed for runs without config.json).
    platforms: the platforms to lower for (e.g. ('cpu', 'cuda')); None: this
      machine's default backend.

  Returns:
    The sidecar's description (also written to <output>.json).

  Raises:
    LsattnError: no checkpoint or config, `output` in a missing folder or one of
      the run's own files, an unknown platform, or another writer holds the run
      folder `output` is in.
  """
  output = pathlib.Path(output).expanduser()
  if output.is_dir() or not output.parent.is_dir():
    raise LsattnError(f"--output={output}: expected a file name in an existing folder")
  workdir = run_folder.check_workdir(workdir)
  check_output(output, workdir)
  platforms = check_platforms(platforms or (jax.default_backend(),))
  inside = _is_inside(output, workdir)
  # Writing into the run folder makes export one of its writers (`run_lock`).
  with run_lock.holding(workdir, "export.py", enabled=inside and jax.process_index() == 0):
    predictor = prediction.load_predictor(workdir, config)
    config = predictor.config  # the run's, resolved once
    size = predictor.options.image_size
    batch = jax.export.symbolic_shape("b")[0]
    # Traced for `platforms` ('auto' kernels and unroll theirs, not this host's).
    exported = compilation.export_for(serving_function(predictor), platforms,
                                      jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32))
    artefact = exported.serialize()
    description = sidecar(predictor, exported)
    description["sha256"] = hashlib.sha256(artefact).hexdigest()
    description["run"] = _run_identity(workdir, config, predictor)
    # The artefact first, then its sidecar: a stopped export leaves the old pair's
    # sidecar, whose hash then refuses the new artefact (`load`).
    atomic.write_bytes(output, artefact)
    atomic.write_text(f"{output}.json", json.dumps(description, indent=2) + "\n")
  return description


def _is_inside(path: pathlib.Path, folder: pathlib.Path) -> bool:
  return path.resolve().is_relative_to(folder.resolve())


def check_output(output: pathlib.Path, workdir: pathlib.Path) -> None:
  """Refuses an output (or its sidecar) that would replace one of the run's own files:
  config.json, the lock, or anything in its checkpoints, TensorBoard or eval folders."""
  for path in (output, pathlib.Path(f"{output}.json")):
    first = run_folder.own_entry(path, workdir)
    if first is not None:
      raise LsattnError(f"--output={output}: {path} would replace the run's own {first}; "
                        f"export to another file name")


# The platforms `jax.export.export` lowers for (its documented `platforms`).
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def check_platforms(platforms) -> tuple[str, ...]:
  """The platforms as given, refusing a name jax.export does not know."""
  platforms = tuple(platforms)
  unknown = [name for name in platforms if name not in PLATFORMS]
  if unknown or not platforms:
    raise LsattnError(f"--platforms: unknown platform {', '.join(map(repr, unknown))}; "
                      f"expected some of {', '.join(PLATFORMS)}")
  return platforms


def _run_identity(workdir: pathlib.Path, config, predictor: prediction.Predictor) -> dict:
  """Which run and checkpoint the artefact holds: folder, seed, step, config hash."""
  config_file = run_folder.config_path(workdir)
  return {"workdir": str(workdir.resolve()), "seed": int(config.seed),
          "checkpoint_step": predictor.step,
          "config_sha256": (hashlib.sha256(config_file.read_bytes()).hexdigest()
                            if config_file.is_file() else None)}


def load(path: str | pathlib.Path) -> tuple[jax.export.Exported, dict]:
  """The exported function of `path` and its sidecar, checked to belong together.

  Raises:
    LsattnError: a missing file, or an artefact whose SHA-256 is not the one its
      sidecar (`<path>.json`) records (another export's artefact or sidecar).
  """
  path = pathlib.Path(path).expanduser()
  side = pathlib.Path(f"{path}.json")
  try:
    artefact = path.read_bytes()
    description = json.loads(side.read_text())
  except (OSError, ValueError) as error:
    raise LsattnError(f"{path}: cannot read the exported model or its sidecar {side} "
                      f"({getattr(error, 'strerror', None) or error})") from None
  recorded = description.get("sha256") if isinstance(description, dict) else None
  actual = hashlib.sha256(artefact).hexdigest()
  if recorded != actual:
    raise LsattnError(f"{path}: its SHA-256 {actual[:12]}... is not the one its sidecar {side} "
                      f"records ({str(recorded)[:12]}...): they come from different exports. "
                      f"Export the run again.")
  return jax.export.deserialize(artefact), description
