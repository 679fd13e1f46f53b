"""The benchmark end to end (docs/contract.md, Downstream benchmark): a tiny Tune grid on the synthetic ECG tree through
the CLI writes the result tables, one closed MLflow run per trial, and per-trial files the analysis stage can load; plus
the grid's rules."""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from eee_ray import cli
from eee_ray.config import MlflowConfig
from eee_ray.downstream import RESULT_COLUMNS, BenchmarkConfig, trial_grid, trial_name
from eee_ray.downstream.grid import close_running_runs
from eee_ray.errors import UserError
from eee_ray.models.registry import build_model
from eee_ray.runtime import setup_mlflow


LEADS, FRACTIONS = ("II", "all"), (0.5, 1.0)


@pytest.mark.slow
def test_tiny_benchmark_end_to_end(tiny_benchmark):
    """The session's tiny benchmark (conftest ``tiny_benchmark``): a user's relative paths (the pretrained encoder,
    the output) work although Tune trials run elsewhere, and the synthetic data set carries its own CCSR mapping
    (nothing read from the shared data folder)."""
    work, out, stdout = tiny_benchmark
    assert "8 trial(s) done" in stdout

    res = pd.read_csv(out / "results.csv")
    assert list(res.columns) == RESULT_COLUMNS
    assert set(zip(res["model"], res["leads"], res["strategy"], res["label_fraction"], res["label_seed"])) == {
        (model, lead, strategy, fraction, 0) for model, strategy in (("xresnet1d50", "scratch"), ("eee", "finetune"))
        for lead in LEADS for fraction in FRACTIONS}
    assert (res["n_test_records"] > 0).all() and (res["n_labels"] > 0).all()
    n_train = res.groupby(["leads", "label_fraction"])["n_train_records"].agg(["min", "max"])
    assert (n_train["min"] == n_train["max"]).all()  # every model learns from the same subset at a fraction
    for lead in LEADS:
        assert 0 < n_train.loc[(lead, 0.5), "min"] < n_train.loc[(lead, 1.0), "min"]
        # the test set stays whole at every fraction
        assert res.loc[res.leads == lead, "n_test_records"].nunique() == 1
    for row in res.itertuples():  # the table's figures are the metrics of the trial's own test outputs
        z = np.load(out / "trials" / trial_name(row._asdict()) / "test_outputs.npz")
        y, p = z["y_true"], z["y_score"]
        has_both = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
        assert row.n_labels == len(has_both) and row.n_test_records == len(y)
        assert row.macro_auroc == pytest.approx(np.mean([roc_auc_score(y[:, j], p[:, j]) for j in has_both]))
        assert row.micro_auroc == pytest.approx(roc_auc_score(y.ravel(), p.ravel()))  # every (record, label) pair
        assert row.macro_auroc_ci_low <= row.macro_auroc <= row.macro_auroc_ci_high
    md = (out / "results.md").read_text()
    assert "| Model | Configuration |" in md and "Label efficiency, All-leads" in md
    eff = pd.read_csv(out / "label_efficiency.csv")
    assert len(eff) == 8 and (eff["n_seeds"] == 1).all()
    per_label = pd.read_csv(out / "per_label_auroc.csv")
    assert set(per_label["label_fraction"]) == {0.5, 1.0}
    assert set(per_label["model"]) == {"xresnet1d50", "eee"} and per_label["label"].str.startswith("CIR").all()
    # each label's training positives (records and patients) that the trial learned from, against the store
    from eee_ray.downstream.prepare import PreparedData

    data = PreparedData(out / "prepared")   # the default store, beside the results
    train = data.split == "train"
    pid, y = data.patient_ids[train], np.asarray(data.labels[train], dtype=bool)
    full = {n: (int(y[:, j].sum()), len(set(pid[y[:, j]]))) for j, n in enumerate(data.label_names)}
    for row in per_label.itertuples():
        records, patients = full[row.label]
        if row.label_fraction == 1.0:
            assert (row.train_positives, row.train_positive_patients) == (records, patients), row
        else:  # the stratified subset keeps at least one positive patient of every label that has one
            assert min(1, patients) <= row.train_positive_patients <= patients, row
            assert row.train_positive_patients <= row.train_positives <= records, row
    assert (per_label.loc[per_label.label_fraction == 0.5, "train_positives"].sum()
            < per_label.loc[per_label.label_fraction == 1.0, "train_positives"].sum())
    assert list(pd.read_csv(out / "skipped.csv").columns) == ["record_id", "reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"] + summary["skipped"] == 72 and summary["failed"] == 0

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")  # the default store: beside the output folder
    assert summary["tracking_uri"] == f"sqlite:///{work / 'mlflow.db'}"
    exp = mlflow.get_experiment_by_name("eee-benchmark")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on the runs table
    runs = mlflow.search_runs(experiment_names=["eee-benchmark"])
    trials = runs[runs["tags.kind"] == "trial"]
    assert len(trials) == 8 and set(runs["status"]) == {"FINISHED"}
    assert set(trials["tags.mlflow.runName"]) == {trial_name(r._asdict()) for r in res.itertuples()}
    assert (runs["tags.kind"] == "summary").sum() == 1
    client = mlflow.MlflowClient()
    for row in trials.itertuples():
        assert len(client.get_metric_history(row.run_id, "train_loss")) == 1
        assert len(client.get_metric_history(row.run_id, "val_loss")) == 1
        assert "test_macro_auroc" in client.get_run(row.run_id).data.metrics
        assert {f.path for f in client.list_artifacts(row.run_id, "trial")} >= {"trial/model.pt", "trial/meta.json"}

    trial = out / "trials" / "eee__all__finetune__lf1__s0"
    meta = json.loads((trial / "meta.json").read_text())
    assert meta["leads"] == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert meta["sample_rate"] == 100 and meta["window"] == 250 and meta["mlflow_run_id"] in set(trials["run_id"])
    model = build_model(**meta["model_spec"])
    model.load_state_dict(torch.load(trial / "model.pt", weights_only=True))
    npz = np.load(trial / "test_outputs.npz")
    assert (meta["label_fraction"], meta["label_seed"]) == (1.0, 0)
    n = int(res.query("model == 'eee' and leads == 'all' and label_fraction == 1")["n_test_records"].iloc[0])
    assert npz["record_id"].shape == (n,) and npz["embedding"].shape == (n, model.feature_dim)
    assert npz["y_true"].dtype == np.uint8 and npz["y_score"].shape == (n, len(meta["label_names"]))
    assert ((npz["y_score"] >= 0) & (npz["y_score"] <= 1)).all()


