"""Two classification sets in the MIT-67 layout that differ only in the scale of
the cue that separates their classes.

Every image is a two-colour *layout* (a figure on a background) modulated by
a fine *texture*; both components are always present and drawn from the same
distribution in both sets. Only which component the label is tied to differs:

* ``texture`` set (:data:`TEXTURES`): class k has texture k, the layout is
  random. The classes differ only at a FINE scale: stripes, checks or
  speckle with a period of 3.5-5 px at 128 px (about 3% of the side; at the
  stored 256 px, 7-10 px), which early CNN layers resolve and which average
  out within any window of a few periods.
* ``layout`` set (:data:`LAYOUTS`): class k has layout k, the texture is
  random. The classes differ only at a COARSE scale: where the large figure
  lies (a band 30-40% of the height at the top or at the bottom, a disk of
  radius 28-36% of the side near the centre, or bars 18-25% of the width at
  both side edges), which takes a receptive field of a large part of the
  image to see (late layers).

Nothing else carries the label: the figure and background colours are random
hues (independent of the class), one dark and one bright with the bright one
chosen at random (so the figure is as often darker as brighter than the
background); every texture is scaled to the same RMS, so the amount of fine
contrast does not tell the texture classes apart, only its structure does.

Classification training flips images left-right at random and takes random
crops (~85-90% of the side) of the resized image, so every class must
survive both: all layouts are left-right symmetric (the disk's centre is
jittered symmetrically about the middle), the bands and bars are thick
enough that an 85% crop keeps a band at least 15% of the side thick and one
bar at least 10% wide, and a flip leaves each texture of its kind (stripes
keep their orientation). Layouts are not up-down symmetric, which is what tells
``top_band`` from ``bottom_band``.

Output is a deterministic function of the arguments: the same seed gives
byte-identical files.
"""

from __future__ import annotations

import colorsys
import pathlib
from typing import Sequence

import numpy as np
from PIL import Image

from lsattn.errors import LsattnError

TEXTURES = ("horizontal_stripes", "vertical_stripes", "checks", "speckle")
LAYOUTS = ("top_band", "bottom_band", "centre_disk", "side_bars")
CUES = ("texture", "layout")

REFERENCE_SIZE = 128  # Texture periods and edge widths are given at this side.
TEXTURE_PERIOD_PX = (3.5, 5.0)  # at REFERENCE_SIZE
# Periods never go below this many pixels (small test images would alias).
MIN_PERIOD_PX = 2.5
SPECKLE_BLOCK_PX = 2.0  # at REFERENCE_SIZE
TEXTURE_AMPLITUDE = (0.2, 0.35)
TEXTURE_RMS = float(np.sqrt(0.5))  # the RMS of a sine: all textures get this
BAND_THICKNESS = (0.30, 0.40)  # fraction of the height
DISK_RADIUS = (0.28, 0.36)  # fraction of the shorter side
DISK_CENTRE_JITTER = 0.05  # fraction of the side, either way
BAR_WIDTH = (0.18, 0.25)  # fraction of the width, each side
EDGE_PX = 0.75  # logistic edge softness at REFERENCE_SIZE
DARK_VALUE = (0.25, 0.45)
BRIGHT_VALUE = (0.6, 0.85)
SATURATION = (0.2, 0.6)
NOISE_SD = 2.0 / 255.0
JPEG_QUALITY = 90


def class_names(cue: str) -> tuple[str, ...]:
  """The class names of the set whose label is tied to `cue`.

  Raises:
    LsattnError: `cue` is not one of :data:`CUES`.
  """
  if cue == "texture":
    return TEXTURES
  elif cue == "layout":
    return LAYOUTS
  raise LsattnError(f"cue must be one of {CUES}; got {cue!r}")


def _check_index(name: str, value: int, choices: Sequence[str]) -> int:
  if not 0 <= int(value) < len(choices):
    raise LsattnError(f"{name} must be an index in [0, {len(choices)}) into {tuple(choices)}; "
                      f"got {value!r}")
  return int(value)


def _check_size(image_size: Sequence[int]) -> tuple[int, int]:
  if len(image_size) != 2 or min(image_size) < 32:
    raise LsattnError(f"image_size must be (height, width), each >= 32; got {image_size!r}")
  return int(image_size[0]), int(image_size[1])


def _uniform(rng: np.random.Generator | None, bounds: tuple[float, float]) -> float:
  """A draw from U(bounds), or the midpoint without an rng."""
  if rng is None:
    return (bounds[0] + bounds[1]) / 2
  return float(rng.uniform(*bounds))


