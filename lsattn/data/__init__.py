"""Dataset builders, synthetic datasets in the official layouts, input pipeline.

Importing this package registers lsattn's builders with tfds, so
``tfds.builder('seven_scenes/chess', data_dir=...)`` finds them.
"""

from lsattn.data import builders as _builders  # noqa: F401  (registers the tfds builders
