"""Every ingest is an MLflow run: a user browsing the UI sees how many files were accepted and why others were not."""

import mlflow
import pandas as pd

from eee_ray.ingest import read_manifest


def test_ingest_run_records_config_and_counts(ingested_dir):
    client = mlflow.MlflowClient(f"sqlite:///{ingested_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("eee-ingest")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    manifest = read_manifest(ingested_dir)
    assert run.data.metrics["files_total"] == len(manifest)
    assert run.data.metrics["files_ok"] == int((manifest["status"] == "ok").sum())
    for reason, n in pd.Series(manifest["reason"].dropna()).value_counts().items():
        assert run.data.metrics[f"rejected_{reason}"] == n
    assert run.data.params["max_frames"] == "120" and run.data.params["trace.hsv_lower"].startswith("[64, 97, 113]")
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "config.yaml"} <= names