def layout_mask(layout: int, rng: np.random.Generator | None,
                image_size: tuple[int, int] = (REFERENCE_SIZE, REFERENCE_SIZE)) -> np.ndarray:
  """The figure's mask of layout index `layout`: float [H, W] in [0, 1].

  Shape parameters are drawn from `rng` (thickness, radius, centre); with
  `rng` None they take their midpoints and the disk is centred. Edges are
  logistic ramps of about 1.5 px (at 128 px). Every mask is left-right
  symmetric except for the disk's centre jitter, whose distribution is.

  Args:
    layout: index into :data:`LAYOUTS`.
    rng: a numpy Generator, or None for the nominal shape.
    image_size: (H, W).
  """
  layout = _check_index("layout", layout, LAYOUTS)
  height, width = _check_size(image_size)
  # Pixel centres, so that column j and W-1-j are mirror images.
  rows = np.arange(height, dtype=np.float64)[:, None] + 0.5
  columns = np.arange(width, dtype=np.float64)[None, :] + 0.5
  name = LAYOUTS[layout]
  if name == "top_band":
    inside = _uniform(rng, BAND_THICKNESS) * height - rows + 0 * columns
  elif name == "bottom_band":
    inside = rows - (1 - _uniform(rng, BAND_THICKNESS)) * height + 0 * columns
  elif name == "centre_disk":
    radius = _uniform(rng, DISK_RADIUS) * min(height, width)
    jitter = (-DISK_CENTRE_JITTER, DISK_CENTRE_JITTER)
    centre_y = (0.5 + _uniform(rng, jitter)) * height
    centre_x = (0.5 + _uniform(rng, jitter)) * width
    inside = radius - np.sqrt((rows - centre_y)**2 + (columns - centre_x)**2)
  elif name == "side_bars":
    # One width for both bars keeps each image symmetric.
    bar = _uniform(rng, BAR_WIDTH) * width
    inside = np.maximum(bar - columns, columns - (width - bar)) + 0 * rows
  else:
    raise ValueError(f"Unsupported layout {name!r}")
  # `inside` is the signed distance (px) to the figure's edge, > 0 inside.
  softness = max(EDGE_PX * min(height, width) / REFERENCE_SIZE, 0.5)
  return 1.0 / (1.0 + np.exp(-np.clip(inside / softness, -30, 30)))


