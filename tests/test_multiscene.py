"""One model for several scenes (issue 34 parts 1-2): the scenes a config names, the
embedded rooms, balanced batches, the per-scene heads and classifier, and a tiny run
over three rooms trained, resumed, evaluated, predicted and exported."""

from __future__ import annotations

import csv
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import test as test_config
from lsattn import LsattnError, config_checks, exporting, model, prediction, training
from lsattn.data import pipeline, scenes
from lsattn.data.synthetic import room, rooms
from lsattn.nn import core

ROOT = pathlib.Path(__file__).resolve().parent.parent
ROOMS = tuple(f"seven_scenes/{name}" for name in rooms.NAMES)


# ------------------------------------------------------------------ the config's scenes


@pytest.mark.parametrize("names, dataset, expected", [
    (("seven_scenes/chess", "seven_scenes/kitchen"), "seven_scenes/chess",
     "unknown scene 'seven_scenes/kitchen'"),
    (("seven_scenes/chess", "cambridge_landmarks/shop_facade"), "seven_scenes/chess",
     "scenes of different datasets (cambridge_landmarks, seven_scenes)"),
    (("seven_scenes/chess", "seven_scenes/chess"), "seven_scenes/chess",
     "'seven_scenes/chess' is named more than once"),
    (("seven_scenes/chess", "seven_scenes/fire"), "seven_scenes/heads",
     "config.dataset = 'seven_scenes/heads' is not one of config.scenes"),
    (("mit67/synthetic", "mit67/default"), "mit67/synthetic", "is a classification dataset"),
    (("chess", "fire"), "seven_scenes/chess", "dataset must be '<builder>/<config>'"),
    (("own_scene/a", "own_scene/b"), "own_scene/a", "own scenes ('own_scene/a') cannot be"),
])
def test_bad_scenes_are_refused_in_one_line_naming_the_key(names, dataset, expected):
  config = test_config.get_config()
  config.scenes, config.dataset = names, dataset
  with pytest.raises(LsattnError) as error:
    config_checks.check_config(config)
  message = str(error.value)
  assert expected in message and "\n" not in message
  assert "config.scenes" in message or "config.dataset" in message


def test_no_scenes_is_the_one_dataset_and_the_model_unchanged():
  config = test_config.get_config()
  assert scenes.scene_names(config.dataset, config.scenes) == (config.dataset,)
  assert config_checks.check_config(config).num_scenes == 1
  config.scenes, config.dataset = ROOMS, ROOMS[1]
  assert config_checks.check_config(config).num_scenes == 3


# ------------------------------------------------------------------------- the rooms


def test_the_rooms_differ_in_size_texture_and_layout_and_cameras_stay_inside():
  sizes = {tuple(rooms.scene(name).room.hi) for name in rooms.NAMES}
  assert len(sizes) == len(rooms.NAMES)
  views = []
  for name in rooms.NAMES:
    low, high = rooms.camera_box(name)
    poses = room.trajectory(0, 1, 12, camera_box=(low, high))
    centres = poses[:, :3, 3]
    assert (centres >= low - 1e-9).all() and (centres <= high + 1e-9).all()
    assert (high < rooms.scene(name).room.hi).all()
    furniture = rooms.scene(name).objects[:len(rooms.ROOMS[name].furniture)]
    assert all(box.hi[2] < low[2] for box in furniture)  # below every camera
    views.append(room.render(rooms.scene(name), poses[0], (24, 32)).astype(float))
  # The same camera path (relative to each room) sees different pictures in each room.
  for a in range(len(views)):
    for b in range(a + 1, len(views)):
      assert np.abs(views[a] - views[b]).mean() > 20


def test_a_room_is_written_in_the_7_scenes_layout(tmp_path):
  folder = rooms.write_synthetic_room(tmp_path, "synthetic_hall", frames_per_sequence=2,
                                      image_size=(16, 16), train_sequences=(1,),
                                      test_sequences=(2,))
  assert folder == tmp_path / "synthetic_hall"
  assert (folder / "TrainSplit.txt").read_text() == "sequence1\n"
  assert (folder / "TestSplit.txt").read_text() == "sequence2\n"
  pose = np.loadtxt(folder / "seq-02" / "frame-000001.pose.txt")
  low, high = rooms.camera_box("synthetic_hall")
  assert (pose[:3, 3] >= low).all() and (pose[:3, 3] <= high).all()
  assert (folder / "seq-01" / "frame-000000.color.png").is_file()
  with pytest.raises(LsattnError, match="unknown synthetic room 'synthetic_attic'"):
    rooms.write_synthetic_room(tmp_path, "synthetic_attic")


# ------------------------------------------------------------------ balanced batches


