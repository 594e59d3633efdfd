"""Global contrast normalization and ZCA whitening, as in pylearn2 (the Maxout paper's code).

Both work on flattened images ``(N, D)`` in float64 for the fit (the 3072x3072 eigendecomposition) and
float32 for applying. The fitted ZCA transform is cached on disk: the eigendecomposition runs once per
(dataset, split, parameters).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch


def global_contrast_normalize(x: torch.Tensor, scale: float = 55.0, min_divisor: float = 1e-8) -> torch.Tensor:
    """Per image: subtract its mean, then scale to L2 norm ``scale`` (pylearn2, use_std=False, sqrt_bias=0)."""
    x = x.reshape(x.shape[0], -1).to(torch.float32)
    x = x - x.mean(dim=1, keepdim=True)
    norms = x.norm(dim=1, keepdim=True) / scale
    norms = torch.where(norms < min_divisor, torch.ones_like(norms), norms)
    return x / norms


@dataclass
class ZCA:
    mean: torch.Tensor        # (D,)
    matrix: torch.Tensor      # (D, D), symmetric

    @classmethod
    def fit(cls, x: torch.Tensor, filter_bias: float = 0.1) -> "ZCA":
        """pylearn2's ZCA: eig of X^T X / N + filter_bias * I, P = V diag(1/sqrt(eig)) V^T."""
        x = x.reshape(x.shape[0], -1).to(torch.float64)
        mean = x.mean(dim=0)
        xc = x - mean
        cov = xc.T @ xc / x.shape[0]
        eigvals, eigvecs = torch.linalg.eigh(cov + filter_bias * torch.eye(cov.shape[0], dtype=torch.float64))
        matrix = (eigvecs * eigvals.clamp_min(1e-12).rsqrt()) @ eigvecs.T
        return cls(mean.to(torch.float32), matrix.to(torch.float32))

    def __call__(self, x: torch.Tensor, chunk: int = 10000) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(shape[0], -1).to(torch.float32)
        out = torch.empty_like(x)
        for i in range(0, x.shape[0], chunk):  # bounded peak memory on the full 50k set
            out[i:i + chunk] = (x[i:i + chunk] - self.mean) @ self.matrix
        return out.reshape(shape)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        torch.save({"mean": self.mean, "matrix": self.matrix}, tmp)
        os.replace(tmp, path)  # atomic: a concurrent job never reads half a file

    @classmethod
    def load(cls, path: Path) -> "ZCA":
        state = torch.load(path, map_location="cpu", weights_only=True)
        return cls(state["mean"], state["matrix"])


def cache_key(**parts) -> str:
    """Stable short hash of everything that determines a fitted transform."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def fit_zca_cached(x_train: torch.Tensor, filter_bias: float, cache_dir: str | Path | None,
                   key_parts: dict) -> tuple[ZCA, bool]:
    """Fit ZCA on the (GCN'd) training split, or load it from the cache. Returns (zca, cache_hit)."""
    if cache_dir is None:
        return ZCA.fit(x_train, filter_bias), False
    # The whole training array is hashed: any changed image means another whitening. sha256 of the 45k x
    # 3072 float32 GCN'd images (553 MB) takes ~1.5 s, next to the 3072^2 eigendecomposition it saves.
    fingerprint = hashlib.sha256(x_train.contiguous().numpy()).hexdigest()[:16]
    key = cache_key(filter_bias=filter_bias, n=len(x_train), data=fingerprint, **key_parts)
    path = Path(cache_dir) / f"zca_{key_parts.get('dataset', 'data')}_{key}.pt"
    if path.exists():
        try:
            return ZCA.load(path), True
        except Exception:  # a broken cache file is refitted, never trusted
            path.unlink(missing_ok=True)
    zca = ZCA.fit(x_train, filter_bias)
    try:
        zca.save(path)
    except OSError:
        pass  # an unwritable cache only costs time
    return zca, False
