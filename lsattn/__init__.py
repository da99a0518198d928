"""lsattn: layer-spatial attention in JAX/Flax.

Joseph, Derpanis, Qureshi, "Joint Spatial and Layer Attention for
Convolutional Networks", BMVC 2019: at each Conv-LSTM step a straight-through
Gumbel-softmax picks which CNN layer to look at, and soft convolutional
attention picks where in it.
"""

from lsattn.errors import LsattnError

__version__ = "0.1.0"
from lsattn.attention import layer_selection, spatial_attention
from lsattn.convlstm import convlstm_step
from lsattn.core import CoreConfig, CoreOutputs, apply_core, init_core
from lsattn.gumbel import gumbel_softmax_st