class _Scenes:
  """What TrainBatches reads of a split of several scenes (no images decoded)."""

  def __init__(self, sizes):
    self.scene_names = tuple(f"s{k}" for k in range(len(sizes)))
    scene = np.concatenate([np.full(size, k, np.int32) for k, size in enumerate(sizes)])
    self.labels = {"scene": scene, "position": np.zeros((len(scene), 3)),
                   "orientation": np.tile([1.0, 0, 0, 0], (len(scene), 1))}

  def __len__(self):
    return len(self.labels["scene"])


def _plans(sizes, sampling, steps, batch_size=4, seed=3):
  options = pipeline.ImageOptions(resize_size=(8, 8), image_size=8, channel_mean=(0, 0, 0))
  batches = pipeline.TrainBatches(_Scenes(sizes), task="pose", options=options,
                                  batch_size=batch_size, seed=seed, scene_sampling=sampling)
  return [batches.plan(step) for step in range(steps)], batches.split.labels["scene"]


def test_equal_sampling_gives_every_scene_the_same_rows_and_cycles_each_scene():
  sizes = (2, 5, 13)
  plans, scene = _plans(sizes, "equal", steps=30)  # 120 rows: 40 per scene
  positions = np.asarray([item[0] for plan in plans for item in plan])
  np.testing.assert_array_equal(np.bincount(scene[positions], minlength=3), [40, 40, 40])
  # Each scene's rows go through its images in epochs: every image once per epoch.
  for k, size in enumerate(sizes):
    mine = positions[scene[positions] == k]
    for start in range(0, len(mine) - size + 1, size):
      assert sorted(mine[start:start + size]) == sorted(np.flatnonzero(scene == k))


def test_by_size_sampling_follows_the_scenes_sizes():
  plans, scene = _plans((2, 5, 13), "by_size", steps=5)  # one epoch of the 20 images
  positions = [item[0] for plan in plans for item in plan]
  assert sorted(positions) == list(range(20))
  np.testing.assert_array_equal(np.bincount(scene[positions]), [2, 5, 13])


@pytest.mark.parametrize("sampling", ["equal", "by_size"])
def test_batches_are_a_pure_function_of_seed_and_step(sampling):
  first, _ = _plans((3, 7, 4), sampling, steps=12)
  options = pipeline.ImageOptions(resize_size=(8, 8), image_size=8, channel_mean=(0, 0, 0))
  resumed = pipeline.TrainBatches(_Scenes((3, 7, 4)), task="pose", options=options,
                                  batch_size=4, seed=3, scene_sampling=sampling)
  assert [resumed.plan(step) for step in (11, 5, 9)] == [first[11], first[5], first[9]]
  other_seed, _ = _plans((3, 7, 4), sampling, steps=12, seed=4)
  assert other_seed != first


# ---------------------------------------------------------------------------- the model


def _tiny_model(num_scenes: int, variant: str = "layer_spatial") -> model.ModelConfig:
  return model.ModelConfig(
      num_scenes=num_scenes, backbone="tiny_cnn", variant=variant,
      core=core.CoreConfig(num_steps=2, hidden_size=4, projection_size=4,
                           convlstm_kernel_sizes=(1,), attention_kernel_sizes=(1,),
                           gate_embedding_size=2, attention_branch_channels=2))


@pytest.mark.parametrize("variant", ["layer_spatial", "posenet"])
def test_the_classifier_picks_the_scene_head_and_training_scores_the_true_one(variant):
  config = _tiny_model(3, variant)
  means = np.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
  # Compiled, not eager: eagerly the model is hundreds of small programs.
  params, state = jax.jit(lambda key: model.init_model(key, config, (32, 32, 3),
                                                       position_mean=means))(jax.random.key(0))
  assert params["head"]["kernel"].shape[-1] == 21
  np.testing.assert_allclose(params["head"]["bias"].reshape(3, 7)[:, :3], means)
  images = jax.random.normal(jax.random.key(1), (5, 32, 32, 3)) * 50
  outputs, _ = jax.jit(lambda p, s, x: model.apply_model(p, s, x, train=False, config=config))(
      params, state, images)
  prediction_ = outputs.prediction
  assert prediction_["scene_logits"].shape == (5, 3)
  assert prediction_["scene_position"].shape == (5, 3, 3)
  chosen = np.argmax(prediction_["scene_logits"], axis=-1)
  np.testing.assert_allclose(prediction_["position"],
                             np.asarray(prediction_["scene_position"])[np.arange(5), chosen])
  np.testing.assert_allclose(np.linalg.norm(prediction_["scene_orientation"], axis=-1), 1,
                             rtol=1e-5)
  steps = model.num_steps(config)
  assert outputs.step_predictions["position"].shape == (steps, 5, 3)

  # Every image of scene 1: the pose loss reaches scene 1's head only; the scene
  # cross-entropy is part of the loss.
  train_config = test_config.get_config()
  train_config.scenes = ROOMS
  batch = {"image": images, "position": jnp.zeros((5, 3)),
           "orientation": jnp.tile(jnp.asarray([1.0, 0, 0, 0]), (5, 1)),
           "scene": jnp.ones(5, jnp.int32)}
  loss_fn = training.make_loss_fn(train_config, config)
  (loss, (parts, _, _)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      params, state, batch, None, 1.0)
  np.testing.assert_allclose(loss, parts["final_loss"] + parts["scene_loss"]
                             + parts.get("step_heads_loss", 0.0), rtol=1e-5)
  per_scene = np.abs(np.asarray(grads["head"]["kernel"])).reshape(-1, 3, 7).sum(axis=(0, 2))
  assert per_scene[1] > 0 and per_scene[0] == 0 and per_scene[2] == 0
  assert np.abs(np.asarray(grads["scene_head"]["kernel"])).sum() > 0


