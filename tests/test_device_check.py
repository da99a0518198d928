"""benchmarks/device_check.py runs end to end on this CPU at tiny shapes, prints every
section and writes the fields docs/accelerators.md names; bad input is one line and exit 2.

Tiny: tiny_cnn at 32x32, batch 4, N = 2, float32 frozen only, a 128x128 matmul, a
6-frame synthetic room, the demo on configs/test.py for 2 steps.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "device_check.py"
TIMING_KEYS = {"median", "min", "max", "q1", "q3", "n"}


def _run(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, *prefix, str(SCRIPT), *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  folder = tmp_path_factory.mktemp("device_check")
  records = folder / "records.jsonl"
  result = _run("--budget-s", "400", "--image-size", "32", "--batch-size", "4", "--steps", "2",
                "--backbones", "tiny_cnn", "--dtypes", "float32", "--modes", "frozen",
                "--repeats", "2", "--warmup", "0", "--matmul-size", "128", "--workers", "1,2",
                "--pipeline-batches", "2", "--pipeline-repeats", "1",
                "--data-dir", str(folder / "data"), "--scene-frames", "6",
                "--demo-config", "configs/test.py", "--demo-steps", "2",
                "--json", str(records), "--tag", "ci")
  assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
  return result.stdout, [json.loads(line) for line in records.read_text().splitlines()]


def test_every_section_is_measured_and_printed(tiny_run):
  stdout, records = tiny_run
  for section, count in (("ceiling", 1), ("steps", 1), ("pipeline", 2), ("demo", 1)):
    assert f"== {section}: {count} measured\n" in stdout, section
  assert "not started:" not in stdout and "0 not started (budget)" in stdout
  assert "matmul 128^2 float32:" in stdout
  steps_table = stdout.split("== steps")[1].split("== pipeline")[0]
  for cell in ("img/s", "compile s", "util", "peak MiB", "tiny_cnn", "train", "eval"):
    assert cell in steps_table
  assert "2 steps in" in stdout and "median_translation_m" in stdout
  assert "ran 5 measurement(s)" in stdout and "; 0 failed;" in stdout


def test_records_hold_the_measurements(tiny_run):
  _, records = tiny_run
  assert [r["section"] for r in records] == ["ceiling", "steps", "pipeline", "pipeline", "demo",
                                             "run"]
  for record in records:
    assert record["benchmark"] == "device_check" and record["tag"] == "ci"
    assert record["backend"] == "cpu" and record["machine"]["usable_cores"] >= 1
  ceiling = records[0]["ceiling"]["dtypes"]["float32"]
  assert ceiling["gflops"] > 0 and ceiling["variants"]["xla_default"]["xla_flops"] == 2 * 128 ** 3
  step = records[1]
  assert step["config"]["backbone"] == "tiny_cnn" and step["config"]["frozen"]
  assert step["config"]["image_size"] == 32 and step["config"]["batch_size"] == 4
  assert step["config"]["num_steps"] == 2 and len(step["config"]["layers"]) == 4
  assert step["ceiling_gflops"] == ceiling["gflops"]
  for part in ("train", "eval"):
    entry = step[part]
    assert set(entry["ms"]) == TIMING_KEYS and entry["ms"]["n"] == 2
    assert entry["images_per_s"] == pytest.approx(4e3 / entry["ms"]["median"])
    assert entry["compile_s"] > 0 and entry["flops"] > 0
    assert entry["utilisation"] == pytest.approx(entry["gflops_per_s"] / ceiling["gflops"])
    # CPU has no device.memory_stats(): the peak is XLA's analysis of the compiled step.
    assert step["device_memory"] is None
    assert entry["peak_source"] == "XLA memory analysis footprint" and entry["peak_bytes"] > 0
  for record, workers in zip(records[2:4], (1, 2)):
    measured = record["pipeline"]
    assert measured["workers"] == workers and measured["image_size"] == 32
    assert measured["resize_size"] == [256, 455] and measured["images_per_s"] > 0
    assert record["dataset_prepare_s"] > 0
    assert record["fastest_step_images_per_s"] == step["train"]["images_per_s"]
    assert record["pipeline_over_step"] == pytest.approx(
        measured["images_per_s"] / step["train"]["images_per_s"])
  demo = records[4]["demo"]
  assert demo["steps"] == 2 and demo["wall_s"] > 0
  assert demo["steps_per_s"] == pytest.approx(2 / demo["wall_s"])
  assert demo["medians"]["median_translation_m"] == demo["metrics"]["median_translation_m"]
  run = records[5]
  assert run["skipped"] == [] and run["failed"] == [] and len(run["ran"]) == 5 and run["budget_s"] == 400


def _module():
  sys.path.insert(0, str(ROOT / "benchmarks"))
  try:
    import device_check
  finally:
    sys.path.remove(str(ROOT / "benchmarks"))
  return device_check


def test_the_budget_stops_new_measurements_and_says_so(capsys):
  device_check = _module()
  budget = device_check.Budget(30)
  assert budget.allows("steps a")
  budget.start -= 31  # 31 s later: the budget is spent
  assert not budget.allows("steps b") and not budget.allows("demo")
  assert budget.ran == ["steps a"] and budget.skipped == ["steps b", "demo"]
  device_check.print_section("demo", [], budget)
  assert capsys.readouterr().out == ("\n== demo: 0 measured, 1 not started (budget of 30 s spent)"
                                     "\n  not started: demo\n")


def test_a_measurement_the_device_fails_is_reported_and_the_others_run(tmp_path, monkeypatch,
                                                                       capsys):
  """Out of memory in the first step configuration: a 'failed' record and line, the next
  configuration still measured, exit status 1."""
  device_check = _module()
  calls = []

  def measure_step(config, args, ceiling):
    calls.append(config.freeze_backbone)
    if len(calls) == 1:
      raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 3 GiB.\n"
                         "more lines")
    return {"config": {"backbone": config.backbone, "dtype": config.dtype, "frozen": False},
            "train": {"images_per_s": 1.0, "ms": {"median": 1.0}},
            "eval": {"ms": {"median": 1.0}}, "wall_s": 1.0}

  monkeypatch.setattr(device_check, "measure_step", measure_step)
  monkeypatch.setattr(device_check, "print_section", lambda *args: None)
  records = tmp_path / "records.jsonl"
  args = device_check.parse_args(["--sections", "steps", "--backbones", "tiny_cnn",
                                  "--dtypes", "float32", "--json", str(records)])
  with pytest.raises(SystemExit) as stopped:
    device_check.run(args, "cpu")
  assert stopped.value.code == 1 and calls == [True, False]
  written = [json.loads(line) for line in records.read_text().splitlines()]
  assert [r["section"] for r in written] == ["failed", "steps", "run"]
  assert written[0]["what"] == "steps tiny_cnn float32 frozen"
  assert written[0]["error"] == ("RuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying "
                                 "to allocate 3 GiB.")
  assert written[2]["failed"] == ["steps tiny_cnn float32 frozen"]
  out = capsys.readouterr().out
  assert "  failed: steps tiny_cnn float32 frozen: RuntimeError: RESOURCE_EXHAUSTED" in out
  assert "; 1 failed;" in out


@pytest.mark.parametrize("args, message", [
    (("--backend=xyz",), "--backend='xyz': unknown backend; expected one of cpu, gpu, cuda"),
    (("--workers", "0,2"), "--workers='0,2': expected positive whole numbers"),
    (("--workers", "two"), "--workers='two': expected positive whole numbers"),
    (("--budget-s", "3"), "--budget-s=3: too small for any measurement; give at least 10 s"),
    (("--backbones", "caffe,resnet"), "--backbones='caffe,resnet': expected a comma list of"),
    (("--dtypes", "float16"), "--dtypes='float16': expected a comma list of float32, bfloat16"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
  with pytest.raises(SystemExit) as stopped:
    _module().main(list(args))
  assert stopped.value.code == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"device_check: {message}"), lines


def test_a_backend_jax_cannot_start_is_one_line_and_exit_2():
  """A process of its own: the backend is chosen once per process."""
  result = _run("--backend=tpu")
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith("device_check: --backend=tpu: jax cannot start it on this host")


def test_a_missing_package_is_named_in_one_line():
  """orbax (as on a host whose wheel folder lacks it) blocked from importing."""
  block = ("import runpy, sys\n"
           "class Missing:\n"
           "  def find_spec(self, name, path=None, target=None):\n"
           "    if name.split('.')[0] == 'orbax':\n"
           "      raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
           "sys.meta_path.insert(0, Missing())\n"
           f"sys.argv = [{str(SCRIPT)!r}]\n"
           f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
  result = subprocess.run([sys.executable, "-c", block], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip() == (
      "device_check: missing package 'orbax-checkpoint' (import 'orbax'); install lsattn's "
      "dependencies with: pip install --no-index --find-links=WHEELS -e .")
