"""Multi-node behaviour and faults at scale, simulated (``ray.cluster_utils.Cluster``: a head, two ingest worker
nodes and a spare):

- ingest spreads over the worker nodes (never the head) and gives the same manifest as the single-node run;
- 2-worker pretraining runs across two nodes and survives losing the node of one of its workers at the start of an
  epoch (the group restarts from the last checkpoint, no epoch lost or run twice);
- the benchmark's preparation loses a node and still stores every record exactly once, each with its own signal.

The cluster cannot live in the test process (it already holds the session's Ray), so ``_cluster_run.py`` runs it in a
subprocess with its own Ray temp dir, once for the module, started in the background beside the quick tests
(tests/_background.py); whatever it leaves behind is killed by that temp dir.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import _background
from _cluster_run import PRETRAIN_EPOCHS
from _platform_helpers import child_env, raw_manifest, short_temp_dir, start_store

FILES, RECORDS = 16, 40
MANIFEST_COLUMNS = ["path", "subject_id", "study_id", "sop_class_uid", "n_frames", "status", "reason", "detail"]


def rows(df) -> set[tuple]:
    return {tuple(None if v != v else v for v in r) for r in df[MANIFEST_COLUMNS].itertuples(index=False)}


def start_cluster_run(synth_dir: Path, mktemp, store: Path) -> _background.Job:
    out = mktemp("cluster")
    start_store(out, store)   # the run's MLflow store (--mlflow-dir out), initialised
    ray_tmp = short_temp_dir("eee_cl_")
    return _background.Job([sys.executable, str(Path(__file__).with_name("_cluster_run.py")), str(synth_dir / "echo"),
                            str(out), str(FILES), str(RECORDS)], child_env(RAY_TMPDIR=ray_tmp), ray_tmp, out)


pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500), pytest.mark.background("cluster", start_cluster_run)]


@pytest.fixture(scope="module")
def cluster_run(synth_dir, tmp_path_factory, _empty_mlflow_store) -> tuple[dict, Path]:
    return _background.result("cluster", start_cluster_run, "RESULT", 1400, synth_dir, tmp_path_factory.mktemp,
                              _empty_mlflow_store)


def test_ingest_across_the_worker_nodes(cluster_run, ingested_dir):
    result, out = cluster_run
    assert result["nodes"] == 4   # the head, the two ingest nodes and the spare
    assert len(result["ingest_nodes"]) == 2, "the ingest tasks did not spread over both ingest nodes"
    assert result["head_node"] not in result["ingest_nodes"], "an ingest task ran on a node without `ingest`"
    multi = raw_manifest(out / "ingest")
    assert len(multi) == result["ingest_total"] == FILES
    assert multi["path"].is_unique
    single = raw_manifest(ingested_dir)
    single = single[single["path"].isin(set(multi["path"]))]
    assert rows(multi) == rows(single)


def test_pretraining_survives_a_lost_node(cluster_run):
    r, _ = cluster_run
    assert len(r["train_nodes"]) >= 2, "the two Train workers did not run on two nodes"
    assert len(r["pretrain_log"]) == 2 and r["pretrain_log"][0].startswith("removed"), r["pretrain_log"]
    # the group restarted once, from the checkpoint before the loss (not from scratch), and ran every epoch once
    first = r["first"]
    assert first["epochs"] == PRETRAIN_EPOCHS and first["resumed_at"] == [PRETRAIN_EPOCHS - 1], first
    assert r["first_epochs"] == list(range(1, PRETRAIN_EPOCHS + 1))
    assert r["finite"] and {"loss_total", "loss_align"} <= set(r["loss_keys"])


def test_preparation_survives_a_lost_node(cluster_run):
    r, _ = cluster_run
    assert r["prepare_log"] and r["prepare_log"][0].startswith("removed"), r["prepare_log"]
    ids = r["index_ids"]
    assert len(ids) == len(set(ids)) == r["store_records"]  # every usable record once
    assert r["store_records"] + r["store_skipped"] == RECORDS
    assert r["max_abs_err"] <= r["half_step"] + 1e-6  # and its signal is the record's own
