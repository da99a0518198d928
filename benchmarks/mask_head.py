r"""Cost of the multi-convolution mask head C_A (lsattn.nn.attention.mask_head).

  python benchmarks/mask_head.py --json results.jsonl

C_A's branch width m (``attention_branch_channels``) is our choice: the
paper gives none. For each candidate-layer shape of the demo (112 input,
batch 16) and of the paper (224 input, batch 8) and each m, the jitted
forward+backward of the head is timed two ways in the same process: the
library's formulation (one matmul for all branches, then shifted sums) and
the reference (one ``lax.conv`` per branch, phi, 1x1 mix). m = 1 is the cost
of a head with one channel per branch, as before the non-linearity was
added. Prints one JSON object per (shape, m) and appends it to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import jax.numpy as jnp

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from lsattn.nn import attention, primitives as layers  # noqa: E402
from measure import load_average, machine_description, summarise, time_calls  # noqa: E402

# (batch, h, w, C) of Conv-3B and Conv-4E at the demo's 112 and the paper's 224 input.
SHAPES = {"demo_3b": (16, 14, 14, 480), "demo_4e": (16, 7, 7, 832),
          "paper_3b": (8, 28, 28, 480), "paper_4e": (8, 14, 14, 832)}


def reference_head(params, activated):
  """C_A as separate convolutions: phi(k x k conv) per branch, stacked, 1x1 mix."""
  branches = [jax.nn.leaky_relu(layers.conv2d(b, activated)) for b in params["mask_branches"]]
  return layers.conv2d(params["mask_mix"], jnp.concatenate(branches, axis=-1))[..., 0]


def library_head(params, activated):
  return attention.mask_head(params["mask_branches"], params["mask_mix"], activated)


def gradient_fn(head):
  return jax.jit(jax.grad(lambda p, a: jnp.sum(jnp.sin(head(p, a))), argnums=(0, 1)))


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--branch-channels", default="1,4,8")
  parser.add_argument("--shapes", default=",".join(SHAPES))
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--json", help="append one JSON object per measurement to this file")
  args = parser.parse_args(argv)
  machine = machine_description()
  records = []
  for name in args.shapes.split(","):
    shape = SHAPES[name]
    activated = jax.random.normal(jax.random.key(1), shape)
    for m in (int(v) for v in args.branch_channels.split(",")):
      params, _ = attention.init_spatial_attention(
          jax.random.key(0), hidden_size=8, feature_channels=shape[-1], branch_channels=m)
      record = {"benchmark": "mask_head", "shape": name, "input": list(shape),
                "branch_channels": m, "machine": machine, "load_average": load_average()}
      for label, head in (("library", library_head), ("reference", reference_head)):
        grad = gradient_fn(head)
        wall, cpu = time_calls(lambda: grad(params, activated), warmup=1,
                               repeats=args.repeats, iters=1)
        record[f"{label}_fwd_bwd_ms"] = summarise(wall)
        record[f"{label}_fwd_bwd_cpu_ms"] = summarise(cpu)
      records.append(record)
      print(json.dumps({"shape": name, "branch_channels": m,
                        **{k: round(v["median"], 2) for k, v in record.items()
                           if k.endswith("_ms")}}), flush=True)
      if args.json:
        with open(args.json, "a") as handle:
          handle.write(json.dumps(record) + "\n")
  return records


if __name__ == "__main__":
  main()
