"""Label-efficiency subsets: which training patients a trial may learn from at a given share of the labels.

A subset is drawn by patient (all records of a chosen patient, none of the others), seeded, and stratified by
label: every label keeps about ``fraction`` of its positive patients, and at least one where it has any, so a small
subset still has a positive of each finding to learn from. Validation and test are never subsampled. The draw
depends only on the training patients, their labels, the fraction and the seed, so every model of a benchmark sees
the same patients at the same (fraction, seed) and their scores are paired.
"""

from __future__ import annotations

import numpy as np


def choose_patients(patient_ids: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Training patients kept at ``fraction`` (sorted ids).

    ``patient_ids``: (N,) patient of each training record; ``labels``: (N, L) 0/1 label matrix of those records.
    ``fraction`` 1 keeps everyone. Otherwise round(fraction * patients) patients (at least one) are kept: rarest
    label first, each label's positive patients are drawn until the label holds round(fraction * its positive
    patients) of them (at least one), then the remaining places are filled at random.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], not {fraction}")
    patient_ids = np.asarray(patient_ids).astype(str)
    ids, inverse = np.unique(patient_ids, return_inverse=True)
    if fraction >= 1.0 or len(ids) == 0:
        return ids
    y = np.zeros((len(ids), labels.shape[1]), dtype=bool)
    np.logical_or.at(y, inverse, np.asarray(labels, dtype=bool))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))  # one random priority per patient; every choice below follows it
    n_keep = max(1, int(round(fraction * len(ids))))
    chosen = np.zeros(len(ids), dtype=bool)
    positives = y.sum(0)
    for j in np.argsort(positives, kind="stable"):
        if positives[j] == 0:
            continue
        want = max(1, int(round(fraction * positives[j])))
        have = int((chosen & y[:, j]).sum())
        for i in order[y[order, j]]:
            if have >= want:
                break
            if not chosen[i]:
                chosen[i], have = True, have + 1
    free = order[~chosen[order]][: max(0, n_keep - int(chosen.sum()))]
    chosen[free] = True
    return ids[chosen]


def training_mask(patient_ids: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """(N,) bool over the training records: True for the records of the patients ``choose_patients`` keeps."""
    keep = choose_patients(patient_ids, labels, fraction, seed)
    return np.isin(np.asarray(patient_ids).astype(str), keep)
