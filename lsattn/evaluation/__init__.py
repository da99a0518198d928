"""Evaluation: the eval step and the loop over a split (`loop`), pose errors and accuracies
(`metrics`), the retrieval baselines (`retrieval`) and the figures (`figures`).
"""
