"""End-to-end pretraining on the synthetic data set (synth -> ingest -> pretrain): it runs and reports whether it
learns (retrieval, structure probe; not yet proven, see the README), it survives a worker
dying mid-run, it resumes, and its outputs (ecg_encoder.pt, metrics.json, MLflow run) are what later stages read."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from eee_ray.cli import main
from eee_ray.errors import UserError
from eee_ray.losses import LossConfig
from eee_ray.pairs import PairsConfig
from eee_ray.pretrain import FAILURE_MARKER, PretrainConfig, run_pretrain

# The paper's loss from the first step (no warm-up): the contrastive objective itself must go down. The longer recipe
# of the README's "Does it learn?" (40 epochs, 20 of them plain InfoNCE) is run with `pytest -s -k learning_report` + EEE_LONG=1.
LEARN = dict(epochs=6, batch_size=8, lr=1e-3, seed=0, loss=LossConfig(warmup_epochs=0))
if os.environ.get("EEE_LONG"):
    LEARN.update(epochs=40, loss=LossConfig(warmup_epochs=20))
IMAGE = 64


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["pretrain", "--output", str(tmp_path / "o")]) == 2
    assert "--clips is required" in capsys.readouterr().err
    assert main(["pretrain", "--clips", str(tmp_path / "none"), "--output", str(tmp_path / "o")]) == 2
    assert "clips folder not found" in capsys.readouterr().err
    assert main(["pretrain", "--clips", str(tmp_path), "--output", str(tmp_path / "o"), "--epochs", "0"]) == 2


def ecg_cls(encoder: torch.nn.Module, samples: list[dict]) -> np.ndarray:
    from eee_ray.pairs import collate

    b = collate({k: [s[k] for s in samples] for k in ("ecg", "echo", "n_tokens", "subject_id", "study_id")})
    with torch.no_grad():
        return encoder.eval()(b["ecg"], b["pad_mask"])[0].numpy()


def probe_r2(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """Ridge probe at patient level (mean [CLS] of a patient's clips), leave-one-patient-out: cross-validated R^2.

    R^2 <= 0 means the features carry no usable information about ``y``, however negative (as does a negative
    cross-validated correlation: it is no weaker form of information).
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import LeaveOneOut, cross_val_predict

    ids = np.unique(groups)
    xp = np.stack([x[groups == i].mean(0) for i in ids])
    yp = np.array([y[groups == i][0] for i in ids])
    pred = cross_val_predict(RidgeCV(alphas=np.logspace(-2, 3, 12)), xp, yp, cv=LeaveOneOut())
    return float(r2_score(yp, pred))


@pytest.mark.slow
def test_pretraining_end_to_end_and_learning_report(ingested_dir, synth_dir, tmp_path):
    import mlflow

    from eee_ray.ingest import read_clips
    from eee_ray.models.ecg_encoder import ECGEncoder, load_pretrained
    from eee_ray.pairs import build_pairs

    out = tmp_path / "pretrain"
    cfg = PretrainConfig(clips=str(ingested_dir), output=str(out), pairs=PairsConfig(image_size=IMAGE), **LEARN)
    m = run_pretrain(cfg)
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("ecg2echo_r1", "echo2ecg_r1", "chance_r1", "epochs", "train_clips", "heldout_clips", "loss_total",
                "loss_token", "loss_sid", "loss_pid", "loss_align"):
        assert key in on_disk
    assert m["epochs"] == LEARN["epochs"] and m["chance_r1"] == pytest.approx(1 / m["heldout_clips"])

    # every epoch of the paper's loss is finite (its value is not monotone: the dual-margin mask changes with the
    # embeddings, so the loss is no learning signal on its own)
    assert len(m["history"]) == LEARN["epochs"] and all(np.isfinite(h["loss_total"]) for h in m["history"])

    # (a) measured, not asserted: held-out retrieval (11 held-out clips of 3 patients: Recall@1 moves by 0.09 per
    # hit and between seeds and runs; README "Does it learn?" has the numbers and why they do not prove learning yet)

    # (b) measured, not asserted: does a linear probe on the frozen ECG [CLS] predict an echo structure latent better
    # than on a random encoder? On this data set (12 patients, weak ECG links) it does not, robustly across seeds
    # (README "Does it learn?"), so asserting it would only test luck.
    pretrained = load_pretrained(out / "ecg_encoder.pt")
    torch.manual_seed(0)
    random_init = ECGEncoder(**torch.load(out / "ecg_encoder.pt", weights_only=True)["config"])
    samples = build_pairs(read_clips(ingested_dir), cfg.pairs).take_all()
    truth = pd.read_parquet(synth_dir / "truth" / "patients.parquet").set_index("subject_id")
    groups = np.array([s["subject_id"] for s in samples])
    x_pre, x_rand = ecg_cls(pretrained, samples), ecg_cls(random_init, samples)
    for latent in ("wall_thickness", "lv_size", "valve_jet"):
        y = truth.loc[groups, latent].to_numpy()
        print(f"probe R^2 {latent}: pretrained {probe_r2(x_pre, y, groups):.3f}, "
              f"random init {probe_r2(x_rand, y, groups):.3f}")
    print(f"retrieval {m}")

    # MLflow: one run with every loss term, the retrieval figures and the encoder
    client = mlflow.tracking.MlflowClient(m["mlflow_tracking_uri"])
    run = client.get_run(m["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["preset"] == "tiny"
    for term in ("total", "token", "sid", "pid", "align"):
        assert len(client.get_metric_history(run.info.run_id, f"loss_{term}")) == LEARN["epochs"]
        assert client.get_metric_history(run.info.run_id, f"step_loss_{term}")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"ecg_encoder.pt", "retrieval.png", "metrics.json", "checkpoint.pt"} <= artifacts


@pytest.fixture
def few_clips(ingested_dir, tmp_path) -> Path:
    """A subset of the ingested clips (5 of the parquet parts, several patients): the restart test needs few steps."""
    clips = tmp_path / "few" / "clips"
    clips.mkdir(parents=True)
    for part in sorted((ingested_dir / "clips").glob("*.parquet"))[:5]:
        shutil.copy(part, clips / part.name)
    return clips.parent


@pytest.mark.slow
def test_worker_failure_restart_then_resume(few_clips, tmp_path):
    """Two workers (global-batch gather); rank 1 dies at the start of epoch 2 (after the epoch-1 checkpoint is
    committed): the group restarts from that checkpoint and finishes epoch 2. Then ``--resume`` with one more epoch
    continues the same run from the epoch-2 checkpoint."""
    out = tmp_path / "pretrain"
    base = dict(clips=str(few_clips), output=str(out), workers=2, cpus_per_worker=0.5, batch_size=4,
                pairs=PairsConfig(image_size=32, max_tokens=4))
    m = run_pretrain(PretrainConfig(epochs=2, inject_failure_epoch=2, **base))
    assert (out / FAILURE_MARKER).is_file()
    # resumed_at records the epoch of the checkpoint a (re)started group loaded: 1, not a restart from scratch
    assert m["epochs"] == 2 and m["resumed_at"] == [1]
    assert [h["epoch"] for h in m["history"]] == [1, 2]
    assert all(np.isfinite(h["loss_total"]) for h in m["history"])

    with pytest.raises(UserError, match="--resume"):
        run_pretrain(PretrainConfig(epochs=3, **base))
    m2 = run_pretrain(PretrainConfig(epochs=3, resume=True, **base))
    assert m2["epochs"] == 3 and m2["resumed_at"] == [1, 2]
    assert [h["epoch"] for h in m2["history"]] == [1, 2, 3]
    assert m2["mlflow_run_id"] == m["mlflow_run_id"]
    state = torch.load(out / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 3 and {"model", "optimizer", "config", "model_config"} <= set(state)
