"""The negative control of pretraining (``--shuffle-pairs``): every clip's ECG is replaced by the ECG of a clip of
another patient, so that the echo a clip's ECG is paired with says nothing about the heart that made that ECG.

Patients are deranged (a random cyclic order: nobody keeps their own ECGs) and a patient's k-th clip takes the
k-th clip's ECG (and its length) of the assigned patient, cycling when that patient has fewer clips. The echo side,
the subject and study ids (the held-out split, the study-level positives) stay, so the run differs from a normal
one only in the pairing. What pretraining learns from such pairs is the control's baseline for any downstream gain.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def _key(ecg: Any) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(ecg).tobytes(), digest_size=16).digest()


def donor_table(subjects: list[int], ecgs: list[np.ndarray], n_tokens: list[int], seed: int) -> dict[bytes, tuple]:
    """ECG key of each clip -> (the donor clip's ECG, its n_tokens), donors drawn from another patient."""
    keys = [_key(e) for e in ecgs]
    by_subject: dict[int, list[int]] = {}
    for i, s in enumerate(subjects):
        by_subject.setdefault(int(s), []).append(i)
    for rows in by_subject.values():
        rows.sort(key=lambda i: keys[i])  # an order that does not depend on how the rows were read
    order = sorted(by_subject)
    if len(order) < 2:
        raise ValueError("shuffled pairs need clips of at least two patients")
    order = [order[i] for i in np.random.default_rng(seed).permutation(len(order))]
    out = {}
    for j, subject in enumerate(order):
        donors = by_subject[order[(j + 1) % len(order)]]  # the next patient in a random cycle: never oneself
        for k, i in enumerate(by_subject[subject]):
            d = donors[k % len(donors)]
            out[keys[i]] = (np.asarray(ecgs[d]), int(n_tokens[d]))
    return out


def _swap(batch: dict[str, np.ndarray], donors: dict[bytes, tuple]) -> dict[str, np.ndarray]:
    ecg = np.empty(len(batch["ecg"]), dtype=object)
    n = np.asarray(batch["n_tokens"]).copy()
    for i, e in enumerate(batch["ecg"]):
        ecg[i], n[i] = donors[_key(e)]
    out = dict(batch)
    try:
        out["ecg"] = np.stack(list(ecg))
    except ValueError:  # clips of different lengths
        out["ecg"] = ecg
    out["n_tokens"] = n
    return out


def shuffle_pairs(ds, seed: int):
    """``ds`` (pairs: ecg, n_tokens, subject_id, ...) with every ECG taken from a clip of another patient."""
    table = ds.select_columns(["subject_id", "ecg", "n_tokens"]).to_pandas()
    donors = donor_table(table["subject_id"].tolist(), list(table["ecg"]), table["n_tokens"].tolist(), seed)
    return ds.map_batches(_swap, fn_kwargs={"donors": donors}, batch_format="numpy")
