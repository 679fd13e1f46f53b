"""Collapse detection for contrastive pretraining: is the embedding spread out, and does retrieval beat chance?

A collapsed tower maps every clip to (nearly) one direction: the mean cosine between the [CLS] embeddings of two
different clips approaches 1 and their effective rank (the exponential of the entropy of the normalised squared
singular values of the unit-length embeddings; 1 for a single direction, D for an isotropic cloud) approaches 1.
The loss cannot tell: the paper's dual-margin loss is zero on a fully collapsed embedding. Held-out retrieval tells
too: collapsed embeddings rank every clip alike, so the true match sits at chance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

TOWERS = ("ecg", "echo")


@dataclass
class CollapseConfig:
    """When a finished run counts as collapsed (judged on its last epoch, on the held-out clips)."""

    max_mean_cos: float = 0.99     # a tower whose held-out clips sit closer than this (mean off-diagonal cosine)
    #                                has collapsed to about one direction (within 8 degrees): retrieval then ranks by
    #                                noise. Learning runs sit at 0.7-0.98: a narrow cone is not a collapse
    min_erank: float = 1.05        # ... or whose unit [CLS] embeddings span fewer effective dimensions than this
    chance_p: float = 0.05         # retrieval "at chance": the mean rank's permutation p is at least this in one
    #                                direction or both


def embedding_spread(x: np.ndarray) -> tuple[float, float]:
    """(mean off-diagonal cosine, effective rank) of the rows of ``x`` (N, D); N >= 2."""
    x = np.asarray(x, dtype=np.float64)
    u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n = len(u)
    gram = u @ u.T
    mean_cos = float((gram.sum() - np.trace(gram)) / (n * (n - 1)))
    s2 = np.linalg.svd(u, compute_uv=False) ** 2
    p = s2 / s2.sum()
    p = p[p > 0]
    return mean_cos, float(np.exp(-(p * np.log(p)).sum()))


def spread_metrics(emb: dict[str, np.ndarray]) -> dict[str, float]:
    """``ecg_mean_cos``, ``ecg_erank``, ``echo_mean_cos``, ``echo_erank`` of the [CLS] embeddings in ``emb``."""
    out = {}
    for tower in TOWERS:
        out[f"{tower}_mean_cos"], out[f"{tower}_erank"] = embedding_spread(emb[tower])
    return out


def verdict(last: dict[str, Any], judge_retrieval: bool, cfg: CollapseConfig | None = None) -> str:
    """Why the run counts as collapsed (one line), or "" when it does not. ``last``: the last epoch's metrics
    (spread and retrieval); ``judge_retrieval``: whether retrieval at chance counts (after the warm-up, and only
    when the [CLS] terms train clip-level retrieval)."""
    cfg = cfg or CollapseConfig()
    reasons = []
    for tower in TOWERS:
        cos, erank = last[f"{tower}_mean_cos"], last[f"{tower}_erank"]
        if cos > cfg.max_mean_cos or erank < cfg.min_erank:
            reasons.append(f"the {tower.upper() if tower == 'ecg' else tower} tower's held-out embeddings collapsed "
                           f"(mean cosine {cos:.3f}, effective rank {erank:.2f})")
    if judge_retrieval and max(last["ecg2echo_p"], last["echo2ecg_p"]) >= cfg.chance_p:
        reasons.append(f"held-out retrieval is at chance (mean rank {last['ecg2echo_mean_rank']:.1f} / "
                       f"{last['echo2ecg_mean_rank']:.1f} of {int(last['heldout_clips'])}, p = "
                       f"{last['ecg2echo_p']:.2g} / {last['echo2ecg_p']:.2g})")
    return "; ".join(reasons)


def spread_summary(history: Sequence[dict[str, Any]]) -> str:
    """The last epoch's spread in a few words, for the per-epoch log line."""
    h = history[-1]
    return (f"spread cos {h['ecg_mean_cos']:.2f} / {h['echo_mean_cos']:.2f}, "
            f"erank {h['ecg_erank']:.1f} / {h['echo_erank']:.1f}")
