"""Multi-label metrics of the benchmark (docs/contract.md, Downstream benchmark, paper section 4.2): macro and micro ROC
AUC, macro AUPRC, 95% bootstrap intervals over records, and a per-label table.

A label without both a positive and a negative in the evaluated split has no AUROC: it is reported (``included``
False) and left out of the macro averages. AUROC is computed from tie-corrected ranks, vectorised over labels,
so a thousand bootstrap resamples of an 89-label problem stay cheap; it equals scikit-learn's ``roc_auc_score``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score


def auroc_per_label(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """(N, L) -> (L,) AUROC by the Mann-Whitney statistic; NaN where a label lacks positives or negatives."""
    y = np.asarray(y_true, dtype=bool)
    ranks = rankdata(np.asarray(y_score, dtype=np.float64), axis=0)
    n_pos = y.sum(0)
    n_neg = len(y) - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * y).sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def micro_auroc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """AUROC over every (record, label) pair pooled, as scikit-learn's ``average='micro'``."""
    return float(auroc_per_label(np.ravel(y_true)[:, None], np.ravel(y_score)[:, None])[0])


def auprc_per_label(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    y = np.asarray(y_true, dtype=bool)
    out = np.full(y.shape[1], np.nan)
    for j in range(y.shape[1]):
        if 0 < y[:, j].sum() < len(y):
            out[j] = average_precision_score(y[:, j], y_score[:, j])
    return out


@dataclass
class Evaluation:
    macro_auroc: float
    micro_auroc: float
    macro_auprc: float
    macro_auroc_ci_low: float
    macro_auroc_ci_high: float
    n_labels: int  # labels that entered the macro average
    n_records: int
    per_label: pd.DataFrame  # label, n_pos, auroc, auprc, included

    def scalars(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if k != "per_label"}


def bootstrap_macro_auroc(y_true: np.ndarray, y_score: np.ndarray, n_boot: int = 1000, alpha: float = 0.05,
                          seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the macro AUROC over records resampled with replacement (labels that lose all
    positives in a resample are left out of that resample's average)."""
    if n_boot <= 0 or len(y_true) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, len(y_true), len(y_true))
        aucs = auroc_per_label(y_true[idx], y_score[idx])
        stats[b] = np.nanmean(aucs) if np.isfinite(aucs).any() else np.nan
    stats = stats[np.isfinite(stats)]
    if not len(stats):
        return float("nan"), float("nan")
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def evaluate(y_true: np.ndarray, y_score: np.ndarray, label_names: list[str], n_boot: int = 1000,
             seed: int = 0) -> Evaluation:
    y_true = np.asarray(y_true).astype(np.uint8)
    y_score = np.asarray(y_score, dtype=np.float64)
    auc = auroc_per_label(y_true, y_score)
    ap = auprc_per_label(y_true, y_score)
    included = np.isfinite(auc)
    per_label = pd.DataFrame({"label": label_names, "n_pos": y_true.sum(0).astype(int), "auroc": auc,
                              "auprc": ap, "included": included})
    lo, hi = bootstrap_macro_auroc(y_true[:, included], y_score[:, included], n_boot, seed=seed) \
        if included.any() else (float("nan"), float("nan"))
    nan = float("nan")
    return Evaluation(
        macro_auroc=float(np.mean(auc[included])) if included.any() else nan,
        micro_auroc=micro_auroc(y_true, y_score) if 0 < y_true.sum() < y_true.size else nan,
        macro_auprc=float(np.mean(ap[included])) if included.any() else nan,
        macro_auroc_ci_low=lo, macro_auroc_ci_high=hi, n_labels=int(included.sum()), n_records=int(len(y_true)),
        per_label=per_label)
