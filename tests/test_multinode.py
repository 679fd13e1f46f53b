"""Multi-node behaviour, simulated: ingest and 2-worker pretraining across a head and two worker
nodes (``ray.cluster_utils.Cluster``) give the same manifest as the single-node run and finite losses.

The cluster cannot live in the test process (it already holds the session's Ray), so ``_multinode_run.py`` runs it
in a subprocess with its own Ray temp dir; whatever it leaves behind is killed by that temp dir.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _platform_helpers import child_env, kill_processes_of, raw_manifest, short_temp_dir

pytestmark = pytest.mark.slow

FILES = 16
MANIFEST_COLUMNS = ["path", "subject_id", "study_id", "sop_class_uid", "n_frames", "status", "reason", "detail"]


def rows(df) -> set[tuple]:
    return {tuple(None if v != v else v for v in r) for r in df[MANIFEST_COLUMNS].itertuples(index=False)}


def test_ingest_and_pretraining_across_three_nodes(synth_dir, ingested_dir, tmp_path):
    ray_tmp = short_temp_dir("eee_mn_")
    script = Path(__file__).with_name("_multinode_run.py")
    try:
        res = subprocess.run([sys.executable, str(script), str(synth_dir / "echo"), str(tmp_path), str(FILES)],
                             env=child_env(RAY_TMPDIR=ray_tmp), capture_output=True, text=True, timeout=900)
    finally:
        kill_processes_of(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    result = json.loads(next(line for line in res.stdout.splitlines() if line.startswith("RESULT "))[7:])

    assert result["nodes"] == 3
    assert len(result["ingest_nodes"]) == 2, "the ingest actors did not spread over both ingest nodes"
    assert result["head_node"] not in result["ingest_nodes"], "an ingest actor ran on a node without `ingest`"
    assert len(result["train_nodes"]) == 2, "the two Train workers did not run on two nodes"

    multi = raw_manifest(tmp_path / "ingest")
    assert len(multi) == result["ingest_total"] == FILES
    assert multi["path"].is_unique
    single = raw_manifest(ingested_dir)
    single = single[single["path"].isin(set(multi["path"]))]
    assert rows(multi) == rows(single)

    assert result["epochs"] == 1
    assert result["finite"] and set(result["losses"]) >= {"loss_total", "loss_align"}, result["losses"]
