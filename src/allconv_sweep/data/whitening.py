"""Global contrast normalization and ZCA whitening as in pylearn2 (the Maxout paper's code), on flattened
images ``(N, D)``: fitted in float64, applied in float32, the fitted transform cached on disk."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from allconv_sweep.atomic import atomic_write

log = logging.getLogger(__name__)


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

    @classmethod
    def load_fitting(cls, path: Path, dim: int, key: str) -> "ZCA":
        """The transform cached in ``path`` if it fits ``dim``-pixel images and was fitted for ``key``, else
        ValueError saying what does not fit (a file of another set, version or tool is never applied)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"holds a {type(state).__name__}, not a dict")
        if set(state) - {"key"} != {"mean", "matrix"}:
            raise ValueError(f"keys {sorted(map(str, state))}, expected mean, matrix")
        if state.get("key", key) != key:  # written before keys were stored: shape and dtype decide
            raise ValueError(f"fitted for key {state['key']}, expected {key}")
        for name, shape in (("matrix", (dim, dim)), ("mean", (dim,))):
            t = state[name]
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape or t.dtype != torch.float32:
                what = (f"{tuple(t.shape)} {str(t.dtype).replace('torch.', '')}" if isinstance(t, torch.Tensor)
                        else type(t).__name__)
                raise ValueError(f"{name} is {what}, expected {shape} float32")
        return cls(state["mean"], state["matrix"])


def fit_zca_cached(x_train: torch.Tensor, filter_bias: float, cache_dir: str | Path | None,
                   key_parts: dict) -> tuple[ZCA, bool]:
    """Fit ZCA on the (GCN'd) training split, or load it from the cache. Returns (zca, cache_hit)."""
    if cache_dir is None:
        return ZCA.fit(x_train, filter_bias), False
    # The whole training array is hashed: any changed image means another whitening. sha256 of the 45k x
    # 3072 float32 GCN'd images (553 MB) takes ~1.5 s, next to the 3072^2 eigendecomposition it saves.
    fingerprint = hashlib.sha256(x_train.contiguous().numpy()).hexdigest()[:16]
    parts = dict(filter_bias=filter_bias, n=len(x_train), data=fingerprint, **key_parts)
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"zca_{key_parts.get('dataset', 'data')}_{key}.pt"
    misfit = None
    if path.exists():
        try:
            return ZCA.load_fitting(path, x_train.shape[1], key), True
        except Exception as e:  # noqa: BLE001 - a cache that does not fit is refitted, never trusted
            misfit = " ".join(str(e).split())[:160] or type(e).__name__
    zca = ZCA.fit(x_train, filter_bias)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:  # whole or not at all: a concurrent job never reads half a file
            torch.save({"mean": zca.mean, "matrix": zca.matrix, "key": key}, f)  # key: checked when loaded
        saved = "refitted and replaced"
    except OSError as e:
        saved = f"refitted; cannot replace it ({e.strerror})"  # an unwritable cache only costs time
    if misfit is not None:
        log.warning("ZCA cache %s does not fit (%s): %s", path, misfit, saved)
    return zca, False
