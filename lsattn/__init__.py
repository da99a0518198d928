"""lsattn: layer-spatial attention in JAX/Flax.

Joseph, Derpanis, Qureshi, "Joint Spatial and Layer Attention for
Convolutional Networks", BMVC 2019: at each Conv-LSTM step a straight-through
Gumbel-softmax picks which CNN layer to look at, and soft convolutional
attention picks where in it.

The public API: the pure pieces below, `lsattn.model` (backbone + core +
heads), and the modules `core`, `losses` and `metrics` under their short
names (``from lsattn import model, core``). ARCHITECTURE.md maps the rest.
"""

import importlib as _importlib
import warnings as _warnings

from lsattn.errors import LsattnError
from lsattn.evaluation import metrics
from lsattn.nn import core, losses
from lsattn.nn.attention import layer_selection, spatial_attention
from lsattn.nn.convlstm import convlstm_step
from lsattn.nn.core import CoreConfig, CoreOutputs, apply_core, init_core
from lsattn.nn.gumbel import gumbel_softmax_st

__version__ = "0.2.0"

# Modules renamed in 0.2.0 (CHANGELOG.md), still found under their old names so
# config files written for 0.1 (``from lsattn import defaults``) keep working.
_RENAMED = {"defaults": "lsattn.config_schema"}


def __getattr__(name):
  if name in _RENAMED:
    _warnings.warn(f"lsattn.{name} is now {_RENAMED[name]}; the old name will go in a later "
                   f"release", DeprecationWarning, stacklevel=2)
    return _importlib.import_module(_RENAMED[name])
  raise AttributeError(f"module 'lsattn' has no attribute {name!r}")
