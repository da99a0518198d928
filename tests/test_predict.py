"""predict.py and lsattn.prediction on a run trained for a few steps on a tiny scene.

The run is trained once per module (configs/test.py on a few-frame synthetic
scene); predictions on its test frames must agree with what eval wrote for
them, for any input size and EXIF orientation, without the dataset, and
unreadable files must be named and skipped.
"""

from __future__ import annotations

import csv
import io
import json
import pathlib
import shutil
import subprocess
import sys
import types

import numpy as np
from PIL import Image
import pytest

from configs import test as test_config
from lsattn import LsattnError, cli, geometry, prediction
from lsattn.data import builders, images, pseudo_gt
import trained_runs

ROOT = pathlib.Path(__file__).resolve().parent.parent
FRAMES = ["frame-000000.color.png", "frame-000003.color.png", "frame-000007.color.png"]
EXIF_ORIENTATION = 0x0112
ROTATE_CLOCKWISE_90 = 6  # EXIF: display after rotating the stored pixels 90 degrees clockwise


_config = trained_runs.config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A run trained for 2 steps, and the frames of its test sequence."""
  return trained_runs.shared_pose_run(tmp_path_factory)


def _as_stored(frame: pathlib.Path) -> Image.Image:
  """The frame as the built dataset stores it (a JPEG at the stored size): predicting
  from it, a run sees the pixels eval saw, so the two agree whatever the backbone."""
  stored = images.encode_jpeg(images.load_image(frame, builders.POSE_STORED_SIZE))
  return Image.open(io.BytesIO(stored)).convert("RGB")


def _photos(run, folder: pathlib.Path) -> pathlib.Path:
  """Three test frames (as stored, saved losslessly under their names), a truncated PNG,
  a text file and a sub-folder."""
  folder.mkdir(parents=True)
  for name in FRAMES:
    _as_stored(run["test_frames"] / name).save(folder / name)
  good = (folder / FRAMES[0]).read_bytes()
  (folder / "broken.png").write_bytes(good[:len(good) // 3])
  (folder / "notes.txt").write_text("not an image")
  (folder / "nested").mkdir()
  shutil.copy(run["test_frames"] / FRAMES[1], folder / "nested" / FRAMES[1])
  return folder


def _assert_matches_eval(result, evaluated):
  row = evaluated[pathlib.Path(result["path"]).name]
  predicted = [float(row[f"pred_{k}"]) for k in ("x", "y", "z")]
  np.testing.assert_allclose(result["position"], predicted, atol=1e-4)  # CSV: 6 decimals
  orientation = [float(row[f"pred_{k}"]) for k in ("qw", "qx", "qy", "qz")]
  assert geometry.quaternion_angle_deg(result["orientation"], orientation) < 0.01
  assert result["layers"] == [row["layer_step1"], row["layer_step2"]]


def test_folder_with_a_corrupt_file_predicts_the_rest_without_the_dataset(run, tmp_path,
                                                                          capsys):
  photos = _photos(run, tmp_path / "photos")
  # Only the workdir is needed: the dataset's folders are not given.
  config = _config(run["data"], data_dir=str(tmp_path / "absent"), manual_dir="")
  results = prediction.predict(run["workdir"], config, [photos], overlays=tmp_path / "overlays")
  assert [pathlib.Path(r["path"]).name for r in results] == ["broken.png", *FRAMES]
  broken, *good = results
  assert set(broken) == {"path", "error"} and str(photos / "broken.png") in broken["error"]
  assert str(photos / "broken.png") in capsys.readouterr().err
  for result in good:
    assert "error" not in result
    _assert_matches_eval(result, run["evaluated"])
    np.testing.assert_allclose(np.linalg.norm(result["orientation"]), 1.0, atol=1e-6)
    assert pathlib.Path(result["overlay"]).stat().st_size > 1000
  assert not (tmp_path / "absent").exists()

  prediction.write_predictions(tmp_path / "preds.json", results)
  assert json.loads((tmp_path / "preds.json").read_text()) == results


def test_any_size_and_exif_orientation(run, tmp_path):
  original = _as_stored(run["test_frames"] / FRAMES[1])
  upright = tmp_path / "upright.png"
  original.save(upright)
  # A phone's portrait photo: pixels stored sideways, EXIF says how to turn them.
  sideways = tmp_path / "sideways.png"
  exif = Image.Exif()
  exif[EXIF_ORIENTATION] = ROTATE_CLOCKWISE_90
  original.transpose(Image.Transpose.ROTATE_90).save(sideways, exif=exif)
  large = tmp_path / "large.jpg"
  original.resize((640, 480), Image.BICUBIC).save(large, quality=95)
  results = prediction.predict(run["workdir"], _config(run["data"]),
                               [upright, sideways, large])
  assert all("error" not in r for r in results), results
  upright_result, sideways_result, large_result = results
  np.testing.assert_allclose(sideways_result["position"], upright_result["position"], atol=1e-5)
  np.testing.assert_allclose(sideways_result["orientation"], upright_result["orientation"],
                             atol=1e-5)
  _assert_matches_eval(dict(upright_result, path=FRAMES[1]), run["evaluated"])
  np.testing.assert_allclose(large_result["position"], upright_result["position"], atol=0.05)


def test_cli_writes_csv(run, tmp_path, capsys):
  photos = _photos(run, tmp_path / "photos")
  output = tmp_path / "preds.csv"
  # What predict.py runs once its flags are parsed (the flags themselves:
  # tests/test_cli.py, in subprocesses). No config: the run folder's config.json.
  cli.predict_images(None, run["workdir"], [str(photos / FRAMES[2]), str(photos)], str(output),
                     None, True)
  with open(output) as handle:
    rows = list(csv.DictReader(handle))
  assert [pathlib.Path(r["path"]).name for r in rows] == [FRAMES[2], "broken.png", *FRAMES]
  assert rows[1]["error"] and rows[1]["x"] == "" and rows[0]["error"] == ""
  assert list(rows[0])[:8] == ["path", "x", "y", "z", "qw", "qx", "qy", "qz"]
  assert {"layer_step1", "layer_step2"} <= set(rows[0])
  # --per_step on a trained run: each step's pose, the last the final one.
  for name in ("x", "y", "z", "qw", "qx", "qy", "qz"):
    assert rows[0][f"{name}_step2"] == rows[0][name] and rows[0][f"{name}_step1"]
  assert "x_step3" not in rows[0] and rows[1]["x_step1"] == ""
  err = capsys.readouterr().err
  assert "Predicted 4 of 5 images" in err and str(photos / "broken.png") in err
  # What the folder held besides images is named, not silently dropped.
  assert err.strip().splitlines()[-1].endswith("; skipped 2 non-image entries: nested/, notes.txt")


def test_estimates_file_holds_what_eval_wrote_for_the_frames(run, tmp_path, monkeypatch):
  """predict.py --estimates, run in a scene folder on 'seq-02': the community's lines,
  named as the pGT files name frames, with the poses eval wrote for them."""
  _photos(run, tmp_path / "scene" / "seq-02")
  monkeypatch.chdir(tmp_path / "scene")
  estimates = tmp_path / "synthetic_room_lsattn.txt"
  with pytest.raises(LsattnError, match="--estimates=.*expected a .txt file"):
    cli.predict_images(None, run["workdir"], ["seq-02"], None, None, False, "e.csv")
  cli.predict_images(None, run["workdir"], ["seq-02"], None, None, False, str(estimates))
  mine = pseudo_gt.read_pose_lines(estimates, focal_length=False)
  assert list(mine) == [f"seq-02/{name}" for name in FRAMES]  # not the unreadable one
  evaluated = pseudo_gt.read_pose_lines(
      run["workdir"] / "eval" / "estimates_synthetic_room.txt", focal_length=False)
  assert len(evaluated) == 8 and set(mine) < set(evaluated)
  for name, pose in mine.items():
    np.testing.assert_allclose(pose.position, evaluated[name].position, atol=1e-4)
    assert geometry.quaternion_angle_deg(pose.orientation, evaluated[name].orientation) < 0.01


def test_other_shapes_are_refused(run):
  with pytest.raises(LsattnError, match="hidden_size"):
    prediction.predict(run["workdir"], _config(run["data"], hidden_size=16),
                       [run["test_frames"] / FRAMES[0]])


def _cli(script, *args):
  return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


def test_the_run_folder_stands_alone_and_refuses_another_model(run):
  frame = run["test_frames"] / FRAMES[0]
  own = prediction.predict(run["workdir"], None, [frame])  # <workdir>/config.json
  given = prediction.predict(run["workdir"], _config(run["data"], eval_batch_size=2), [frame])
  # Another eval batch size is another compiled program: equal up to float rounding.
  assert [(r["path"], r["layers"]) for r in own] == [(r["path"], r["layers"]) for r in given]
  for name in ("position", "orientation"):
    np.testing.assert_allclose(own[0][name], given[0][name], rtol=1e-6, atol=1e-6)
  # The preprocessing of training is the run's: another resize_size is refused, one line.
  result = _cli("predict.py", f"--workdir={run['workdir']}",
                f"--config={ROOT / 'configs' / 'test.py'}", "--config.resize_size=(48, 64)",
                frame)
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip() == (
      f"error: the given config changes what the run's model is "
      f"({run['workdir'] / 'config.json'}): resize_size=(40, 64) in the run, (48, 64) given. "
      f"Leave --config out to use the run's own config.")


@pytest.mark.parametrize("script", ["eval.py", "predict.py"])
def test_a_file_as_data_dir_is_one_line_before_any_work(run, script, tmp_path):
  not_a_folder = tmp_path / "data.txt"
  not_a_folder.write_text("")
  result = _cli(script, f"--workdir={run['workdir']}", f"--config={ROOT / 'configs' / 'test.py'}",
                f"--config.data_dir={not_a_folder}",
                *([run["test_frames"] / FRAMES[0]] if script == "predict.py" else []))
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip() == (f"error: config.data_dir = '{not_a_folder}': expected a "
                                   f"folder, not a file")


def test_workdir_without_checkpoint(run, tmp_path):
  with pytest.raises(LsattnError, match="no checkpoint"):
    prediction.predict(tmp_path / "empty", _config(run["data"]), [run["test_frames"]])
  assert not (tmp_path / "empty").exists()


def test_no_images_and_bad_output_name(tmp_path):
  (tmp_path / "folder").mkdir()
  with pytest.raises(LsattnError, match="no images"):
    prediction.predict(tmp_path, test_config.get_config(), [tmp_path / "folder"])
  with pytest.raises(LsattnError, match="preds.txt"):
    prediction.check_output_path(tmp_path / "preds.txt")


def test_folders_expand_to_their_images_in_natural_order(tmp_path):
  for name in ("img10.JPG", "img9.png", "img1.jpeg", "readme.md"):
    (tmp_path / name).write_bytes(b"")
  (tmp_path / "sub").mkdir()
  assert [p.name for p in prediction.expand_paths([tmp_path])] == [
      "img1.jpeg", "img9.png", "img10.JPG"]


def test_classification_results_and_csv(tmp_path):
  # A classification run costs another training; its output handling is checked directly.
  predictor = types.SimpleNamespace(
      class_names=("bar", "kitchen", "office"),
      model_config=types.SimpleNamespace(layer_names=("Conv-3B", "Conv-5B")))
  outputs = {"logits": np.array([[0.0, np.log(3.0), 0.0]]),
             "layer_choices": np.array([[[0.0, 1.0], [1.0, 0.0]]])}
  result = prediction._result(pathlib.Path("a.jpg"), outputs, 0, predictor)
  assert result["class"] == "kitchen" and result["layers"] == ["Conv-5B", "Conv-3B"]
  assert result["probability"] == pytest.approx(0.6)
  assert result["probabilities"] == pytest.approx({"bar": 0.2, "kitchen": 0.6, "office": 0.2})
  prediction.write_predictions(tmp_path / "p.csv", [result, {"path": "b.jpg", "error": "bad"}])
  with open(tmp_path / "p.csv") as handle:
    rows = list(csv.DictReader(handle))
  assert list(rows[0]) == ["path", "class", "probability", "p_bar", "p_kitchen", "p_office",
                           "layer_step1", "layer_step2", "error"]
  assert rows[0]["p_kitchen"] == "0.600000" and rows[1]["error"] == "bad"


def test_per_step_pose_results_csv_and_json(tmp_path):
  # Per-step output handling on hand-made eval-step outputs: 2 steps, the last the final one.
  predictor = types.SimpleNamespace(
      class_names=None, model_config=types.SimpleNamespace(layer_names=("Conv-3B", "Conv-5B")))
  turn = [np.cos(np.pi / 8), 0.0, 0.0, np.sin(np.pi / 8)]
  outputs = {"position": np.array([[1.0, 2.0, 3.0]]),
             "orientation": np.array([[0.0, 0.0, 0.0, -2.0]]),
             "step_position": np.array([[[0.0, 2.0, 3.0], [1.0, 2.0, 3.0]]]),  # [1, N, 3]
             "step_orientation": np.array([[np.negative(turn), [0.0, 0.0, 0.0, -1.0]]]),
             "layer_choices": np.array([[[0.0, 1.0], [1.0, 0.0]]])}
  assert "steps" not in prediction._result(pathlib.Path("a.jpg"), outputs, 0, predictor)
  result = prediction._result(pathlib.Path("a.jpg"), outputs, 0, predictor, per_step=True)
  first, last = result["steps"]
  assert first["position"] == [0.0, 2.0, 3.0]
  # Unit, with the canonical sign, as the top-level orientation.
  np.testing.assert_allclose(first["orientation"], turn)
  assert result["orientation"] == [0.0, 0.0, 0.0, 1.0]
  assert last == {"position": result["position"], "orientation": result["orientation"]}

  prediction.write_predictions(tmp_path / "p.json", [result])
  assert json.loads((tmp_path / "p.json").read_text())[0]["steps"] == [first, last]
  prediction.write_predictions(tmp_path / "p.csv", [result, {"path": "b.jpg", "error": "bad"}])
  with open(tmp_path / "p.csv") as handle:
    rows = list(csv.DictReader(handle))
  pose_columns = ["x", "y", "z", "qw", "qx", "qy", "qz"]
  assert list(rows[0]) == ["path", *pose_columns, "layer_step1", "layer_step2",
                           *(f"{name}_step1" for name in pose_columns),
                           *(f"{name}_step2" for name in pose_columns), "error"]
  assert [float(rows[0][f"{name}_step1"]) for name in pose_columns] == pytest.approx(
      first["position"] + first["orientation"], abs=1e-6)
  assert all(rows[0][f"{name}_step2"] == rows[0][name] for name in pose_columns)
  assert rows[1]["x_step1"] == "" and rows[1]["error"] == "bad"


def test_per_step_classification_results_and_csv(tmp_path):
  predictor = types.SimpleNamespace(
      class_names=("bar", "kitchen", "office"),
      model_config=types.SimpleNamespace(layer_names=("Conv-3B", "Conv-5B")))
  logits = np.array([0.0, np.log(3.0), 0.0])
  outputs = {"logits": logits[None],
             "step_logits": np.array([[[np.log(2.0), 0.0, 0.0], logits]]),  # [1, N, C]
             "layer_choices": np.array([[[0.0, 1.0], [1.0, 0.0]]])}
  result = prediction._result(pathlib.Path("a.jpg"), outputs, 0, predictor, per_step=True)
  assert result["steps"] == [{"class": "bar", "probability": pytest.approx(0.5)},
                             {"class": "kitchen", "probability": pytest.approx(0.6)}]
  assert result["class"] == "kitchen"
  prediction.write_predictions(tmp_path / "p.csv", [result])
  with open(tmp_path / "p.csv") as handle:
    rows = list(csv.DictReader(handle))
  assert list(rows[0])[-5:] == ["class_step1", "probability_step1", "class_step2",
                                "probability_step2", "error"]
  assert rows[0]["class_step1"] == "bar" and rows[0]["probability_step1"] == "0.500000"


@pytest.mark.parametrize("task", ["pose", "classification"])
def test_per_step_without_recurrent_steps_is_empty(tmp_path, task):
  predictor = types.SimpleNamespace(
      class_names=None if task == "pose" else ("bar", "kitchen"),
      model_config=types.SimpleNamespace(layer_names=("Conv-5B",)))
  outputs = {"position": np.zeros((1, 3)), "orientation": np.array([[1.0, 0, 0, 0]]),
             "logits": np.zeros((1, 2)), "layer_choices": np.zeros((1, 0, 1))}
  result = prediction._result(pathlib.Path("a.jpg"), outputs, 0, predictor, per_step=True)
  assert result["steps"] == [] and result["layers"] == []
  prediction.write_predictions(tmp_path / "p.csv", [result])
  with open(tmp_path / "p.csv") as handle:
    header = next(csv.reader(handle))
  assert header[-1] == "error" and not [column for column in header if "step" in column]

