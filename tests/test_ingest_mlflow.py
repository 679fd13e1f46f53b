"""Every ingest is an MLflow run: a user browsing the UI sees how many files were accepted and why others were not."""

import json

import mlflow
import pandas as pd

from eee_ray.ingest import read_manifest


def test_ingest_run_records_config_and_counts(ingested_dir):
    summary = json.loads((ingested_dir / "summary.json").read_text())
    client = mlflow.MlflowClient(summary["mlflow_tracking_uri"])
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == "eee-ingest" and exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert summary["mlflow_tracking_uri"] == f"sqlite:///{ingested_dir.resolve().parent / 'mlflow.db'}"
    manifest = read_manifest(ingested_dir)
    assert run.data.metrics["files_total"] == len(manifest)
    assert run.data.metrics["files_ok"] == int((manifest["status"] == "ok").sum())
    for reason, n in pd.Series(manifest["reason"].dropna()).value_counts().items():
        assert run.data.metrics[f"rejected_{reason}"] == n
    assert run.data.params["max_frames"] == "120" and run.data.params["trace.hsv_lower"].startswith("[64, 97, 113]")
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "config.yaml"} <= names
    # what it read, as the run's dataset input: the manifest's listing (digest) and its counts
    from eee_ray.tracking import listing_digest

    (ds,) = [i.dataset for i in run.inputs.dataset_inputs]
    assert ds.name == "echo-dicoms" and run.data.tags["kind"] == "ingest"
    assert ds.digest == listing_digest(manifest[["path", "status", "reason"]].astype(str))
    assert json.loads(ds.profile)["files"] == len(manifest)