def test_one_scene_has_no_scene_head_and_the_heads_of_before():
  params, _ = model.init_model(jax.random.key(0), _tiny_model(1), (32, 32, 3))
  assert "scene_head" not in params and params["head"]["kernel"].shape[-1] == 7


# ------------------------------------------------------------- a run over three rooms


@pytest.fixture(scope="module")
def multiscene_run(tmp_path_factory):
  """train.py --config=configs/demo_multiscene.py at tiny shapes over the three rooms (few
  frames each, written here): 2 steps, then the same command resumed to 4."""
  root = tmp_path_factory.mktemp("multiscene")
  for name in rooms.NAMES:
    rooms.write_synthetic_room(root / "manual", name, frames_per_sequence=5,
                               image_size=(48, 64), train_sequences=(1,), test_sequences=(2,))
  tiny = {"manual_dir": root / "manual", "data_dir": root / "built", "backbone": "tiny_cnn",
          "backbone_weights": "", "resize_size": "(40,64)", "image_size": 32,
          "hidden_size": 8, "projection_size": 8, "num_recurrent_steps": 2,
          "convlstm_kernel_sizes": "(1,3)", "attention_kernel_sizes": "(1,3)",
          "batch_size": 4, "eval_batch_size": 4, "warmup_steps": 0, "log_every_steps": 1,
          "checkpoint_every_steps": 2, "num_figure_examples": 1,
          "eval_retrieval_baselines": False,
          # Schedules that do not depend on num_train_steps: the resumed leg (4 steps)
          # then runs the first leg's train step from the compilation cache.
          "learning_rate_schedule": "constant", "temperature_decay_steps": 100}
  command = [sys.executable, str(ROOT / "train.py"),
             f"--config={ROOT / 'configs' / 'demo_multiscene.py'}",
             f"--workdir={root / 'workdir'}",
             *(f"--config.{key}={value}" for key, value in tiny.items())]
  logs = []
  for steps in (2, 4):
    result = subprocess.run([*command, f"--config.num_train_steps={steps}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    logs.append(result.stderr)
  return {"root": root, "workdir": root / "workdir", "logs": logs}


def _rows(workdir) -> list[dict]:
  with open(workdir / "eval" / "predictions.csv") as handle:
    return list(csv.DictReader(handle))


def test_a_run_over_three_rooms_writes_per_scene_mean_and_oracle_results(multiscene_run):
  workdir = multiscene_run["workdir"]
  saved = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert "Resuming from" in multiscene_run["logs"][1] and "(step 2)" in multiscene_run["logs"][1]
  assert saved["checkpoint_step"] == 4
  for figure in ("attention.png", "layer_frequency.png", "trajectory.png"):
    assert (workdir / "eval" / figure).stat().st_size > 1000
  assert saved["scenes"] == list(ROOMS) and saved["scene_sampling"] == "equal"
  rows = _rows(workdir)
  assert len(rows) == 3 * 5 and saved["num_examples"] == 15
  names = [scenes.short_name(name) for name in ROOMS]
  assert sorted(saved["per_scene"]) == sorted(names)  # metrics.json sorts its keys
  # Every number recomputed from the per-image rows.
  for name in names:
    mine = [row for row in rows if row["scene"] == name]
    assert all(row["image"].startswith(f"{name}/seq-02/") for row in mine)
    entry = saved["per_scene"][name]
    for column, key in (("translation_error_m", "median_translation_m"),
                        ("rotation_error_deg", "median_rotation_deg")):
      assert entry[key] == pytest.approx(np.median([float(r[column]) for r in mine]), abs=1e-5)
      assert entry["oracle"][key] == pytest.approx(
          np.median([float(r[f"oracle_{column}"]) for r in mine]), abs=1e-5)
    assert entry["scene_accuracy"] == pytest.approx(
        np.mean([r["predicted_scene"] == name for r in mine]))
    assert "within_0.25m_2deg" in entry and "baseline_median_translation_m" in entry
  mean = saved["mean_over_scenes"]
  for key in ("median_translation_m", "median_rotation_deg", "within_0.5m_5deg"):
    assert mean[key] == pytest.approx(np.mean([saved["per_scene"][n][key] for n in names]))
    assert mean[f"oracle_{key}"] == pytest.approx(
        np.mean([saved["per_scene"][n]["oracle"][key] for n in names]))
  assert saved["scene_accuracy"] == pytest.approx(
      np.mean([r["predicted_scene"] == r["scene"] for r in rows]))
  assert saved["oracle"]["median_translation_m"] == pytest.approx(
      np.median([float(r["oracle_translation_error_m"]) for r in rows]), abs=1e-5)
  # Where the classifier chose the true scene, the oracle is the prediction.
  for row in rows:
    if row["scene"] == row["predicted_scene"]:
      assert row["oracle_translation_error_m"] == row["translation_error_m"]


def test_predict_returns_the_scene_and_export_exports_it(multiscene_run, tmp_path):
  workdir = multiscene_run["workdir"]
  frames = sorted((multiscene_run["root"] / "manual" / rooms.NAMES[2] / "seq-02")
                  .glob("*.color.png"))[:2]
  results = prediction.predict(workdir, None, frames)
  names = [scenes.short_name(name) for name in ROOMS]
  assert all(r["scene"] in names and 0 < r["scene_probability"] <= 1 for r in results)
  output = tmp_path / "predictions.csv"
  prediction.write_predictions(output, results)
  with open(output) as handle:
    written = list(csv.DictReader(handle))
  assert [row["scene"] for row in written] == [r["scene"] for r in results]

  exported_file = tmp_path / "multi.jaxexport"
  description = exporting.export_run(workdir, exported_file)
  assert description["scenes"] == names
  assert description["outputs"]["scene_logits"]["shape"] == ["B", 3]
  exported, _ = exporting.load(exported_file)
  predictor = prediction.load_predictor(workdir)
  options = pipeline.ImageOptions(resize_size=predictor.options.resize_size,
                                  image_size=predictor.options.image_size,
                                  channel_mean=(0.0, 0.0, 0.0))
  from lsattn.data import images
  crops = np.stack([pipeline.preprocess(images.load_image(path, predictor.stored_size),
                                        options, offset=None) for path in frames])
  served = exported.call(crops)
  assert [names[k] for k in np.argmax(np.asarray(served["scene_logits"]), axis=-1)] == [
      r["scene"] for r in results]
  np.testing.assert_allclose(np.asarray(served["position"]),
                             [r["position"] for r in results], atol=1e-4)


def test_the_study_report_averages_rooms_then_seeds(tmp_path):
  """benchmarks/multiscene.py's table from records: per seed the mean over rooms of the
  per-room medians, then mean ± sample sd over seeds; an incomplete seed left out."""
  sys.path.insert(0, str(ROOT / "benchmarks"))
  import multiscene as study
  records = []
  for seed, (multi, singles) in enumerate([(0.3, (0.1, 0.2, 0.3)), (0.5, (0.3, 0.4, 0.5))]):
    per_scene = {name: {"median_translation_m": multi} for name in study.ROOMS}
    records.append({"benchmark": "multiscene", "kind": "multi", "seed": seed,
                    "scenes": list(study.ROOMS), "metrics": {
                        "scene_accuracy": 1.0, "per_scene": per_scene, "mean_over_scenes": {
                            "median_translation_m": multi, "median_rotation_deg": 2.0,
                            "oracle_median_translation_m": multi,
                            "oracle_median_rotation_deg": 2.0}}})
    records += [{"benchmark": "multiscene", "kind": "single", "seed": seed, "scenes": [name],
                 "metrics": {"median_translation_m": value, "median_rotation_deg": 1.0}}
                for name, value in zip(study.ROOMS, singles)]
  records.append(dict(records[0], seed=2))  # seed 2 has no per-room runs
  path = tmp_path / "records.jsonl"
  path.write_text("".join(json.dumps(record) + "\n" for record in records))
  table = study.report(path)
  assert "Seeds complete: 2 of 3" in table
  assert "| one model per room (150 steps each) | 0.300 ± 0.141 | 1.000 ± 0.000 | - |" in table
  assert "| one model for three rooms (450 steps) | 0.400 ± 0.141 | 2.000 ± 0.000 |" in table
