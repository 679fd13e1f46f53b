"""Structure probe (tests and benchmarks only): does the frozen ECG [CLS] predict a patient's echo structure latents?

A ridge regression on patient means of the [CLS] (the pretraining never saw the latents) is fitted on the training
patients and scored (R^2) on the held-out patients of the pretraining split, so neither the probe nor the encoder
has seen the patients it is scored on. R^2 <= 0 means no usable information.

``structure_world`` and ``structure_recipe`` are the synthetic data set and the pretraining recipe with which the
ECG [CLS] learns wall thickness (tests/test_structure_probe.py, benchmarks/structure_probe.py, docs/pretraining.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from eee_ray.losses import LossConfig
from eee_ray.pairs import PairsConfig, collate

PROBE_PAIRS = PairsConfig(image_size=64)


def structure_world(seed: int = 0, patients: int = 160, strength: float = 2.0) -> dict[str, Any]:
    """SynthConfig and IngestConfig fields of the probe's world: one study of four 2-3.3 s cines per patient (about
    4 clips each: 40 held-out patients for the probe), the latents' ECG effect at ``strength``; clips stored at the
    probe's 64 px (no 224 px round trip), 16 cines per Parquet part."""
    synth = dict(seed=seed, patients=patients, ecg_patients=patients, studies_min=1, studies_max=1, cines_min=4,
                 cines_max=4, rows=240, cols=320, frames_min=60, frames_max=100, ecg_records_min=1,
                 ecg_records_max=1, defect_fraction=0.0, ecg_latent_strength=strength)
    return {"synth": synth, "ingest": dict(echo_size=PROBE_PAIRS.image_size, batch_files=16)}


def structure_recipe(epochs: int = 40, **overrides: Any) -> dict[str, Any]:
    """PretrainConfig fields of the recipe that learns structure here: the echo tower locked and its features
    standardised, [CLS] positives from another clip of the same study, [CLS] terms only (no token or alignment term,
    so no shifted samples), plain InfoNCE throughout, batch 64."""
    return dict(epochs=epochs, batch_size=64, pairs=PROBE_PAIRS, echo_tower="locked", cls_positive="study",
                p_shift=0.0, loss=LossConfig(w_token=0.0, w_align=0.0, warmup_epochs=epochs), **overrides)


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
    from eee_ray.safe_load import load_weights

    init = ECGEncoder(**load_weights(encoder_path, f"encoder {encoder_path}")["config"])
    return ecg_cls(load_pretrained(encoder_path), samples), ecg_cls(init, samples)
