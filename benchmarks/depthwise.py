r"""EfficientNet-Lite0's depthwise and 1x1 convolutions: which formulation for kernels='cpu'.

  python benchmarks/depthwise.py --json results.jsonl

For layers of EfficientNet-Lite0 at 224x224, batch 8, times the jitted
forward+backward (gradients for input and kernel) of each formulation in
`lsattn.backbones.efficientnet_lite0`: the depthwise convolution as XLA's
grouped convolution ('generic') or as k * k shifted multiply-adds ('cpu');
the 1x1 convolution as a convolution or as a matmul (`lsattn.nn.primitives.conv2d`).
Each is compiled as a run would compile it: with the CPU compiler options of
kernels='cpu' (`lsattn.runs.compilation.cpu_options`, config default), and the
convolutions also with XLA's defaults (kernels='generic'). Prints one JSON
object per layer and appends it to ``--json``.
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

from lsattn.nn import primitives as layers  # noqa: E402
from lsattn.runs import compilation
from lsattn.backbones import efficientnet_lite0  # noqa: E402
from lsattn.config_schema import get_config  # noqa: E402
from measure import load_average, machine_description, summarise, time_calls  # noqa: E402

# name: (input [B, H, W, C], kernel size, stride, output channels (1x1 only))
DEPTHWISE = {
    "56x56x144_k3_s1": ((8, 56, 56, 144), 3, 1),  # block 2
    "56x56x144_k5_s2": ((8, 56, 56, 144), 5, 2),  # block 3
    "14x14x480_k3_s1": ((8, 14, 14, 480), 3, 1),  # blocks 6, 7
    "14x14x480_k5_s1": ((8, 14, 14, 480), 5, 1),  # block 8
}
POINTWISE = {
    "56x56x24_to_144": ((8, 56, 56, 24), 144),  # block 2's expansion
    "14x14x480_to_80": ((8, 14, 14, 480), 80),  # block 7's projection
}


def gradient_fn(layer, options):
  loss = lambda x, kernel: jnp.sum(jnp.sin(layer(x, kernel)))  # noqa: E731
  return jax.jit(jax.grad(loss, argnums=(0, 1)), compiler_options=options or None)


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--json", help="append one JSON object per measurement to this file")
  args = parser.parse_args(argv)
  cpu_options = compilation.cpu_options(get_config().xla_cpu_ynn_fusions)
  machine = machine_description()
  cases = []
  for name, (shape, size, stride) in DEPTHWISE.items():
    kernel_shape = (size, size, 1, shape[-1])
    variants = {
        "shifted_cpu_options": (lambda x, k, s=stride: efficientnet_lite0.depthwise_conv(
            x, k, s, kernels="cpu"), cpu_options),
        "conv_cpu_options": (lambda x, k, s=stride: efficientnet_lite0.depthwise_conv(
            x, k, s, kernels="generic"), cpu_options),
        "conv_xla_default": (lambda x, k, s=stride: efficientnet_lite0.depthwise_conv(
            x, k, s, kernels="generic"), {}),
    }
    cases.append(("depthwise", name, shape, kernel_shape, variants))
  for name, (shape, features) in POINTWISE.items():
    kernel_shape = (1, 1, shape[-1], features)
    variants = {
        "matmul_cpu_options": (lambda x, k: layers.conv2d({"kernel": k}, x, kernels="cpu"),
                               cpu_options),
        "conv_cpu_options": (lambda x, k: layers.conv2d({"kernel": k}, x, kernels="generic"),
                             cpu_options),
        "conv_xla_default": (lambda x, k: layers.conv2d({"kernel": k}, x, kernels="generic"), {}),
    }
    cases.append(("pointwise", name, shape, kernel_shape, variants))

  records = []
  for kind, name, shape, kernel_shape, variants in cases:
    x = jax.random.normal(jax.random.key(0), shape)
    kernel = jax.random.normal(jax.random.key(1), kernel_shape)
    record = {"benchmark": "depthwise", "kind": kind, "layer": name, "input": list(shape),
              "kernel": list(kernel_shape), "machine": machine, "load_average": load_average()}
    for label, (layer, options) in variants.items():
      grad = gradient_fn(layer, options)
      wall, cpu = time_calls(lambda: grad(x, kernel), warmup=1, repeats=args.repeats, iters=1)
      record[f"{label}_fwd_bwd_ms"] = summarise(wall)
      record[f"{label}_fwd_bwd_cpu_ms"] = summarise(cpu)
    record["load_average_after"] = load_average()
    records.append(record)
    print(json.dumps({"layer": name, **{k: round(v["median"], 2) for k, v in record.items()
                                        if k.endswith("_ms")}}), flush=True)
    if args.json:
      with open(args.json, "a") as handle:
        handle.write(json.dumps(record) + "\n")
  return records


if __name__ == "__main__":
  main()
