"""Cross-modal retrieval on held-out patients (docs/contract.md, Analysis and inference): ECG->echo and echo->ECG
Recall@K at the clip level.

Each held-out clip's ECG [CLS] is a query against the [CLS] of every held-out echo clip (and the other way round); a hit
is the query's own clip. Chance Recall@K is K/N for N clips. On a few dozen held-out clips Recall@1 moves in steps of
1/N, so the mean rank of the true match is reported too, with a permutation p-value against chance ((N + 1) / 2):
how often pairing queries with randomly permuted gallery items ranks them at least as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from eee_ray.pairs import echo_input

KS = (1, 5, 10)


@torch.no_grad()
def embed(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]],
          device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """Aligned (unshifted) [CLS] embeddings of both towers plus IDs, in batch order, eval mode. Batches carry echo
    pixels, or a locked echo tower's features (``echo_cls``, ``echo_tok``)."""
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {"ecg": [], "echo": [], "subject_id": [], "study_id": []}
    for b in batches:
        out = model(b["ecg"].to(device), echo_input(b, device), b["pad_mask"].to(device))
        parts["ecg"].append(out["ecg_cls"].float().cpu().numpy())
        parts["echo"].append(out["echo_cls"].float().cpu().numpy())
        parts["subject_id"].append(b["subject_id"].numpy())
        parts["study_id"].append(b["study_id"].numpy())
    model.train(was_training)
    return {k: np.concatenate(v) for k, v in parts.items()}


def ranks(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """0-based rank of item i of ``gallery`` for query i under cosine similarity (ties count against the hit)."""
    s = F.normalize(torch.as_tensor(queries), dim=-1) @ F.normalize(torch.as_tensor(gallery), dim=-1).T
    return (s >= s.diagonal().unsqueeze(1)).sum(1).numpy() - 1


def rank_table(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """(N, N) int: entry (i, j) is the 0-based rank of gallery item j for query i (ties count against j)."""
    s = (F.normalize(torch.as_tensor(queries), dim=-1) @ F.normalize(torch.as_tensor(gallery), dim=-1).T).numpy()
    ordered = np.sort(s, axis=1)
    n = s.shape[1]
    return np.stack([n - 1 - np.searchsorted(row, vals, side="left") for row, vals in zip(ordered, s)])


def mean_rank_pvalue(table: np.ndarray, n_perm: int = 2000, seed: int = 0) -> float:
    """One-sided permutation p-value of the observed mean rank (the diagonal of ``rank_table``): the share of random
    pairings (query i with gallery item pi(i)) whose mean rank is at most the observed one, +1 corrected."""
    n = len(table)
    observed = table.diagonal().mean()
    rng = np.random.default_rng(seed)
    null = np.array([table[np.arange(n), rng.permutation(n)].mean() for _ in range(n_perm)])
    return float((1 + (null <= observed).sum()) / (1 + n_perm))


def retrieval_metrics(ecg: np.ndarray, echo: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Recall@K in both directions and chance level (keys like ``ecg2echo_r1``, ``chance_r1``), the mean 1-based rank
    of the true match (``ecg2echo_mean_rank``, ``chance_mean_rank``) with its permutation p-value
    (``ecg2echo_p``), and ``heldout_clips``."""
    n = len(ecg)
    out: dict[str, float] = {"heldout_clips": float(n), "chance_mean_rank": (n + 1) / 2}
    for name, queries, gallery in (("ecg2echo", ecg, echo), ("echo2ecg", echo, ecg)):
        table = rank_table(queries, gallery)
        r = table.diagonal()
        for k in ks:
            out[f"{name}_r{k}"] = float((r < k).mean())
        out[f"{name}_mean_rank"] = float(r.mean() + 1)
        out[f"{name}_p"] = mean_rank_pvalue(table)
    for k in ks:
        out[f"chance_r{k}"] = min(k, n) / n
    return out


def summary(m: dict[str, float]) -> str:
    """One line for logs and the CLI: Recall@1 and mean rank both ways, against chance."""
    return (f"R@1 ECG->echo {m['ecg2echo_r1']:.3f}, echo->ECG {m['echo2ecg_r1']:.3f} (chance {m['chance_r1']:.3f}); "
            f"mean rank {m['ecg2echo_mean_rank']:.1f} / {m['echo2ecg_mean_rank']:.1f} of {int(m['heldout_clips'])} "
            f"(chance {m['chance_mean_rank']:.1f}, p = {m['ecg2echo_p']:.3g} / {m['echo2ecg_p']:.3g})")


def recall_curve(ecg: np.ndarray, echo: np.ndarray) -> dict[str, np.ndarray]:
    """Recall@K for every K = 1..N in both directions (for the figure)."""
    n = len(ecg)
    k = np.arange(1, n + 1)
    return {"k": k, "ecg2echo": (ranks(ecg, echo)[None, :] < k[:, None]).mean(1),
            "echo2ecg": (ranks(echo, ecg)[None, :] < k[:, None]).mean(1), "chance": k / n}


def plot_retrieval(curve: dict[str, np.ndarray], history: list[dict[str, float]], path: str | Path) -> Path:
    """Two panels: Recall@K vs K at the end, and Recall@1 per epoch; both against chance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eee_ray.io import atomic_write

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(curve["k"], curve["ecg2echo"], label="ECG -> echo")
    a.plot(curve["k"], curve["echo2ecg"], label="echo -> ECG")
    a.plot(curve["k"], curve["chance"], "k--", label="chance")
    a.set(xlabel="K", ylabel="Recall@K", title=f"held-out clips (N = {len(curve['k'])})")
    epochs = [h["epoch"] for h in history]
    b.plot(epochs, [h["ecg2echo_r1"] for h in history], "o-", label="ECG -> echo")
    b.plot(epochs, [h["echo2ecg_r1"] for h in history], "o-", label="echo -> ECG")
    b.plot(epochs, [h["chance_r1"] for h in history], "k--", label="chance")
    b.set(xlabel="epoch", ylabel="Recall@1", title="held-out Recall@1 per epoch")
    for ax in (a, b):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = atomic_write(path, lambda p: fig.savefig(p, dpi=100, format="png"))
    plt.close(fig)
    return out
