"""`ray job submit --working-dir . -- python jobs/ingest.py ...` against a real head (docs/cluster.md; docs/contract.md,
Cluster).

The head runs as separate processes (`ray start --head`, its own temp dir and free loopback ports), because the test
session already holds an in-process Ray; it is torn down by killing exactly its own processes, never `ray stop`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest

from _platform_helpers import REPO, child_env, kill_processes_of, reasons, start_head

pytestmark = pytest.mark.slow

FILES = 8


@pytest.fixture()
def head():
    h = start_head(num_cpus=1)
    try:
        yield h
    finally:
        kill_processes_of(h.temp_dir)
        shutil.rmtree(h.temp_dir, ignore_errors=True)


def wait_for_job(address: str, job_id: str, timeout: float = 240.0) -> str:
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_job_status(job_id)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return f"{status.value}\n{client.get_job_logs(job_id)}"
        time.sleep(0.25)
    client.stop_job(job_id)
    return f"TIMEOUT\n{client.get_job_logs(job_id)}"


def test_ray_job_submit_ingest(head, synth_dir, tmp_path):
    out = tmp_path / "ingested"
    job_id = "eee-ingest-test"
    runtime_env = {"excludes": ["runs/", "eee_workdir/", "*.db", ".git/"],
                   "env_vars": {"OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}}
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "job", "submit", "--address", head.dashboard_url,
           "--submission-id", job_id, "--no-wait", "--working-dir", ".", "--runtime-env-json", json.dumps(runtime_env),
           "--", "python", "jobs/ingest.py", "--input", str(synth_dir / "echo"), "--output", str(out),
           "--limit", str(FILES)]
    res = subprocess.run(cmd, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr

    status, _, logs = wait_for_job(head.dashboard_url, job_id).partition("\n")
    assert status == "SUCCEEDED", logs
    assert f"{FILES} files found" in logs

    from eee_ray.ingest import read_manifest

    manifest = read_manifest(out)
    truth = pd.read_parquet(synth_dir / "truth" / "cines.parquet").sort_values("path").head(FILES)
    assert manifest["path"].tolist() == truth["path"].tolist()
    assert manifest["subject_id"].tolist() == truth["subject_id"].tolist()
    assert reasons(manifest) == reasons(truth, "expected_reason")
    n_ok = int((manifest["status"] == "ok").sum())
    assert n_ok > 0
    import pyarrow.parquet as pq

    assert pq.read_table(out / "clips", columns=["path"]).num_rows == n_ok
