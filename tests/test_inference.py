"""`eee-ray predict` / `embed` round trips: a real checkpoint folder and WFDB records written here; the output must
equal a direct forward pass of the model over the record's sliding windows (computed independently below), a bad
record must come back with a reason instead of crashing the run, and a Parquet input and an MLflow run give the same
numbers."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import wfdb
from scipy.signal import resample_poly

from eee_ray.cli import main
from eee_ray.models.registry import build_model, model_spec

LEADS = ["I", "II"]
LABELS = ["HF", "AORTIC", "PULM"]
ALL12 = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def _ecg(fs: int, rng: np.random.Generator, n_leads: int = 12) -> np.ndarray:
    t = np.arange(10 * fs) / fs
    beats = np.sin(2 * np.pi * 1.2 * t)[:, None] ** 15 * rng.uniform(0.5, 1.5, n_leads)
    return (beats + 0.05 * rng.normal(size=(len(t), n_leads)) + 0.3).astype(np.float64)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A checkpoint folder (tiny XResNet on leads I, II) and a WFDB folder: 100 Hz, 500 Hz, and a record without II."""
    root = tmp_path_factory.mktemp("infer")
    torch.manual_seed(0)
    model = build_model("xresnet1d50", len(LEADS), len(LABELS), preset="tiny").eval()
    ckpt = root / "trial"
    ckpt.mkdir()
    torch.save(model.state_dict(), ckpt / "model.pt")
    (ckpt / "meta.json").write_text(json.dumps({
        "model_spec": model_spec(model), "model": "xresnet1d50", "leads": LEADS, "strategy": "finetune",
        "label_names": LABELS, "window": model.window, "sample_rate": 100, "aggregate": "mean",
        "preprocessing": {"sample_rate": 100, "duration_s": 10.0, "clip_mv": 10.0, "units": "mV"}}))
    rng = np.random.default_rng(1)
    wf = root / "wfdb"
    wf.mkdir()
    signals = {"rec100": (_ecg(100, rng), 100, ALL12), "rec500": (_ecg(500, rng), 500, ALL12),
               "sub/no_lead_ii": (_ecg(500, rng, 3), 500, ["I", "III", "V1"])}
    for name, (sig, fs, names) in signals.items():
        (wf / name).parent.mkdir(parents=True, exist_ok=True)
        wfdb.wrsamp(Path(name).name, fs=fs, units=["mV"] * len(names), sig_name=names, p_signal=sig,
                    fmt=["16"] * len(names), write_dir=str((wf / name).parent))
    return model, ckpt, wf, signals


