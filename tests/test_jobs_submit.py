"""`ray job submit --working-dir . -- python jobs/ingest.py ...` against a real head (docs/cluster.md; docs/contract.md,
Cluster).

The head runs as separate processes (`ray start --head`, its own temp dir and free loopback ports), because the test
session already holds an in-process Ray. ``_job_submit_run.py`` starts it, submits the job and waits for it, in a
subprocess started in the background once the slow tests begin (tests/_background.py); the head is torn down by
killing exactly its own processes, never `ray stop`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import _background
from _platform_helpers import child_env, reasons, short_temp_dir, start_store

FILES = 8


def start_job_submit(synth_dir: Path, mktemp, store: Path) -> _background.Job:
    work = mktemp("job_submit")
    start_store(work, store)   # the ingest's default MLflow store (beside its output), initialised
    out, temp_dir = work / "ingested", short_temp_dir("eee_head_")
    return _background.Job([sys.executable, str(Path(__file__).with_name("_job_submit_run.py")), temp_dir,
                            str(synth_dir / "echo"), str(out), str(FILES)], child_env(), temp_dir, out)


pytestmark = [pytest.mark.slow, pytest.mark.background("job_submit", start_job_submit, phase="slow")]


@pytest.fixture(scope="module")
def submitted(synth_dir, tmp_path_factory, _empty_mlflow_store) -> tuple[dict, Path]:
    return _background.result("job_submit", start_job_submit, "JOB", 600, synth_dir, tmp_path_factory.mktemp,
                              _empty_mlflow_store)


def test_ray_job_submit_ingest(submitted, synth_dir):
    result, out = submitted
    assert result["submit_rc"] == 0, result["submit_output"]
    assert result["status"] == "SUCCEEDED", result["logs"]
    assert f"{FILES} files found" in result["logs"]

    from eee_ray.ingest import read_manifest

    manifest = read_manifest(out)
    truth = pd.read_parquet(synth_dir / "truth" / "cines.parquet").sort_values("path").head(FILES)
    assert manifest["path"].tolist() == truth["path"].tolist()
    assert manifest["subject_id"].tolist() == truth["subject_id"].tolist()
    assert reasons(manifest) == reasons(truth, "expected_reason")
    n_ok = int((manifest["status"] == "ok").sum())
    assert n_ok > 0
    assert pq.read_table(out / "clips", columns=["path"]).num_rows == n_ok