def texture_pattern(texture: int, rng: np.random.Generator,
                    image_size: tuple[int, int] = (REFERENCE_SIZE, REFERENCE_SIZE)) -> np.ndarray:
  """The fine texture of index `texture`: float [H, W] in [-1, 1], RMS ~0.71.

  Period (stripes, checks) U(3.5, 5) px at 128 px, scaled with the image
  (never below 2.5 px), random phases; speckle is random +-1 blocks of ~2 px
  at 128 px with a random offset. Each pattern is rescaled to the RMS of a
  sine, so the textures differ in structure, not in contrast.

  Args:
    texture: index into :data:`TEXTURES`.
    rng: a numpy Generator.
    image_size: (H, W).
  """
  texture = _check_index("texture", texture, TEXTURES)
  height, width = _check_size(image_size)
  scale = min(height, width) / REFERENCE_SIZE
  period = max(rng.uniform(*TEXTURE_PERIOD_PX) * scale, MIN_PERIOD_PX)
  phases = rng.uniform(0, 2 * np.pi, 2)
  rows = np.arange(height, dtype=np.float64)[:, None]
  columns = np.arange(width, dtype=np.float64)[None, :]
  across_rows = np.sin(2 * np.pi * rows / period + phases[0])  # [H, 1]
  across_columns = np.sin(2 * np.pi * columns / period + phases[1])  # [1, W]
  name = TEXTURES[texture]
  if name == "horizontal_stripes":
    pattern = np.broadcast_to(across_rows, (height, width))
  elif name == "vertical_stripes":
    pattern = np.broadcast_to(across_columns, (height, width))
  elif name == "checks":
    pattern = np.clip(2 * across_rows * across_columns, -1, 1)
  elif name == "speckle":
    block = max(1, int(round(SPECKLE_BLOCK_PX * scale)))
    signs = rng.choice(np.array([-1.0, 1.0]), (height // block + 2, width // block + 2))
    offset = rng.integers(0, block, 2)
    pattern = np.repeat(np.repeat(signs, block, axis=0), block, axis=1)
    pattern = pattern[offset[0]:offset[0] + height, offset[1]:offset[1] + width]
  else:
    raise ValueError(f"Unsupported texture {name!r}")
  pattern = pattern * (TEXTURE_RMS / max(float(np.sqrt(np.mean(pattern**2))), 1e-6))
  return np.clip(pattern, -1, 1)


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Random (background, figure) RGB [3] in [0, 1]: random hues, one dark, one bright."""
  dark = rng.uniform(*DARK_VALUE)
  bright = rng.uniform(*BRIGHT_VALUE)
  values = (bright, dark) if rng.random() < 0.5 else (dark, bright)
  return tuple(np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(*SATURATION), value))
               for value in values)


def render_image(texture: int, layout: int, rng: np.random.Generator,
                 image_size: tuple[int, int] = (REFERENCE_SIZE, REFERENCE_SIZE)) -> np.ndarray:
  """One image with the given texture and layout: uint8 [H, W, 3].

  ``(background * (1 - L) + figure * L) * (1 + a * T)`` plus Gaussian pixel
  noise (sd 2/255), where L is :func:`layout_mask`, T :func:`texture_pattern`,
  a ~ U(0.2, 0.35) and the colours are random (:func:`_colours`).

  Args:
    texture: index into :data:`TEXTURES`.
    layout: index into :data:`LAYOUTS`.
    rng: a numpy Generator; it draws every random choice of the image.
    image_size: (H, W), each >= 32.
  """
  image_size = _check_size(image_size)
  mask = layout_mask(layout, rng, image_size)[..., None]
  pattern = texture_pattern(texture, rng, image_size)[..., None]
  background, figure = _colours(rng)
  amplitude = rng.uniform(*TEXTURE_AMPLITUDE)
  image = (background * (1 - mask) + figure * mask) * (1 + amplitude * pattern)
  image = image + rng.normal(0.0, NOISE_SD, image.shape)
  return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def _nuisance(rng: np.random.Generator, count: int, choices: int) -> np.ndarray:
  """`count` uniform draws in [0, choices), in shuffled blocks of `choices`.

  Each draw is uniform, and every value occurs equally often (up to the last
  partial block), so small splits carry no accidental class-nuisance link.
  """
  blocks = [rng.permutation(choices) for _ in range(-(-count // choices))]
  return np.concatenate(blocks)[:count]


def write_cue_scale_mit67(
    root: str | pathlib.Path, *, cue: str, seed: int = 0, train_per_class: int = 40,
    test_per_class: int = 20,
    image_size: tuple[int, int] = (REFERENCE_SIZE, REFERENCE_SIZE)) -> pathlib.Path:
  """Writes the set whose classes are told apart by `cue`, in the MIT-67 layout.

  Class k of the 'texture' set has texture k and a random layout; class k of
  the 'layout' set has layout k and a random texture (each nuisance value
  equally often per class and split). Files: ``Images/<class>/<class>_NNNN.jpg``
  (JPEG quality 90, [H, W, 3]) and ``TrainImages.txt`` / ``TestImages.txt``
  listing ``<class>/<name>.jpg``, one per line.

  Args:
    root: the dataset folder (created if needed).
    cue: 'texture' or 'layout'.
    seed: with the cue and class, seeds every image.
    train_per_class, test_per_class: images per class in each split (>= 1).
    image_size: (H, W), each >= 32.

  Returns:
    The dataset folder `root`.

  Raises:
    LsattnError: a bad argument (named with its value).
  """
  names = class_names(cue)
  image_size = _check_size(image_size)
  for name, value in (("train_per_class", train_per_class), ("test_per_class", test_per_class)):
    if value < 1:
      raise LsattnError(f"{name} must be >= 1; got {value!r}")
  root = pathlib.Path(root)
  lists: dict[str, list[str]] = {"TrainImages.txt": [], "TestImages.txt": []}
  for class_index, class_name in enumerate(names):
    rng = np.random.default_rng([seed, CUES.index(cue), class_index])
    class_dir = root / "Images" / class_name
    class_dir.mkdir(parents=True, exist_ok=True)
    # Balanced per split, so the test split is as free of the nuisance as train.
    other = np.concatenate([_nuisance(rng, train_per_class, 4),
                            _nuisance(rng, test_per_class, 4)])
    for index, nuisance in enumerate(other):
      texture, layout = ((class_index, nuisance) if cue == "texture"
                         else (nuisance, class_index))
      file_name = f"{class_name}_{index:04d}.jpg"
      image = render_image(int(texture), int(layout), rng, image_size)
      Image.fromarray(image).save(class_dir / file_name, quality=JPEG_QUALITY)
      split = "TrainImages.txt" if index < train_per_class else "TestImages.txt"
      lists[split].append(f"{class_name}/{file_name}")
  for split, lines in lists.items():
    (root / split).write_text("".join(line + "\n" for line in lines))
  return root
