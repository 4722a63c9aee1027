"""Attention-head circuits: the discrete-SAE method (O'Neill & Bui 2024, seed 003) and patching baselines.

``codes`` (code statistics, numpy only), ``sae`` (the small SAE), ``examples`` (positives and negatives),
``patching`` (head outputs, exact patching, attribution), ``compute`` (settings, methods, bundles),
``evaluation`` (ground truth and ROC AUC).
"""
