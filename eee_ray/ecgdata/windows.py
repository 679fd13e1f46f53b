"""Windows over 10 s records (docs/contract.md, Downstream benchmark): random crops for training, sliding windows
(stride half a window) for evaluation, with per-record aggregation (mean by default, max selectable) of scores and
penultimate features."""

from __future__ import annotations

import numpy as np
import torch

AGGREGATES = ("mean", "max")


def random_crops(x: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """One random crop of ``window`` samples per record: (B, C, T) -> (B, C, window)."""
    t = x.shape[-1]
    if window > t:
        raise ValueError(f"window {window} longer than the record ({t} samples)")
    starts = rng.integers(0, t - window + 1, size=len(x))
    idx = starts[:, None] + np.arange(window)[None, :]
    return np.take_along_axis(x, idx[:, None, :].repeat(x.shape[1], axis=1), axis=2)


def window_starts(length: int, window: int) -> np.ndarray:
    """Starts of windows with stride ``window // 2``; the last window always ends at the record's end."""
    if window > length:
        raise ValueError(f"window {window} longer than the record ({length} samples)")
    stride = max(1, window // 2)
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return np.asarray(starts)


def sliding_windows(x: np.ndarray, window: int) -> np.ndarray:
    """(B, C, T) -> (B, W, C, window)."""
    starts = window_starts(x.shape[-1], window)
    return np.stack([x[..., s:s + window] for s in starts], axis=1)


@torch.no_grad()
def predict_records(model: torch.nn.Module, x: np.ndarray, window: int, aggregate: str = "mean",
                    batch_size: int = 64, device=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-record sigmoid scores (aggregated over windows) and embeddings (penultimate features averaged over the
    record's windows): (N, C, T) -> ((N, L), (N, D)), both float32. ``device``: where the model lives."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, not {aggregate!r}")
    model.eval()
    scores, feats = [], []
    for i in range(0, len(x), batch_size):
        w = sliding_windows(x[i:i + batch_size], window)
        b, n_w = w.shape[:2]
        xb = torch.from_numpy(np.ascontiguousarray(w.reshape(b * n_w, *w.shape[2:])))
        xb = xb if device is None else xb.to(device)  # a GPU trial or actor; results come back as CPU numpy
        z = model.forward_features(xb)
        p = torch.sigmoid(model.forward_head(z)).reshape(b, n_w, -1)
        scores.append((p.mean(1) if aggregate == "mean" else p.amax(1)).cpu().numpy())
        feats.append(z.reshape(b, n_w, -1).mean(1).cpu().numpy())
    return np.concatenate(scores).astype(np.float32), np.concatenate(feats).astype(np.float32)
