"""The benchmark scripts run end to end at tiny sizes and write the fields the README uses.

Each script runs once as a subprocess (as a user runs it). Sizes are tiny
(image 32, batch 2, N=1, one candidate layer so the backbone stops at 3b, a
128x128 matmul ceiling, 1 repeat); the input pipeline reads a 4-frame
synthetic scene written here.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from lsattn.data.synthetic import room as synthetic

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
TIMING_KEYS = {"median", "min", "max", "q1", "q3", "n"}


def _run(script: str, *args: str) -> None:
  result = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"


def _read_lines(path: pathlib.Path) -> list[dict]:
  return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def step_records(tmp_path_factory) -> tuple[pathlib.Path, list[dict]]:
  path = tmp_path_factory.mktemp("steps") / "steps.jsonl"
  _run("step_throughput.py", "--config", "configs/test.py", "--image-size", "32",
       "--batch-size", "2", "--steps", "1", "--layers", "t1", "--repeats", "1", "--warmup", "0",
       "--matmul-size", "128", "--conv-batch", "1", "--ceiling-repeats", "1", "--init", "fast",
       "--json", str(path))
  return path, _read_lines(path)


def test_step_throughput_record(step_records):
  _, records = step_records
  assert len(records) == 1
  record = records[0]
  assert record["benchmark"] == "step_throughput" and record["sweep"] == "base"
  config = record["config"]
  assert (config["batch_size"], config["image_size"], config["num_steps"],
          config["layers"]) == (2, 32, 1, ["t1"])
  assert record["machine"]["backend"] and record["machine"]["cpu_count"] >= 1
  ceiling = record["ceiling"]
  assert ceiling["matmul_size"] == 128 and ceiling["matmul_gflops"] > 0
  assert ceiling["matmul_xla_flops"] == pytest.approx(2 * 128 ** 3, rel=0.01)
  assert {"conv2_3x3_56x56_64to192", "inception_3b_3x3_28x28_128to192"} <= set(ceiling["convs"])
  # The ceiling is the faster matmul of XLA's defaults and the steps' own options.
  assert config["xla_cpu_ynn_fusions"] == "dot,reduce"
  variants = ceiling["variants"]
  assert set(variants) == {"xla_default", "dot+reduce"}
  assert variants["xla_default"]["compiler_options"] is None
  assert variants["dot+reduce"]["compiler_options"] == config["compiler_options"]
  assert ceiling["matmul_gflops"] == max(v["matmul_gflops"] for v in variants.values())
  for part in ("train", "eval"):
    entry = record[part]
    assert set(entry["ms"]) == set(entry["cpu_ms"]) == TIMING_KEYS and entry["ms"]["n"] == 1
    assert entry["cpu_ms"]["median"] > 0 and entry["compile_cpu_s"] > 0
    assert entry["ms"]["min"] <= entry["ms"]["median"] <= entry["ms"]["max"]
    assert entry["lower_s"] > 0 and entry["compile_s"] > 0 and entry["first_run_s"] > 0
    assert entry["images_per_s"] == pytest.approx(2e3 / entry["ms"]["median"])
    assert entry["flops"] > 0
    assert entry["gflops_per_s"] == pytest.approx(entry["flops"] / entry["ms"]["median"] / 1e6)
    assert entry["utilisation"] == pytest.approx(entry["gflops_per_s"]
                                                 / ceiling["matmul_gflops"])
  # The train step runs the forward pass and more.
  assert record["train"]["flops"] > record["eval"]["flops"]
  assert record["loss_finite"]


def test_input_pipeline_record(step_records, tmp_path):
  steps_path, [step_record] = step_records
  synthetic.write_synthetic_seven_scenes(tmp_path / "manual", frames_per_sequence=4,
                                         image_size=(24, 32))
  out = tmp_path / "pipeline.jsonl"
  _run("input_pipeline.py", "--data-dir", str(tmp_path / "data"), "--manual-dir",
       str(tmp_path / "manual"), "--sizes", "", "--resize", "40,64", "--image-size", "32",
       "--batch-size", "2", "--batches", "2", "--repeats", "2", "--step-json", str(steps_path),
       "--loaders", "threads,grain:0", "--warmup-batches", "1", "--json", str(out))
  [record, grain_record] = _read_lines(out)
  assert record["benchmark"] == "input_pipeline" and record["preset"] == "custom"
  assert (record["resize_size"], record["image_size"], record["batch_size"]) == ([40, 64], 32, 2)
  assert record["train_examples"] > 0 and record["stored_size"] == [256, 455, 3]
  rate = record["pipeline"]["images_per_s"]
  assert rate > 0 and record["pipeline"]["batches_per_repeat"] == 2
  assert record["pipeline"]["cpu_ms_per_image"] > 0
  assert record["step"]["images_per_s"] == pytest.approx(step_record["train"]["images_per_s"])
  assert record["pipeline_over_step"] == pytest.approx(rate / record["step"]["images_per_s"])
  assert record["target_3x_met"] == (record["pipeline_over_step"] >= 3)
  assert record["step"]["cpu_ms_per_image"] == pytest.approx(
      step_record["train"]["cpu_ms"]["median"] / 2)
  assert record["step_over_pipeline_cpu"] == pytest.approx(
      record["step"]["cpu_ms_per_image"] / record["pipeline"]["cpu_ms_per_image"])

  # The loaders in turn: grain's record beside the threads', with its ratios to them.
  assert (record["loader"], grain_record["loader"], grain_record["workers"]) == (
      "threads", "grain", 0)
  assert record["loaders"] == grain_record["loaders"] == ["threads", "grain:0"]
  assert "vs_first" not in record["pipeline"]
  timing = grain_record["pipeline"]
  assert timing["repeats"] == 2 and timing["warmup_batches"] == 1
  assert timing["images_per_s"] > 0 and timing["cpu_ms_per_image"] > 0
  assert timing["images_per_s_min"] <= timing["images_per_s"] <= timing["images_per_s_max"]
  assert set(timing["vs_first"]) == {"images_per_s", "cpu_ms_per_image"}
  assert all(ratio > 0 for ratio in timing["vs_first"].values())


def test_mask_head_benchmark_records_both_formulations(tmp_path):
  path = tmp_path / "head.jsonl"
  _run("mask_head.py", "--shapes", "demo_4e", "--branch-channels", "1,2", "--repeats", "1",
       "--json", str(path))
  records = _read_lines(path)
  assert [(r["shape"], r["branch_channels"]) for r in records] == [("demo_4e", 1), ("demo_4e", 2)]
  for record in records:
    for key in ("library_fwd_bwd_ms", "reference_fwd_bwd_ms", "library_fwd_bwd_cpu_ms"):
      assert set(record[key]) == TIMING_KEYS and record[key]["median"] > 0


def test_step_throughput_measures_each_kernels_path_and_its_memory(tmp_path):
  """--kernels auto,generic --remat blocks: one record each, naming the kernels asked for and
  used, with XLA's memory analysis of the compiled train step."""
  path = tmp_path / "kernels.jsonl"
  _run("step_throughput.py", "--config", "configs/test.py", "--image-size", "32",
       "--batch-size", "2", "--steps", "1", "--layers", "t1", "--end-to-end", "--repeats", "1",
       "--warmup", "0", "--no-eval", "--matmul-size", "128", "--conv-batch", "1",
       "--ceiling-repeats", "1", "--init", "fast", "--kernels", "auto,generic", "--remat",
       "blocks", "--json", str(path))
  records = _read_lines(path)
  configs = [r["config"] for r in records]
  assert [(c["kernels"], c["kernels_effective"], c["remat"]) for c in configs] == [
      ("auto", "cpu" if records[0]["machine"]["backend"] == "cpu" else "generic", "blocks"),
      ("generic", "generic", "blocks")]
  assert configs[1]["compiler_options"] is None  # generic: no CPU compiler options
  for record in records:
    memory = record["train"]["memory"]
    assert set(memory) == {"temp_size_in_bytes", "argument_size_in_bytes",
                           "output_size_in_bytes", "alias_size_in_bytes"}
    assert memory["temp_size_in_bytes"] > 0 and memory["argument_size_in_bytes"] > 0
    assert record["train"]["ms"]["median"] > 0