def test_grid_rules_for_eee_and_strategies():
    grid, notes = trial_grid(BenchmarkConfig())
    assert {g["model"] for g in grid} == {"xresnet1d50", "s4", "st_mem", "eee_random"}
    assert len(grid) == 10 and any("eee skipped" in n for n in notes)  # eee_random: fine-tuned and linear probe
    grid, _ = trial_grid(BenchmarkConfig(models=["eee"], pretrained="enc.pt", leads=["II"]))
    assert [g["strategy"] for g in grid] == ["finetune", "linear_probe"]
    grid, _ = trial_grid(BenchmarkConfig(models=["eee", "s4"], pretrained="enc.pt", strategies=["linear_probe"]))
    assert grid == [{"model": "eee", "leads": lead, "strategy": "linear_probe", "label_fraction": 1.0, "label_seed": 0}
                    for lead in ("II", "all")]
    with pytest.raises(UserError, match="needs --pretrained"):
        trial_grid(BenchmarkConfig(models=["eee"]))
    with pytest.raises(UserError, match="lead config"):
        trial_grid(BenchmarkConfig(leads=["V1"]))


def test_cli_refuses_eee_without_encoder_in_one_line(tmp_path, capsys):
    assert cli.main(["benchmark", "--data", str(tmp_path), "--output", str(tmp_path / "o"), "--models", "eee"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs --pretrained" in err


def test_runs_left_running_are_closed(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri, exp = setup_mlflow(MlflowConfig(dir=str(tmp_path)), tmp_path / "bench", "eee-benchmark")
    client = mlflow.MlflowClient(uri)
    parent = client.create_run(exp, tags={"benchmark_id": "b1", "kind": "benchmark"}).info.run_id
    mine = client.create_run(exp, tags={"benchmark_id": "b1", "kind": "trial"}).info.run_id
    other = client.create_run(exp, tags={"benchmark_id": "b2", "kind": "trial"}).info.run_id
    assert close_running_runs(uri, exp, "b1") == 1
    assert client.get_run(mine).info.status == "KILLED" and client.get_run(other).info.status == "RUNNING"
    assert client.get_run(parent).info.status == "RUNNING"  # the benchmark's own run is closed by the driver
