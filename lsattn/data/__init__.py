"""Dataset builders, synthetic datasets in the official layouts, input pipeline."""
