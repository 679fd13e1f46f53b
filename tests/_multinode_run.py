"""Run in a subprocess by test_multinode.py: a simulated 3-node Ray cluster on this machine
(``ray.cluster_utils.Cluster``: a head and two workers, one CPU each), the real ingest and a 1-epoch 2-worker
pretraining on it. Prints one JSON line with the results and the nodes the work ran on, then shuts it all down.

Usage: python tests/_multinode_run.py ECHO_DIR OUT_DIR LIMIT
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

OBJECT_STORE = 150 * 1024 * 1024
TRAIN_CPUS = 0.75   # two Train workers cannot share a 1-CPU node: they land on two nodes, 0.5 CPU is left for data


def actor_nodes(class_fragment: str) -> list[str]:
    """Node ids of every actor (alive or dead) whose class name contains ``class_fragment``."""
    from ray._private.state import state

    return sorted({a["Address"]["NodeID"] for a in state.actor_table(None).values()
                   if class_fragment in a.get("ActorClassName", "")})


def main(echo_dir: str, out_dir: str, limit: int) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from eee_ray.ingest import IngestConfig, run_ingest
    from eee_ray.pairs import PairsConfig
    from eee_ray.pretrain import PretrainConfig, run_pretrain
    from eee_ray.config import MlflowConfig

    env = {"env_vars": {"OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", "RAY_TRAIN_V2_ENABLED": "1"}}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": OBJECT_STORE,
                                                            "include_dashboard": False})
    try:
        for _ in range(2):  # the workers are the "ingest" nodes of cluster.yaml: the ingest must stay off the head
            cluster.add_node(num_cpus=1, resources={"ingest": 1}, object_store_memory=OBJECT_STORE)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, runtime_env=env, log_to_driver=False)
        out = Path(out_dir)
        summary = run_ingest(IngestConfig(input=echo_dir, output=str(out / "ingest"), limit=limit))
        ingest_nodes = actor_nodes("IngestWorker")
        metrics = run_pretrain(PretrainConfig(clips=str(out / "ingest"), output=str(out / "pretrain"), epochs=1,
                                              workers=2, cpus_per_worker=TRAIN_CPUS, batch_size=4,
                                              pairs=PairsConfig(image_size=32), mlflow=MlflowConfig(dir=str(out))))
        losses = {k: v for k, v in metrics.items() if k.startswith("loss_")}
        return {"nodes": len([n for n in ray.nodes() if n["Alive"]]), "ingest_total": summary.total,
                "head_node": ray.get_runtime_context().get_node_id(),
                "ingest_nodes": ingest_nodes, "train_nodes": actor_nodes("RayTrainWorker"),
                "epochs": metrics["epochs"], "losses": losses,
                "finite": all(math.isfinite(v) for v in losses.values())}
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))), flush=True)
