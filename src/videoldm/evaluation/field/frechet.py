"""The Fréchet distance between two sets of network features, each summarised by a Gaussian.

FVD, FID (and KID's cousins) are all this one number on different features: with means ``mu`` and
covariances ``sigma`` of the two sets,

    d² = |mu1 - mu2|² + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^½)

Computed in float64. ``tr((sigma1 sigma2)^½)`` is the sum of the square roots of the eigenvalues of
``sigma1 sigma2``, which are those of the symmetric ``A sigma2 A`` with ``A = sigma1^½``: two symmetric
eigendecompositions (``eigh``) instead of ``scipy.linalg.sqrtm`` of a non-symmetric product, which
returns complex parts and fails on the singular covariances of fewer samples than feature dimensions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["FeatureStats", "frechet_distance"]


@dataclass
class FeatureStats:
    """Mean, covariance and sample count of a set of feature vectors (the reference set's are cacheable)."""

    mu: np.ndarray      # (D,) float64
    sigma: np.ndarray   # (D, D) float64
    count: int
    feature: str = ""   # what the features are (e.g. "i3d-400 16f 224"): stats of different features never mix
    _root: np.ndarray | None = field(default=None, repr=False, compare=False)

    def root(self) -> np.ndarray:
        """sigma^½, computed once: a reference set's statistics are compared with many sets."""
        if self._root is None:
            self._root = _sqrt_psd((self.sigma + self.sigma.T) / 2)
        return self._root

    @classmethod
    def of(cls, features, feature: str = "") -> "FeatureStats":
        """Statistics of ``features`` (N, D), N >= 2 (unbiased covariance, like pytorch-fid and StyleGAN-V)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"features must be (N, D) with N >= 2 samples, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("features contain NaN or inf (is the network's input in the range it expects?)")
        return cls(x.mean(0), np.cov(x, rowvar=False), len(x), feature)

    def save(self, path: str | Path) -> Path:
        """Writes ``path`` (.npz): mu, sigma, count, feature."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, mu=self.mu, sigma=self.sigma, count=self.count, feature=self.feature)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FeatureStats":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no feature statistics at {path}")
        with np.load(path) as f:
            missing = {"mu", "sigma"} - set(f.files)
            if missing:
                raise ValueError(f"{path} is not a statistics file: it lacks {sorted(missing)}")
            count = int(f["count"]) if "count" in f.files else 0
            feature = str(f["feature"]) if "feature" in f.files else ""
            return cls(f["mu"].astype(np.float64), f["sigma"].astype(np.float64), count, feature)


def _sqrt_psd(sigma: np.ndarray) -> np.ndarray:
    """The symmetric square root of a covariance; eigenvalues below 0 are rounding and count as 0."""
    values, vectors = np.linalg.eigh(sigma)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """The squared Fréchet distance of the Gaussians ``a`` and ``b`` (what papers report as FID/FVD).

    Symmetric; pass the reference set as ``a``: its square root is computed once and kept."""
    if a.mu.shape != b.mu.shape or a.sigma.shape != b.sigma.shape:
        raise ValueError(f"statistics of different feature sizes: {a.mu.shape} and {b.mu.shape}")
    if a.feature and b.feature and a.feature != b.feature:
        raise ValueError(f"statistics of different features: '{a.feature}' and '{b.feature}'")
    s1, s2 = (np.asarray(s, np.float64) for s in (a.sigma, b.sigma))
    root = a.root()
    product = root @ s2 @ root
    eig = np.linalg.eigvalsh((product + product.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = a.mu.astype(np.float64) - b.mu.astype(np.float64)
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt, 0.0))