def _expected(model, sig: np.ndarray, fs: int, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Independent reference: pick leads, resample to 100 Hz, remove the median, 250-sample windows at stride 125,
    mean of sigmoid outputs and of penultimate features."""
    rec = np.stack([sig[:, names.index(lead)] for lead in LEADS])
    x = resample_poly(rec, 100, fs, axis=1) if fs != 100 else rec
    x = np.clip(x - np.median(x, axis=1, keepdims=True), -10, 10).astype(np.float32)
    wins = torch.from_numpy(np.stack([x[:, s:s + 250] for s in range(0, 751, 125)]))
    with torch.no_grad():
        z = model.forward_features(wins)
        p = torch.sigmoid(model.forward_head(z))
    return p.mean(0).numpy(), z.mean(0).numpy()




def test_predict_wfdb_folder_matches_direct_forward(case, ray_session, tmp_path):
    model, ckpt, wf, signals = case
    out = tmp_path / "pred"
    assert main(["predict", "--input", str(wf), "--output", str(out), "--checkpoint", str(ckpt)]) == 0
    df = pd.read_parquet(out).set_index("record_id")
    assert set(df.index) == {"rec100", "rec500", "sub/no_lead_ii"}
    assert list(df.columns) == ["reason", *LABELS]
    assert "missing lead" in df.loc["sub/no_lead_ii", "reason"] and df.loc["sub/no_lead_ii", LABELS].isna().all()
    for name in ("rec100", "rec500"):
        rec = wfdb.rdrecord(str(wf / name))
        p, _ = _expected(model, rec.p_signal, signals[name][1], ALL12)
        assert df.loc[name, "reason"] == ""
        np.testing.assert_allclose(df.loc[name, LABELS].to_numpy(float), p, rtol=1e-4, atol=1e-5)
    summary = json.loads((out / "_inference.json").read_text())
    assert summary["used"] == 2 and summary["label_names"] == LABELS


def test_embed_parquet_from_mlflow_run(case, ray_session, tmp_path, monkeypatch):
    model, ckpt, wf, signals = case
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.create_experiment("eee-benchmark", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_artifacts(str(ckpt), artifact_path="trial")  # as benchmark trials log it

    rows = []
    for name in ("rec100", "rec500"):
        rec = wfdb.rdrecord(str(wf / name))
        rows.append({"record_id": name, "signal": rec.p_signal.T.astype(np.float32).tolist(), "fs": float(rec.fs),
                     "lead_names": ALL12})
    flat = np.zeros((12, 1000), np.float32)
    rows.append({"record_id": "flat", "signal": flat.tolist(), "fs": 100.0, "lead_names": ALL12})
    src = tmp_path / "waves.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)

    out = tmp_path / "emb"
    assert main(["embed", "--input", str(src), "--output", str(out), "--run-id", run.info.run_id,
                 "--mlflow-dir", str(tmp_path)]) == 0
    df = pd.read_parquet(out).set_index("record_id")
    assert "flat line" in df.loc["flat", "reason"] and df.loc["flat", "embedding"] is None
    for name in ("rec100", "rec500"):
        rec = wfdb.rdrecord(str(wf / name))
        _, z = _expected(model, rec.p_signal.astype(np.float32).astype(np.float64), signals[name][1], ALL12)
        assert len(df.loc[name, "embedding"]) == model.feature_dim
        np.testing.assert_allclose(np.asarray(df.loc[name, "embedding"]), z, rtol=1e-3, atol=1e-4)


def test_predict_refuses_bad_inputs_in_one_line(case, ray_session, tmp_path, capsys):
    _, ckpt, _, _ = case
    (tmp_path / "w").mkdir()
    assert main(["predict", "--input", str(tmp_path / "w"), "--output", str(tmp_path / "o"),
                 "--checkpoint", str(tmp_path / "nope")]) == 2
    assert "not a checkpoint folder" in capsys.readouterr().err
    assert main(["predict", "--input", str(tmp_path / "w"), "--output", str(tmp_path / "o"),
                 "--checkpoint", str(ckpt)]) == 2
    assert "no WFDB records" in capsys.readouterr().err
    pq.write_table(pa.table({"record_id": ["a"], "signal": [[[0.0] * 1000]]}), tmp_path / "w.parquet")
    assert main(["predict", "--input", str(tmp_path / "w.parquet"), "--output", str(tmp_path / "o"),
                 "--checkpoint", str(ckpt)]) == 2
    assert "lacks column(s) fs, lead_names" in capsys.readouterr().err


def test_record_list_csv_resolves_paths_inside_its_folder(case, tmp_path):
    import os

    from eee_ray.inference import wfdb_table

    _, _, wf, _ = case
    csv = wf / "record_list.csv"
    csv.write_text("subject_id,study_id,path\n1,111,rec100\n2,222,sub/no_lead_ii\n")
    table = wfdb_table(csv)
    assert list(table["record_id"]) == ["111", "222"]
    assert table["path"].tolist() == [os.fsencode((wf / "rec100").resolve()),
                                      os.fsencode((wf / "sub/no_lead_ii").resolve())]
    assert table["reason"].tolist() == ["", ""]
    bad = tmp_path / "record_list.csv"
    bad.write_text("subject_id,study_id,path\n1,111,../../etc/passwd\n")
    assert "leaves the folder of record_list.csv" in wfdb_table(bad)["reason"].iloc[0]  # that record only
    csv.unlink()
