"""Run in a subprocess by tests/test_jobs_submit.py (in the background, tests/_background.py): a real head
(``ray start --head`` on 127.0.0.1, in TEMP_DIR, free ports, 1 CPU), then, from the repository, as docs/cluster.md
shows, ``ray job submit --no-wait --working-dir . -- python jobs/ingest.py --input ECHO_DIR --output OUT_DIR --limit
FILES``; waits for the job's end through the job API. Prints one JSON line (``JOB {...}``: the submission's exit
code and output, the job's end state and logs) and exits; the caller kills the head's processes by TEMP_DIR.

Usage: python tests/_job_submit_run.py TEMP_DIR ECHO_DIR OUT_DIR FILES
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _platform_helpers import REPO, child_env, start_head  # noqa: E402

JOB_ID = "eee-ingest-test"
RUNTIME_ENV = {"excludes": ["runs/", "eee_workdir/", "*.db", ".git/"],
               "env_vars": {"OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}}


def wait_for_job(address: str, job_id: str, timeout: float = 240.0) -> tuple[str, str]:
    """The job's end state (TIMEOUT after stopping it, if it runs past ``timeout``) and its logs."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_job_status(job_id)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return status.value, client.get_job_logs(job_id)
        time.sleep(0.25)
    client.stop_job(job_id)
    return "TIMEOUT", client.get_job_logs(job_id)


def main(temp_dir: str, echo_dir: str, out: str, files: int) -> dict:
    head = start_head(num_cpus=1, temp_dir=temp_dir)
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "job", "submit", "--address", head.dashboard_url,
           "--submission-id", JOB_ID, "--no-wait", "--working-dir", ".", "--runtime-env-json", json.dumps(RUNTIME_ENV),
           "--", "python", "jobs/ingest.py", "--input", echo_dir, "--output", out, "--limit", str(files)]
    res = subprocess.run(cmd, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120)
    status, logs = wait_for_job(head.dashboard_url, JOB_ID) if res.returncode == 0 else ("NOT SUBMITTED", "")
    return {"submit_rc": res.returncode, "submit_output": res.stdout + res.stderr, "status": status, "logs": logs}


if __name__ == "__main__":
    print("JOB " + json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))), flush=True)