def test_step_throughput_interleaves_backbones_and_kernels(tmp_path):
  """--backbone efficientnet_lite0 --kernels cpu,generic --interleave: both compiled, then
  timed in turn for --repeats rounds; each record holds its samples, the load average per
  round and XLA's peak of live buffers."""
  path = tmp_path / "interleaved.jsonl"
  _run("step_throughput.py", "--config", "configs/test.py", "--image-size", "32",
       "--batch-size", "2", "--steps", "1", "--layers", "s4", "--backbone", "efficientnet_lite0",
       "--kernels", "cpu,generic", "--interleave", "--repeats", "2", "--warmup", "0",
       "--matmul-size", "128", "--conv-batch", "1", "--ceiling-repeats", "1", "--init", "fast",
       "--json", str(path))
  records = _read_lines(path)
  assert [(r["config"]["backbone"], r["config"]["layers"], r["config"]["kernels_effective"])
          for r in records] == [("efficientnet_lite0", ["s4"], "cpu"),
                                ("efficientnet_lite0", ["s4"], "generic")]
  for record in records:
    assert record["interleaved"] and record["repeats"] == 2
    assert len(record["round_load_average"]) == 2
    assert record["round_load_average"] == records[0]["round_load_average"]  # one set of rounds
    for part in ("train", "eval"):
      entry = record[part]
      assert entry["ms"]["n"] == len(entry["ms_samples"]) == len(entry["cpu_ms_samples"]) == 2
      assert entry["ms"]["median"] == pytest.approx(float(np.median(entry["ms_samples"])))
      assert entry["peak_memory_bytes"] > 0
    assert record["loss_finite"]


def test_step_throughput_backbone_and_kernels_sweeps():
  """--backbone sets the base; the backbone and kernels sweeps vary it one field at a time."""
  sys.path.insert(0, str(BENCHMARKS))
  import step_throughput
  args = step_throughput.parse_args(["--config", "configs/demo_pose.py", "--backbone",
                                     "efficientnet_lite0", "--sweep", "backbone", "--sweep",
                                     "kernels"])
  plan = step_throughput.make_plan(args, step_throughput.load_config(args.config))
  assert [(name, s.backbone, s.kernels) for name, s in plan] == [
      ("backbone", "caffe", None), ("backbone", "efficientnet_lite0", None),
      ("kernels", "efficientnet_lite0", "cpu"), ("kernels", "efficientnet_lite0", "generic")]
  # The layers sweep takes its taps from the base's backbone.
  args = step_throughput.parse_args(["--backbone", "efficientnet_lite0", "--sweep", "layers",
                                     "--values", "1,2"])
  plan = step_throughput.make_plan(args, step_throughput.load_config(args.config))
  assert [s.layers for _, s in plan] == [("head",), ("s6", "head")]


def test_memory_footprint_counts_donated_outputs_once():
  sys.path.insert(0, str(BENCHMARKS))
  import measure
  memory = {"temp_size_in_bytes": 100, "argument_size_in_bytes": 40,
            "output_size_in_bytes": 30, "alias_size_in_bytes": 25}
  assert measure.memory_footprint(memory) == 145
  assert measure.memory_footprint(dict(memory, temp_size_in_bytes=None)) is None
  assert measure.memory_footprint(None) is None
