"""Pretraining puts echo structure into the frozen ECG embedding.

The real chain (synth -> ingest -> ``run_pretrain`` under Ray Train) on a synthetic world where the ECG carries a
patient's wall thickness weakly (``ecg_latent_strength`` 2), with the ``locked-study`` recipe: a locked echo tower
whose features are standardised, study-level [CLS] positives, [CLS] terms only (docs/pretraining.md, "What it
learns"). A ridge probe on the frozen ECG [CLS] (patient means, fitted on the training patients) predicts the held-out
patients' wall thickness clearly better than the same probe on the encoder's own random init.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import _background
from eee_ray.pretrain import run_pretrain
from eee_ray.recipes import pretrain_config
from probe import PROBE_PAIRS, heldout_r2, pretrained_and_init, structure_world
from eee_ray.synth.labels import LATENTS

EPOCHS = 40
WORLD = structure_world()   # 160 patients, four 2-3.3 s cines each: 40 held-out patients for the probe


@pytest.fixture(scope="module")
def probe_set(ray_session) -> Path:
    from eee_ray.ingest import IngestConfig, run_ingest

    root = _background.world("probe").parent   # rendered in the background (tests/_background.py) into root / "synth"
    run_ingest(IngestConfig(input=str(root / "synth" / "echo"), output=str(root / "ingest"), **WORLD["ingest"]))
    return root


@pytest.mark.slow
@pytest.mark.world("probe", WORLD["synth"])
def test_pretrained_ecg_embedding_predicts_wall_thickness_better_than_its_init(probe_set, tmp_path):
    from eee_ray.echo_features import init_model
    from eee_ray.ingest import read_clips
    from eee_ray.pairs import build_pairs
    from eee_ray.pretrain import model_config

    out = tmp_path / "pretrain"
    cfg = pretrain_config("locked-study", clips=str(probe_set / "ingest"), output=str(out), seed=0, epochs=EPOCHS)
    m = run_pretrain(cfg)
    assert m["epochs"] == EPOCHS and len(m["heldout_patients"]) == 40

    # the locked echo tower left training bit-identical to the seeded init its features came from; the ECG tower moved
    state = torch.load(out / "checkpoints" / "checkpoint.pt", weights_only=True)["model"]
    init = init_model(model_config(cfg), cfg.seed).state_dict()
    echo_keys = [k for k in init if k.startswith("echo.")]
    assert echo_keys and all(torch.equal(state[k], init[k]) for k in echo_keys)
    assert any(not torch.equal(state[k], init[k]) for k in init if k.startswith("ecg."))

    samples = build_pairs(read_clips(probe_set / "ingest"), PROBE_PAIRS, echo=False).take_all()
    groups = np.array([s["subject_id"] for s in samples])
    truth = pd.read_parquet(probe_set / "synth" / "truth" / "patients.parquet").set_index("subject_id")
    x_pre, x_init = pretrained_and_init(out / "ecg_encoder.pt", samples, seed=0)
    held = set(m["heldout_patients"])
    r2 = {}
    for latent in LATENTS:
        y = truth.loc[groups, latent].to_numpy()
        r2[latent] = (heldout_r2(x_pre, y, groups, held), heldout_r2(x_init, y, groups, held))
        print(f"held-out probe R^2 {latent}: pretrained {r2[latent][0]:+.3f}, random init {r2[latent][1]:+.3f}")

    pretrained, init = r2["wall_thickness"]
    assert pretrained > 0.3, r2
    assert pretrained > init + 0.15, r2
