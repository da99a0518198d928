r"""Size and CPU latency of an exported model (lsattn.exporting, ``export.py``).

  python benchmarks/export_latency.py --json results.jsonl

The model of configs/default.py (the paper's pose model: Caffe GoogLeNet,
hidden 96, N = 3, layer-spatial, 224x224 input) with freshly initialised
parameters (latency and size do not depend on their values) is exported as
``export.py`` exports a trained run: the evaluation function with parameters
and batch-norm statistics as constants, a symbolic batch size. The file is
deserialised as a user would (``jax.export.deserialize``) and its ``call``
timed per batch size (median of repeated calls after warm-up; wall clock and
this process's CPU time, per image). Prints one JSON object and appends it
to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from configs import default  # noqa: E402
from lsattn import config_checks, prediction, training  # noqa: E402
from lsattn import exporting as export
from lsattn.data import pipeline  # noqa: E402
from measure import load_average, machine_description, summarise, time_calls  # noqa: E402

CHANNEL_MEAN = (120.0, 110.0, 100.0)  # any mean: it is one subtraction inside


def exported_model(image_size: int, seed: int = 0) -> jax.export.Exported:
  """configs/default.py's model at `image_size`, initialised from `seed`, exported."""
  config = default.get_config()
  config.image_size = image_size
  config.resize_size = (image_size, image_size)
  model_config = config_checks.check_config(config)
  shape = (image_size, image_size, 3)
  state = training.create_train_state(jax.random.key(seed), config, model_config, shape)
  predictor = prediction.Predictor(
      config=config, model_config=model_config, params=state.params, model_state=state.model_state,
      options=pipeline.ImageOptions(resize_size=config.resize_size, image_size=image_size,
                                    channel_mean=CHANNEL_MEAN),
      stored_size=(image_size, image_size), class_names=None, step=0, batch_size=1,
      mesh=None, eval_step=None)
  batch = jax.export.symbolic_shape("b")[0]
  return jax.export.export(jax.jit(export.serving_function(predictor)))(
      jax.ShapeDtypeStruct((batch, *shape), jnp.float32))


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--image-size", type=int, default=224)
  parser.add_argument("--batch-sizes", default="1,8")
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--iters", type=int, default=3, help="calls per timed sample")
  parser.add_argument("--json", help="append the JSON object to this file")
  args = parser.parse_args(argv)
  record = {"benchmark": "export_latency", "machine": machine_description(),
            "model": "configs/default.py (pose, layer_spatial, N=3, hidden 96)",
            "image_size": args.image_size}
  start = time.perf_counter()
  exported = exported_model(args.image_size)
  record["export_s"] = time.perf_counter() - start
  with tempfile.TemporaryDirectory() as folder:
    path = pathlib.Path(folder) / "model.jaxexport"
    path.write_bytes(exported.serialize())
    record["file_bytes"] = path.stat().st_size
    start = time.perf_counter()
    loaded = jax.export.deserialize(path.read_bytes())
    record["deserialize_s"] = time.perf_counter() - start
  rng = np.random.default_rng(0)
  record["latency"] = {}
  for batch_size in map(int, args.batch_sizes.split(",")):
    images = rng.uniform(0, 255, (batch_size, args.image_size, args.image_size, 3)).astype(
        np.float32)
    start = time.perf_counter()
    jax.block_until_ready(loaded.call(images))  # the first call compiles
    first_call = time.perf_counter() - start
    wall, cpu = time_calls(lambda: loaded.call(images), warmup=1, repeats=args.repeats,
                           iters=args.iters)
    wall_summary, cpu_summary = summarise(wall), summarise(cpu)
    record["latency"][str(batch_size)] = {
        "first_call_s": first_call, "wall_ms": wall_summary, "cpu_ms": cpu_summary,
        "wall_ms_per_image": wall_summary["median"] / batch_size,
        "cpu_ms_per_image": cpu_summary["median"] / batch_size}
  record["load_average_at_end"] = load_average()
  line = json.dumps(record)
  print(line)
  if args.json:
    with open(args.json, "a") as handle:
      handle.write(line + "\n")
  return record


if __name__ == "__main__":
  main()
