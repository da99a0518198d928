"""16-bit images: scaled to 8 bits (value * 255 / 65535, rounded), never clipped.

PIL's convert('RGB') clips 16-bit greyscale at 255, so a 16-bit greyscale
photo would load near-white. Checked through the loader for each 16-bit
greyscale mode PIL gives, 16-bit RGB and greyscale+alpha PNGs (PIL decodes
those itself), a built own scene (frames and recorded channel mean) and
prediction's preprocessing of a photo.
"""

from __future__ import annotations

import pathlib
import struct
import types
import zlib

import numpy as np
from PIL import Image
import pytest

from lsattn import prediction
from lsattn.data import datasets, images, pipeline

# A ramp over the whole 16-bit range, and the same values scaled by hand.
RAMP = np.linspace(0, 65535, 6 * 8).round().astype(np.uint16).reshape(6, 8)


def _scaled(values: np.ndarray) -> np.ndarray:
  """value * 255 / 65535, rounded, computed in exact fractions."""
  return np.array([[round(int(v) * 255 / 65535) for v in row] for row in values], np.uint8)


def _png(path: pathlib.Path, pixels: np.ndarray, colour_type: int) -> pathlib.Path:
  """A 16-bit PNG written byte by byte (colour type 0 grey, 2 RGB, 4 grey+alpha)."""
  height, width = pixels.shape[:2]
  rows = pixels.astype(">u2").reshape(height, -1).tobytes()
  stride = len(rows) // height
  raw = b"".join(b"\x00" + rows[i * stride:(i + 1) * stride] for i in range(height))

  def chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

  header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
  path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                   + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
  return path


def _grey_16(path: pathlib.Path, mode: str) -> pathlib.Path:
  """RAMP saved by PIL from an image of `mode` (a PNG, or a TIFF for the big-endian mode)."""
  if mode == "I;16":
    image = Image.fromarray(RAMP)
  elif mode == "I;16B":
    image = Image.frombytes("I;16B", RAMP.shape[::-1], RAMP.astype(">u2").tobytes())
  else:
    image = Image.fromarray(RAMP.astype(np.int32))
  assert image.mode == mode
  image.save(path)
  return path


@pytest.mark.parametrize("mode, suffix", [("I;16", ".png"), ("I;16B", ".tif"), ("I", ".tif")])
def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path, mode, suffix):
  path = _grey_16(tmp_path / f"grey{suffix}", mode)
  with Image.open(path) as opened:
    assert opened.mode in ("I;16", "I;16B", "I;16L", "I")  # what the loader must handle
  image = images.load_image(path, RAMP.shape)
  assert image.dtype == np.uint8 and image.shape == (*RAMP.shape, 3)
  for channel in range(3):
    np.testing.assert_array_equal(image[..., channel], _scaled(RAMP))
  assert image.mean() < 200  # PIL's own convert would give 250.


def test_16_bit_grey_png_written_independently(tmp_path):
  image = images.load_image(_png(tmp_path / "grey.png", RAMP, colour_type=0), RAMP.shape)
  np.testing.assert_array_equal(image, np.repeat(_scaled(RAMP)[..., None], 3, axis=-1))


def test_mode_i_out_of_range_values_are_clipped_to_16_bits(tmp_path):
  values = np.array([[-5, 0, 32768, 65535, 70000]], np.int32)
  path = tmp_path / "wide.tif"
  Image.fromarray(values).save(path)
  image = images.load_image(path, values.shape)
  np.testing.assert_array_equal(image[0, :, 0], [0, 0, 128, 255, 255])


def test_16_bit_rgb_and_grey_alpha_pngs_stay_as_pil_reads_them(tmp_path):
  # PIL keeps the high byte of these; within one level of the exact scaling.
  rgb = np.stack([RAMP, RAMP[::-1], RAMP // 2], axis=-1)
  image = images.load_image(_png(tmp_path / "rgb.png", rgb, colour_type=2), RAMP.shape)
  for channel in range(3):
    difference = image[..., channel].astype(int) - _scaled(rgb[..., channel])
    assert np.abs(difference).max() <= 1
  grey_alpha = np.stack([RAMP, np.full_like(RAMP, 65535)], axis=-1)
  image = images.load_image(_png(tmp_path / "la.png", grey_alpha, colour_type=4), RAMP.shape)
  assert np.abs(image[..., 0].astype(int) - _scaled(RAMP)).max() <= 1
  np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_own_scene_of_16_bit_frames_stores_scaled_frames_and_mean(tmp_path):
  scene = tmp_path / "scene"
  scene.mkdir()
  # Uniform frames: 16-bit grey level -> its 8-bit level in the built frames.
  levels = {"a.png": 20000, "b.png": 40000, "c.png": 9000, "d.png": 52000}
  split_of = {"a.png": "train", "b.png": "train", "c.png": "train", "d.png": "test"}
  rows = ["image,x,y,z,qw,qx,qy,qz,split"]
  for i, (name, level) in enumerate(levels.items()):
    Image.fromarray(np.full((12, 16), level, np.uint16)).save(scene / name)
    rows.append(f"{name},{i},0,0,1,0,0,0,{split_of[name]}")
  (scene / "poses.csv").write_text("\n".join(rows) + "\n")
  builder = datasets.prepare("own_scene/deep", tmp_path / "data", scene)

  expected = {name: round(level * 255 / 65535) for name, level in levels.items()}
  assert expected == {"a.png": 78, "b.png": 156, "c.png": 35, "d.png": 202}
  for split in ("train", "test"):
    data = pipeline.Split(builder, split)
    for position, name in enumerate(data.labels["image_name"]):
      frame = data.image(position)
      np.testing.assert_allclose(frame.reshape(-1, 3).mean(axis=0), [expected[name]] * 3,
                                 atol=1.0)
  train_mean = np.mean([expected[n] for n in levels if split_of[n] == "train"])
  np.testing.assert_allclose(builder.info.metadata["channel_mean"], [train_mean] * 3, atol=1.0)


def test_prediction_prepares_a_16_bit_photo_as_training_does(tmp_path):
  path = _grey_16(tmp_path / "photo.png", "I;16")
  options = pipeline.ImageOptions(resize_size=RAMP.shape, image_size=6,
                                  channel_mean=(10.0, 20.0, 30.0))
  predictor = types.SimpleNamespace(stored_size=RAMP.shape, options=options)
  prepared = prediction._load(path, predictor)
  assert isinstance(prepared, np.ndarray), prepared
  crop = _scaled(RAMP)[:, 1:7].astype(np.float32)
  np.testing.assert_array_equal(prepared, crop[..., None] - np.float32([10, 20, 30]))
