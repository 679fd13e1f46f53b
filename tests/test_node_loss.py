"""Fault at scale, simulated: a worker node dies in the middle of the benchmark's preparation
(``ray.cluster_utils.Cluster``, a head and two worker nodes); the prepared store still holds every record exactly once,
each with its own signal.

The cluster cannot live in the test process (it already holds the session's Ray), so ``_node_loss_run.py`` runs it
in a subprocess with its own Ray temp dir."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _platform_helpers import child_env, kill_processes_of, short_temp_dir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

RECORDS = 40


def test_a_node_lost_during_preparation(tmp_path):
    ray_tmp = short_temp_dir("eee_nl_")
    try:
        res = subprocess.run([sys.executable, str(Path(__file__).with_name("_node_loss_run.py")), str(tmp_path),
                              str(RECORDS)], env=child_env(RAY_TMPDIR=ray_tmp), capture_output=True,
                             text=True, timeout=1500)
    finally:
        kill_processes_of(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    r = json.loads(next(line for line in res.stdout.splitlines() if line.startswith("RESULT "))[7:])

    assert r["prepare_log"] and r["prepare_log"][0].startswith("removed"), r["prepare_log"]
    ids = r["index_ids"]
    assert len(ids) == len(set(ids)) == r["store_records"]  # every usable record once
    assert r["store_records"] + r["store_skipped"] == RECORDS
    assert r["max_abs_err"] <= r["half_step"] + 1e-6  # and its signal is the record's own
