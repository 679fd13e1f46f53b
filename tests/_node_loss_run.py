"""Run in a subprocess by test_node_loss.py: a simulated cluster (``ray.cluster_utils.Cluster``: a head and two
workers, one CPU each) loses a worker node in the middle of the benchmark's preparation. Prints one JSON line with
what the store holds.

Usage: python tests/_node_loss_run.py WORKDIR RECORDS
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

OBJECT_STORE = 150 * 1024 * 1024


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


def main(work: str, n_records: int) -> dict:
    import numpy as np
    import ray
    from ray.cluster_utils import Cluster

    from _scale_run import write_ptbxl
    from eee_ray.downstream.prepare import PreparedData, prepare_store, storage_scale
    from eee_ray.ecgdata.ptbxl import read_ptbxl
    from eee_ray.ecgdata.records import CANONICAL_LEADS, SignalSpec, read_wfdb

    out = Path(work)
    write_ptbxl(out / "ptbxl", n_records)
    env = {"env_vars": {"OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", "RAY_TRAIN_V2_ENABLED": "1"}}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": OBJECT_STORE,
                                                            "include_dashboard": False})
    result: dict = {}
    try:
        for _ in range(2):
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

        return result
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1], int(sys.argv[2]))), flush=True)
