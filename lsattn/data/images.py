"""Decoding image files for the model and encoding them for storage.

This module's one job is the pixels of one image file: `load_image` decodes
it, turns it upright by its EXIF orientation, converts it to RGB (16-bit
greyscale scaled to 8 bits, not clipped) and resizes it to a stored size
(what the dataset builders store and what prediction feeds a restored run),
and `encode_jpeg` encodes such an array as the JPEG the builders write
(quality `JPEG_QUALITY`).
"""

from __future__ import annotations

import io
import pathlib

import numpy as np
import PIL.Image
import PIL.ImageOps

from lsattn.errors import LsattnError

JPEG_QUALITY = 95
# PIL's modes of 16-bit greyscale pixels (and 'I', 32-bit, read as 16-bit).
_SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def load_image(path: pathlib.Path, size: tuple[int, int]) -> np.ndarray:
  """Decodes an image file to RGB uint8 [H, W, 3] resized to `size` (H, W).

  Raises:
    LsattnError: the file is missing, truncated or not an image (names it).
  """
  try:
    with PIL.Image.open(path) as image:
      image.load()
      # Phones store portrait photos sideways with an EXIF rotation tag.
      rgb = _to_8_bit(PIL.ImageOps.exif_transpose(image)).convert("RGB")
  except FileNotFoundError:
    raise LsattnError(f"{path}: image file not found") from None
  except (OSError, SyntaxError, ValueError) as error:
    raise LsattnError(f"{path}: cannot decode image ({error})") from None
  if rgb.size != (size[1], size[0]):
    rgb = rgb.resize((size[1], size[0]), PIL.Image.BILINEAR)
  return np.asarray(rgb)


def _to_8_bit(image: PIL.Image.Image) -> PIL.Image.Image:
  """A 16-bit greyscale image scaled to 8 bits (value * 255 / 65535, rounded); others as given.

  PIL's convert('RGB') clips these modes at 255 instead of scaling them, so a
  16-bit greyscale photo would turn near-white. Mode 'I' (32-bit integers,
  what some readers give a 16-bit file) is read as 16-bit, clipped to
  0..65535: our choice. 16-bit RGB(A) and greyscale+alpha PNGs need nothing
  here: PIL decodes them to 8-bit modes (their high byte) already.
  """
  if image.mode not in _SIXTEEN_BIT_GREY:
    return image
  values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
  # Integer rounding of value * 255 / 65535 (never exactly half-way).
  return PIL.Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))


def encode_jpeg(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  PIL.Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
  return buffer.getvalue()
