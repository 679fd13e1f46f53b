"""Run in a subprocess by test_node_loss.py: a simulated cluster (``ray.cluster_utils.Cluster``: a head and three
workers, one CPU each) loses a worker node in the middle of the benchmark's preparation and another in the middle
of pretraining (a node cannot be added from the watching thread, so the spare capacity is there from the start).
Prints one JSON line with what each stage produced.

Usage: python tests/_node_loss_run.py WORKDIR RECORDS CLIPS
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

OBJECT_STORE = 150 * 1024 * 1024
TRAIN_CPUS = 0.75  # two Train workers cannot share a 1-CPU node; 0.25 CPU a node is left for Ray Data


def lose_node_when(cluster, ready, log: list[str], timeout: float = 600) -> threading.Thread:
    """On a thread: once ``ready()`` returns a node id (or True: any worker node), remove that node."""

    def run() -> None:
        t0 = time.time()
        while time.time() - t0 < timeout:
            target = ready()
            if target:
                victim = next(n for n in cluster.worker_nodes if target is True or n.unique_id == target)
                cluster.remove_node(victim, allow_graceful=False)
                log.append(f"removed {victim.unique_id} after {time.time() - t0:.1f} s")
                return
            time.sleep(0.05)
        log.append("node never removed")

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def main(work: str, n_records: int, n_clips: int) -> dict:
    import numpy as np
    import ray
    from ray.cluster_utils import Cluster

    from _scale_run import write_clips, write_ptbxl
    from eee_ray.config import MlflowConfig
    from eee_ray.downstream.prepare import PreparedData, prepare_store, storage_scale
    from eee_ray.ecgdata.ptbxl import read_ptbxl
    from eee_ray.ecgdata.records import CANONICAL_LEADS, SignalSpec, read_wfdb
    from eee_ray.pairs import PairsConfig, clip_index
    from eee_ray.pretrain import PretrainConfig, run_pretrain

    out = Path(work)
    write_ptbxl(out / "ptbxl", n_records)
    write_clips(out / "ingest", n_clips, per_part=2)
    env = {"env_vars": {"OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", "RAY_TRAIN_V2_ENABLED": "1"}}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": OBJECT_STORE,
                                                            "include_dashboard": False})
    result: dict = {}
    try:
        for _ in range(3):
            cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, runtime_env=env, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False

        # 1. benchmark preparation: a worker node dies once the first shards are written
        table, _ = read_ptbxl(out / "ptbxl", ["NORM", "MI"], 500)
        leads, spec, root = list(CANONICAL_LEADS), SignalSpec(), out / "prepared"
        log: list[str] = []
        th = lose_node_when(cluster, lambda: len(list(out.glob(".prepared.staging-*/shards/*.npy"))) >= 2, log)
        info = prepare_store(table, leads, spec, root, shard_records=4)
        th.join(timeout=5)
        data = PreparedData(root)
        view, _, ids = data.part("train", leads)
        ref = {rid: path for rid, path in zip(table["record_id"], table["path"])}
        err = max(float(np.abs(view[[i]][0] - read_wfdb(ref[rid], leads, spec)[0]).max()) for i, rid in
                  enumerate(ids))
        result.update(prepare_log=log, store_records=info.records, store_skipped=info.skipped,
                      index_ids=data.index["record_id"].tolist(), max_abs_err=err, half_step=storage_scale(spec) / 2)

        # 2. pretraining: the node of a Train worker dies once the first epoch's checkpoint is committed
        log = []

        def train_node():
            """The worker node whose raylet runs a Ray Train worker process, once epoch 1's checkpoint exists
            (found through /proc: the state API is not usable from this thread)."""
            from _platform_helpers import _proc_table
            from ray._private import ray_constants

            if not list((out / "pretrain" / "ray_results").rglob("checkpoint_*")):
                return None
            table = _proc_table()
            for node in cluster.worker_nodes:
                todo = [p.process.pid for p in node.all_processes.get(ray_constants.PROCESS_TYPE_RAYLET, [])]
                seen = set()
                while todo:
                    pid = todo.pop()
                    seen.add(pid)
                    if any("RayTrainWorker" in part for part in table.get(pid, (0, []))[1]):
                        return node.unique_id
                    todo += [c for c, (ppid, _) in table.items() if ppid == pid and c not in seen]
            return None

        th = lose_node_when(cluster, train_node, log)
        metrics = run_pretrain(PretrainConfig(clips=str(out / "ingest"), output=str(out / "pretrain"), epochs=2,
                                              workers=2, cpus_per_worker=TRAIN_CPUS, batch_size=2, max_failures=3,
                                              retrieval_max_clips=8, pairs=PairsConfig(image_size=32, max_tokens=4),
                                              mlflow=MlflowConfig(dir=str(out))))
        th.join(timeout=5)
        index = clip_index(out / "ingest", PairsConfig(image_size=32, max_tokens=4))
        result.update(pretrain_log=log, epochs=metrics["epochs"], resumed_at=metrics["resumed_at"],
                      train_clips=metrics["train_clips"], heldout_clips=metrics["heldout_clips"],
                      heldout_patients=metrics["heldout_patients"], index_clips=len(index),
                      index_patients=sorted(index["subject_id"].unique().tolist()))
        return result
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))), flush=True)
