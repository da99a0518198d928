"""Decoding image files for the model and encoding them for storage.

This module's one job is the pixels of one image file: `load_image` decodes
it, turns it upright by its EXIF orientation, converts it to RGB and resizes
it to a stored size (what the dataset builders store and what prediction
feeds a restored run), and `encode_jpeg` encodes such an array as the JPEG
the builders write (quality `JPEG_QUALITY`).
"""

from __future__ import annotations

import io
import pathlib

import numpy as np
import PIL.Image
import PIL.ImageOps

from lsattn.errors import LsattnError

JPEG_QUALITY = 95


def load_image(path: pathlib.Path, size: tuple[int, int]) -> np.ndarray:
  """Decodes an image file to RGB uint8 [H, W, 3] resized to `size` (H, W).

  Raises:
    LsattnError: the file is missing, truncated or not an image (names it).
  """
  try:
    with PIL.Image.open(path) as image:
      image.load()
      # Phones store portrait photos sideways with an EXIF rotation tag.
      rgb = PIL.ImageOps.exif_transpose(image).convert("RGB")
  except FileNotFoundError:
    raise LsattnError(f"{path}: image file not found") from None
  except (OSError, SyntaxError, ValueError) as error:
    raise LsattnError(f"{path}: cannot decode image ({error})") from None
  if rgb.size != (size[1], size[0]):
    rgb = rgb.resize((size[1], size[0]), PIL.Image.BILINEAR)
  return np.asarray(rgb)


def encode_jpeg(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  PIL.Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
  return buffer.getvalue()
