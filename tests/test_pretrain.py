"""End-to-end pretraining on the synthetic data set (synth -> ingest -> pretrain): it learns, it survives a worker
dying mid-run, it resumes, and its outputs (ecg_encoder.pt, metrics.json, MLflow run) are what later stages read."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from eee_ray.cli import main
from eee_ray.errors import UserError
from eee_ray.losses import LossConfig
from eee_ray.pairs import PairsConfig
from eee_ray.pretrain import FAILURE_MARKER, PretrainConfig, run_pretrain

# 20 warm-up epochs of plain InfoNCE, then the paper's dual-margin loss (see LossConfig.warmup_epochs)
LEARN = dict(epochs=40, batch_size=8, lr=1e-3, seed=0, loss=LossConfig(warmup_epochs=20))
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


def probe_corr(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """Ridge probe, cross-validated by patient (no patient in both fit and test): corr(prediction, truth)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold, cross_val_predict

    pred = cross_val_predict(RidgeCV(alphas=np.logspace(-2, 3, 12)), x, y, groups=groups, cv=GroupKFold(4))
    return float(np.corrcoef(pred, y)[0, 1])


@pytest.mark.slow
def test_pretraining_learns_structure(ingested_dir, synth_dir, tmp_path):
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

    # (a) held-out retrieval clearly above chance, in both directions
    assert m["ecg2echo_r1"] >= 2 * m["chance_r1"] and m["echo2ecg_r1"] >= 2 * m["chance_r1"]
    assert m["ecg2echo_r5"] > m["chance_r5"] and m["echo2ecg_r5"] > m["chance_r5"]

    # (b) a linear probe on the frozen ECG [CLS] predicts echo structure better than on a random encoder
    pretrained = load_pretrained(out / "ecg_encoder.pt")
    torch.manual_seed(0)
    random_init = ECGEncoder(**torch.load(out / "ecg_encoder.pt", weights_only=True)["config"])
    samples = build_pairs(read_clips(ingested_dir), cfg.pairs).take_all()
    truth = pd.read_parquet(synth_dir / "truth" / "patients.parquet").set_index("subject_id")
    groups = np.array([s["subject_id"] for s in samples])
    y = truth.loc[groups, "lv_size"].to_numpy()
    r_pre = probe_corr(ecg_cls(pretrained, samples), y, groups)
    r_rand = probe_corr(ecg_cls(random_init, samples), y, groups)
    print(f"probe corr lv_size: pretrained {r_pre:.3f}, random init {r_rand:.3f}; retrieval {m}")
    assert r_pre > r_rand + 0.1

    # MLflow: one run with every loss term, the retrieval figures and the encoder
    client = mlflow.tracking.MlflowClient(m["mlflow_tracking_uri"])
    run = client.get_run(m["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["preset"] == "tiny"
    for term in ("total", "token", "sid", "pid", "align"):
        assert len(client.get_metric_history(run.info.run_id, f"loss_{term}")) == LEARN["epochs"]
        assert client.get_metric_history(run.info.run_id, f"step_loss_{term}")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"ecg_encoder.pt", "retrieval.png", "metrics.json", "checkpoint.pt"} <= artifacts


@pytest.mark.slow
def test_worker_failure_restart_then_resume(ingested_dir, tmp_path):
    """Two workers (global-batch gather); rank 1 dies at the start of epoch 2: the group restarts from the epoch-1
    checkpoint and finishes. Then ``--resume`` with more epochs continues the same run."""
    out = tmp_path / "pretrain"
    base = dict(clips=str(ingested_dir), output=str(out), workers=2, cpus_per_worker=0.5, batch_size=4,
                pairs=PairsConfig(image_size=32))
    m = run_pretrain(PretrainConfig(epochs=3, inject_failure_epoch=2, **base))
    assert (out / FAILURE_MARKER).is_file()
    assert m["epochs"] == 3 and m["resumed_at"] == [1]
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3]
    assert all(np.isfinite(h["loss_total"]) for h in m["history"])

    with pytest.raises(UserError, match="--resume"):
        run_pretrain(PretrainConfig(epochs=4, **base))
    m2 = run_pretrain(PretrainConfig(epochs=4, resume=True, **base))
    assert m2["epochs"] == 4 and m2["resumed_at"] == [1, 3]
    assert [h["epoch"] for h in m2["history"]] == [1, 2, 3, 4]
    assert m2["mlflow_run_id"] == m["mlflow_run_id"]
    state = torch.load(out / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 4 and {"model", "optimizer", "config", "model_config"} <= set(state)
