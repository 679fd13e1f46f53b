"""Run in a subprocess by test_cluster.py: a simulated Ray cluster on this machine (``ray.cluster_utils.Cluster``: a
head, two worker nodes with the ``ingest`` resource of cluster.yaml and a spare node without it, one CPU each,
all started at once) and, in order:

1. the real ingest across the worker nodes;
2. a 2-worker pretraining (the default recipe, gather across workers) that loses the worker node of one of its Train
   workers at the start of epoch 2, once epoch 1's checkpoint is committed (the ``pretrain_hold`` fault holds the
   workers there); the group restarts from the last checkpoint on the nodes left (the spare among them, as an
   autoscaler would bring one) and finishes every epoch once (``--resume`` of a finished run into
   object storage: tests/test_object_storage.py);
3. the benchmark's preparation, which loses a worker node once its first shards are staged.

Prints one JSON line (``RESULT {...}``) with what each step produced and where its work ran, then exits at once: the
caller kills the processes of its Ray temp dir.

Usage: python tests/_cluster_run.py ECHO_DIR OUT_DIR FILES RECORDS
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eee_ray.ray_internals import actor_nodes  # noqa: E402

OBJECT_STORE = 150 * 1024 * 1024
TRAIN_CPUS = 0.75     # two Train workers cannot share a 1-CPU node: they land on two nodes, 0.25 CPU is left for data
PRETRAIN_EPOCHS = 2   # the node is lost at the start of the last one
NODE = dict(num_cpus=1, resources={"ingest": 1}, object_store_memory=OBJECT_STORE)
SPARE = dict(num_cpus=1, object_store_memory=OBJECT_STORE)


def lose_node_when(cluster, ready, log: list[str], then=None, timeout: float = 600) -> threading.Thread:
    """On a thread: once ``ready()`` returns a node id (or True: any worker node), remove that node without a
    graceful shutdown, then call ``then(node_id)`` (also when this fails, with None: a held run must not wait for
    ever)."""

    def run() -> None:
        t0, victim_id = time.time(), None
        try:
            while time.time() - t0 < timeout:
                target = ready()
                if target:
                    victim = next(n for n in cluster.worker_nodes if target is True or n.node_id == target)
                    cluster.remove_node(victim, allow_graceful=False)
                    victim_id = victim.node_id
                    log.append(f"removed {victim_id} after {time.time() - t0:.1f} s")
                    return
                time.sleep(0.05)
            log.append("node never removed")
        finally:
            if then:
                then(victim_id)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def train_worker_node_when_held(cluster, release: Path):
    """The worker node (not the head) of a live Train worker, once the workers hold; else None."""

    def ready():
        if not Path(f"{release}.waiting").exists():
            return None
        workers = {n.node_id for n in cluster.worker_nodes}
        hosts = [n for n in actor_nodes("RayTrainWorker", alive_only=True) if n in workers]
        return hosts[0] if hosts else None

    return ready


def release_once_dead(release: Path, timeout: float = 60):
    """``then`` of the pretraining's node loss: the held workers go on only once the GCS lists no live Train worker
    on the lost node. A worker process outlives its raylet for a moment; released at once, it could finish a short
    epoch and report before it died, and the run would never see the loss."""

    def then(node_id) -> None:
        t0 = time.time()
        while node_id and node_id in actor_nodes("RayTrainWorker", alive_only=True) and time.time() - t0 < timeout:
            time.sleep(0.1)
        release.touch()

    return then


def ingest(echo_dir: str, out: Path, limit: int) -> dict:
    from eee_ray.ingest import IngestConfig, run_ingest

    summary = run_ingest(IngestConfig(input=echo_dir, output=str(out / "ingest"), limit=limit))
    return {"ingest_total": summary.total, "ingest_nodes": sorted(summary.nodes)}


def pretrain(cluster, out: Path) -> dict:
    from eee_ray.config import MlflowConfig
    from eee_ray.faults import injected
    from eee_ray.pairs import PairsConfig
    from eee_ray.pretrain import PretrainConfig, run_pretrain

    base = dict(clips=str(out / "ingest"), output=str(out / "pretrain"), workers=2, cpus_per_worker=TRAIN_CPUS,
                batch_size=4, pairs=PairsConfig(image_size=32, max_tokens=4), retrieval_max_clips=4,
                mlflow=MlflowConfig(dir=str(out)))
    log: list[str] = []
    release = out / "release"
    th = lose_node_when(cluster, train_worker_node_when_held(cluster, release), log, then=release_once_dead(release))
    t = time.perf_counter()
    with injected(pretrain_hold=f"{PRETRAIN_EPOCHS}:{release}"):
        first = run_pretrain(PretrainConfig(epochs=PRETRAIN_EPOCHS, **base))
    first_s = time.perf_counter() - t
    th.join(timeout=30)
    log.append(f"run {first_s:.1f} s")
    losses = [v for h in first["history"] for k, v in h.items() if k.startswith("loss_")]
    return {"pretrain_log": log, "train_nodes": actor_nodes("RayTrainWorker"),
            "first": {k: first[k] for k in ("epochs", "resumed_at", "mlflow_run_id")},
            "first_epochs": [h["epoch"] for h in first["history"]],
            "loss_keys": sorted({k for h in first["history"] for k in h if k.startswith("loss_")}),
            "finite": all(math.isfinite(v) for v in losses)}


def prepare(cluster, out: Path, n_records: int) -> dict:
    import numpy as np

    from _scale_run import write_ptbxl
    from eee_ray.downstream.prepare import PreparedData, prepare_store, storage_scale
    from eee_ray.ecgdata.ptbxl import read_ptbxl
    from eee_ray.ecgdata.records import CANONICAL_LEADS, SignalSpec, read_wfdb

    write_ptbxl(out / "ptbxl", n_records)
    table, _ = read_ptbxl(out / "ptbxl", ["NORM", "MI"], 500)
    leads, spec, root = list(CANONICAL_LEADS), SignalSpec(), out / "prepared"
    log: list[str] = []
    th = lose_node_when(cluster, lambda: len(list(out.glob(".prepared.staging-*/shards/*.npy"))) >= 2, log)
    info = prepare_store(table, leads, spec, root, shard_records=4)
    th.join(timeout=5)
    data = PreparedData(root)
    view, _, ids = data.part("train", leads)
    ref = {rid: path for rid, path in zip(table["record_id"], table["path"])}
    err = max(float(np.abs(view[[i]][0] - read_wfdb(ref[rid], leads, spec)[0]).max()) for i, rid in enumerate(ids))
    return {"prepare_log": log, "store_records": info.records, "store_skipped": info.skipped,
            "index_ids": data.index["record_id"].tolist(), "max_abs_err": err, "half_step": storage_scale(spec) / 2}


def main(echo_dir: str, out_dir: str, files: int, records: int) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from eee_ray.runtime import LOCAL_ENV_VARS

    # one machine: Ray Train polls as on a local Ray, and the GCS declares a killed node dead within a second or two
    env = {"env_vars": {"OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", "RAY_TRAIN_V2_ENABLED": "1",
                        **LOCAL_ENV_VARS}}
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": OBJECT_STORE, "include_dashboard": False,
        "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                           "health_check_failure_threshold": 3}})
    try:
        # the workers are the "ingest" nodes of cluster.yaml (the ingest must stay off the head); the spare has no
        # ingest resource. All three start side by side (each node's start-up is mostly waiting for its processes).
        for args in (NODE, NODE, SPARE):
            cluster.add_node(wait=False, **args)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, runtime_env=env, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        out = Path(out_dir)
        result = {"nodes": len([n for n in ray.nodes() if n["Alive"]]),
                  "head_node": ray.get_runtime_context().get_node_id()}
        seconds = {}
        for name, step in (("ingest", lambda: ingest(echo_dir, out, files)), ("pretrain", lambda: pretrain(cluster, out)),
                           ("prepare", lambda: prepare(cluster, out, records))):
            t = time.perf_counter()
            result.update(step())
            seconds[name] = round(time.perf_counter() - t, 1)
        return {**result, "seconds": seconds}
    except BaseException:
        ray.shutdown()
        cluster.shutdown()
        raise


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))), flush=True)
    # no graceful stop of the four nodes: tests/test_cluster.py kills every process of this Ray's temp dir
    os._exit(0)
