"""The benchmark as users browse it in MLflow and take a model from it, on the session's tiny benchmark
(conftest.py ``tiny_benchmark``: xresnet1d50 and eee x leads II and all x label fractions 0.5 and 1, 1 epoch):

- one parent run per benchmark, the trials and the summary nested under it, headline metrics and tags;
- each trial's train / val / test record listings as dataset inputs;
- every trial logged as a pyfunc model, the best per lead configuration registered as ``eee-ecg-<leads>``;
- the registered model served by ``mlflow models serve`` and loaded by ``mlflow.pyfunc.load_model`` in a fresh
  process gives the same probabilities as ``eee-ray predict --model models:/...`` on the same WFDB records;
- the MLflow UI, rendered in headless Chromium, shows the runs table, the nesting, a trial and the registered model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from eee_ray import cli
from eee_ray.downstream import trial_name
from eee_ray.tracking import PARENT_TAG, listing_digest

REPO = Path(__file__).resolve().parents[1]
N_RECORDS = 6  # WFDB records compared between predict, the served model and a fresh-process load
TOLERANCE = 1e-5  # the bound; the three paths run the same float32 model on the same prepared signal


def _client(work: Path):
    uri = f"sqlite:///{work / 'mlflow.db'}"
    return uri, mlflow.MlflowClient(uri, registry_uri=uri)


def _trial_metrics(out: Path) -> pd.DataFrame:
    return pd.DataFrame([json.loads(p.read_text()) for p in sorted((out / "trials").glob("*/metrics.json"))])


@pytest.mark.slow
def test_benchmark_is_one_parent_run_with_datasets_models_and_registry(tiny_benchmark):
    work, out, _ = tiny_benchmark
    uri, client = _client(work)
    exp = client.get_experiment_by_name("eee-benchmark")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "benchmark"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get(PARENT_TAG) == parent.info.run_id]
    assert sorted(r.data.tags["kind"] for r in children) == ["summary"] + ["trial"] * 8
    assert len(runs) == 9 + 1  # nothing left outside the parent
    parent_inputs = {i.tags[0].value: i.dataset.digest for i in parent.inputs.dataset_inputs}
    assert set(parent_inputs) == {"training", "validation", "testing"}  # the splits its trials read
    assert {r.info.status for r in runs} == {"FINISHED"}

    metrics = _trial_metrics(out)
    assert parent.data.metrics["test_macro_auroc"] == pytest.approx(metrics["macro_auroc"].max())
    for lead, group in metrics.groupby("leads"):
        assert parent.data.metrics[f"test_macro_auroc_{lead}"] == pytest.approx(group["macro_auroc"].max())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mlflow_run_id"] == parent.info.run_id

    for trial in (r for r in children if r.data.tags["kind"] == "trial"):
        tags = trial.data.tags
        assert trial.info.run_name == trial_name({k: tags[k] for k in ("model", "leads", "strategy", "label_fraction",
                                                                       "label_seed")})
        assert tags["label_fraction"] in ("0.5", "1.0") and tags["label_seed"] == "0"  # the grid's axes as tags
        assert tags["benchmark_id"] == summary["benchmark_id"]
        inputs = {i.tags[0].value: i.dataset for i in trial.inputs.dataset_inputs}
        assert set(inputs) == {"training", "validation", "testing"}
        for split, context in (("train", "training"), ("val", "validation"), ("test", "testing")):
            ds = inputs[context]
            assert ds.name == f"synthetic-{split}"
            assert json.loads(ds.profile)["records"] == summary[f"{split}_records"]
            assert json.loads(ds.source)["uri"].startswith("file://")
        assert len({ds.digest for ds in inputs.values()}) == 3  # three different record listings
        row = metrics[metrics["run_id"] == trial.info.run_id].iloc[0]
        assert trial.data.metrics["test_macro_auroc"] == pytest.approx(row["macro_auroc"])
        logged = client.get_logged_model(row["model_uri"].split("/")[-1])
        assert logged.source_run_id == trial.info.run_id and logged.status == "READY"

    for lead, group in metrics.groupby("leads"):  # the best by validation macro AUROC, version 1
        val = group["val_macro_auroc"].fillna(-np.inf)   # nan: no label both ways in val
        top = group[val == val.max()]
        top = top[top["label_fraction"] == top["label_fraction"].max()]   # a tie goes to the one with more labels
        mv = client.get_model_version(f"eee-ecg-{lead}", "1")
        assert mv.run_id in set(top["run_id"]), (mv.run_id, group)
        best = top[top["run_id"] == mv.run_id].iloc[0]
        assert mv.tags["model"] == best["model"]
        assert float(mv.tags["test_macro_auroc"]) == pytest.approx(best["macro_auroc"], abs=1e-4)
    assert {r["name"] for r in summary["registered_models"]} == {"eee-ecg-II", "eee-ecg-all"}


def test_listing_digest_tells_listings_apart():
    a = pd.DataFrame({"record_id": ["r1", "r2"], "split": ["train", "test"]})
    assert listing_digest(a) == listing_digest(a.copy())
    assert listing_digest(a) != listing_digest(a.assign(split=["test", "train"]))
    assert listing_digest(a) != listing_digest(a.iloc[:1])


def _records(synth_dir: Path, dest: Path) -> tuple[Path, list[dict]]:
    """N_RECORDS WFDB records copied into ``dest`` and the same ECGs as serving-input rows."""
    import wfdb

    heads = sorted((synth_dir / "ecg").rglob("*.hea"))[:N_RECORDS]
    rows = []
    for h in heads:
        rid = str(h.relative_to(synth_dir / "ecg").with_suffix(""))
        target = dest / rid
        target.parent.mkdir(parents=True, exist_ok=True)
        for f in h.parent.glob(h.stem + ".*"):
            shutil.copy2(f, target.parent / f.name)
        rec = wfdb.rdrecord(str(h.with_suffix("")))
        rows.append({"record_id": rid, "signal": rec.p_signal.T.tolist(), "fs": float(rec.fs),
                     "lead_names": list(rec.sig_name)})
    return dest, rows


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_served_and_loaded_model_match_predict(tiny_benchmark, synth_dir, tmp_path):
    work, _, _ = tiny_benchmark
    uri, client = _client(work)
    model_uri = "models:/eee-ecg-all/1"
    records, rows = _records(synth_dir, tmp_path / "wfdb")

    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(REPO)}
    # mlflow models serve on loopback (started first: it boots while predict and the fresh-process load run)
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager",
                             "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    try:
        # eee-ray predict with the registry URI
        pred_out = tmp_path / "pred"
        assert cli.main(["predict", "--input", str(records), "--output", str(pred_out), "--model", model_uri,
                         "--mlflow-dir", str(work)]) == 0
        predicted = pd.read_parquet(pred_out).set_index("record_id").sort_index()
        label_names = [c for c in predicted.columns if c != "reason"]
        assert len(predicted) == N_RECORDS and (predicted["reason"] == "").all() and label_names

        # a fresh process: mlflow.pyfunc.load_model on the registry URI
        (tmp_path / "rows.json").write_text(json.dumps(rows))
        code = ("import json, sys, mlflow, pandas as pd; m = mlflow.pyfunc.load_model(sys.argv[1]); "
                "rows = json.load(open(sys.argv[2])); "
                "m.predict(pd.DataFrame(rows)).to_json(sys.argv[3], orient='records')")
        subprocess.run([sys.executable, "-c", code, model_uri, str(tmp_path / "rows.json"),
                        str(tmp_path / "loaded.json")], env=env, check=True, timeout=300, cwd=tmp_path)
        loaded = pd.read_json(tmp_path / "loaded.json", dtype={"record_id": str}).set_index("record_id").sort_index()

        # the served model: one REST request once it answers
        deadline = time.time() + 240
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5):
                    break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
                time.sleep(0.25)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                     data=json.dumps({"dataframe_records": rows}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            served = pd.DataFrame(json.loads(r.read())["predictions"])
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()
    served = served.set_index("record_id").sort_index()

    for other in (served, loaded):
        assert list(other.index) == list(predicted.index) and (other["reason"] == "").all()
        np.testing.assert_allclose(other[label_names].to_numpy(np.float64),
                                   predicted[label_names].to_numpy(np.float64), rtol=0, atol=TOLERANCE)
    assert ((predicted[label_names] > 0) & (predicted[label_names] < 1)).all().all()


@pytest.mark.slow
def test_mlflow_ui_pages_render(tiny_benchmark):
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                     if shutil.which(n)), None)
    if chromium is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium); the MLflow UI check "
                    "needs a browser")
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import mlflow_ui_screens
    finally:
        sys.path.pop(0)
    work, _, _ = tiny_benchmark
    # the two pages that show what this project sets up: the runs table (model-training view, trials nested under the
    # benchmark) and a trial (parent, datasets, registered model, headline metric); the script renders all four
    assert mlflow_ui_screens.main(["--store", str(work), "--no-screenshots",
                                   "--pages", "mlflow_benchmark_runs,mlflow_trial"]) == 0


def test_predict_refuses_a_bad_model_uri_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "w").mkdir()
    base = ["predict", "--input", str(tmp_path / "w"), "--output", str(tmp_path / "o"), "--mlflow-dir", str(tmp_path)]
    assert cli.main([*base, "--model", "eee-ecg-II"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "MLflow model URI" in err
    assert cli.main([*base, "--model", "models:/eee-ecg-nope/1"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]  # MLflow logs INFO
    assert len(errors) == 1 and "eee-ray predict: error: cannot read MLflow model models:/eee-ecg-nope/1" in errors[0]


def test_best_trial_breaks_ties_by_label_fraction_then_grid_order():
    from eee_ray.serving import best_trial

    rows = pd.DataFrame({"val_macro_auroc": [0.7, 0.9, 0.9, np.nan, 0.9],
                         "label_fraction": [1.0, 0.5, 1.0, 1.0, 1.0], "model": ["a", "b", "c", "d", "e"]})
    assert best_trial(rows)["model"] == "c"   # 0.9 ties: the full label fraction, then the first in grid order
    assert best_trial(rows.iloc[[3, 0]])["model"] == "a"   # no validation AUROC ranks last
    assert best_trial(rows.drop(columns="label_fraction"))["model"] == "b"
