"""Accuracy for the search: the elastic supernet with BN recalibration, or a predictor fitted on it.

The predictor is ridge regression on a one-hot encoding of the architecture (per block slot:
absent / kernel / expand / linear; plus the resolution) - this project's choice, cheap to fit and
to query. Once-for-All uses a small MLP; the encoding is the same idea.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def encode(space, arch) -> np.ndarray:
    """A fixed-length feature vector for ``arch``: one-hot choices per block slot + resolution."""
    features: list[float] = []
    for stage, st in zip(arch.stages, space.stages, strict=True):
        for slot in range(max(st.depths)):
            block = stage[slot] if slot < len(stage) else None
            features.append(1.0 if block is None else 0.0)
            features += [1.0 if block is not None and block.kernel == k else 0.0 for k in st.kernels]
            features += [1.0 if block is not None and block.expand == e else 0.0 for e in st.expands]
            features.append(1.0 if block is not None and block.linear else 0.0)
    lo, hi = min(space.resolutions()), max(space.resolutions())
    r = (arch.resolution - lo) / max(hi - lo, 1)
    features += [r, r * r]
    return np.asarray(features, dtype=np.float64)


@dataclass
class RidgePredictor:
    """Ridge regression from :func:`encode` features to top-1 accuracy."""

    weights: np.ndarray
    bias: float
    l2: float

    @classmethod
    def fit(cls, space, archs: list, accuracies: list[float], l2: float = 1e-2) -> RidgePredictor:
        x = np.stack([encode(space, a) for a in archs])
        y = np.asarray(accuracies, dtype=np.float64)
        mean_x, mean_y = x.mean(axis=0), y.mean()
        xc, yc = x - mean_x, y - mean_y
        gram = xc.T @ xc + l2 * len(y) * np.eye(x.shape[1])
        w = np.linalg.solve(gram, xc.T @ yc)
        return cls(w, float(mean_y - mean_x @ w), l2)

    def predict(self, space, arch) -> float:
        return float(encode(space, arch) @ self.weights + self.bias)


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b of two rankings (0 when either is constant): how often the predictor
    orders a pair of architectures as the supernet does."""
    from scipy.stats import kendalltau

    if len(set(a)) < 2 or len(set(b)) < 2:
        return 0.0
    return float(kendalltau(a, b).statistic)


def rank_correlation(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (no ties correction needed for a diagnostic)."""
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])
