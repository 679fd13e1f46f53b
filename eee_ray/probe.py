"""Structure probe (issue 4 item 7 b): does the frozen ECG [CLS] predict a patient's echo structure latents?

A ridge regression on patient means of the [CLS] (the pretraining never saw the latents) is fitted on the training
patients and scored (R^2) on the held-out patients of the pretraining split, so neither the probe nor the encoder
has seen the patients it is scored on. R^2 <= 0 means no usable information.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from eee_ray.pairs import collate


@torch.no_grad()
def ecg_cls(encoder: torch.nn.Module, samples: list[dict], batch_size: int = 256) -> np.ndarray:
    """[CLS] of every sample (pairs rows), eval mode."""
    encoder.eval()
    out = []
    for i in range(0, len(samples), batch_size):
        part = samples[i: i + batch_size]
        b = collate({k: [s[k] for s in part] for k in ("ecg", "n_tokens", "subject_id", "study_id")})
        out.append(encoder(b["ecg"], b["pad_mask"])[0].numpy())
    return np.concatenate(out)


def heldout_r2(x: np.ndarray, y: np.ndarray, groups: np.ndarray, heldout: set[int]) -> float:
    """Ridge (alpha by leave-one-out CV on the training patients) on patient-mean features; R^2 on held-out ones."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score

    ids = np.unique(groups)
    xp = np.stack([x[groups == i].mean(0) for i in ids])
    yp = np.array([y[groups == i][0] for i in ids])
    test = np.array([int(i) in heldout for i in ids])
    if test.all() or not test.any():
        raise ValueError("the probe needs patients on both sides of the split")
    probe = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(xp[~test], yp[~test])
    return float(r2_score(yp[test], probe.predict(xp[test])))


def pretrained_and_init(encoder_path: str | Path, samples: list[dict], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[CLS] of every sample from a pretrained ``ecg_encoder.pt`` and from the same encoder at the random init its
    pretraining started from (the seeded model builds its ECG tower first)."""
    from eee_ray.models.ecg_encoder import ECGEncoder, load_pretrained

    torch.manual_seed(seed)
    init = ECGEncoder(**torch.load(encoder_path, weights_only=True)["config"])
    return ecg_cls(load_pretrained(encoder_path), samples), ecg_cls(init, samples)
