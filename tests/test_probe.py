"""The structure probe scores held-out patients only: features that carry the latent score near 1, noise near or
below 0, and a split without patients on both sides is refused."""

import numpy as np
import pytest
import torch

from eee_ray.models.ecg_encoder import ECGEncoder
from probe import ecg_cls, heldout_r2


def test_heldout_r2_separates_signal_from_noise():
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(60), 3)                 # 3 clips per patient
    latent = rng.normal(size=60)[patients]
    signal = np.c_[latent + 0.1 * rng.normal(size=len(patients)), rng.normal(size=(len(patients), 7))]
    noise = rng.normal(size=(len(patients), 8))
    held = set(range(45, 60))
    assert heldout_r2(signal, latent, patients, held) > 0.9
    assert heldout_r2(noise, latent, patients, held) < 0.1
    with pytest.raises(ValueError, match="both sides"):
        heldout_r2(signal, latent, patients, set(range(60)))


def test_ecg_cls_matches_the_encoder_on_padded_batches():
    torch.manual_seed(0)
    enc = ECGEncoder(d_embed=16, n_layers=1, n_heads=2, d_ff=32)
    samples = [{"ecg": np.random.default_rng(i).normal(size=(n, 50)).astype(np.float32), "n_tokens": n,
                "subject_id": i, "study_id": i} for i, n in enumerate([2, 5, 3])]
    x = ecg_cls(enc, samples, batch_size=2)
    with torch.no_grad():
        alone = [enc(torch.from_numpy(s["ecg"])[None])[0][0].numpy() for s in samples]
    assert np.allclose(x, np.stack(alone), atol=1e-5)     # padding does not change a clip's [CLS]
