"""The model's pure pieces: primitives, pooling, the Gumbel choice, Conv-LSTM, attention,
the recurrent core, the baselines' heads and the losses.

They know no backbone, dataset or training: each takes arrays and its own
small config, and returns arrays. `compute_options` says how (never what)
they compute: the kernels by backend and what remat recomputes.
"""
