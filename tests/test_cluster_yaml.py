"""The cluster files pass the validation `ray up` runs (no cloud credentials needed) and route work as documented:
ingest resources only on CPU groups, GPUs only on the training group, an MLflow server started on the head."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
GPU_INSTANCE_PREFIXES = ("g4", "g5", "g6", "p3", "p4", "p5")


def _prepared(name: str) -> dict:
    raw = yaml.safe_load((REPO / name).read_text())
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    return prepared


def test_aws_cluster_validates_and_routes_work():
    cfg = _prepared("cluster.yaml")
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    workers = {n: t for n, t in types.items() if n != cfg["head_node_type"]}

    def has_gpu(t: dict) -> bool:
        return t["node_config"]["InstanceType"].startswith(GPU_INSTANCE_PREFIXES) or t["resources"].get("GPU", 0) > 0

    gpu_groups = [n for n, t in workers.items() if has_gpu(t)]
    ingest_groups = [n for n, t in types.items() if t["resources"].get("ingest", 0) > 0]
    assert len(gpu_groups) == 1 and ingest_groups, (gpu_groups, ingest_groups)
    assert not set(gpu_groups) & set(ingest_groups), "ingest must never be scheduled on a GPU node"
    assert all(not has_gpu(types[n]) for n in ingest_groups)
    assert not has_gpu(head) and head["resources"].get("CPU") == 0 and "ingest" not in head["resources"]
    for name, t in workers.items():  # autoscaling groups; GPU nodes start at zero (cost), one ingest node stays up
        assert t["max_workers"] > t["min_workers"], name   # so the `ingest` resource that routes actors is visible
        assert t["min_workers"] == (1 if name in ingest_groups else 0), name
    assert sum(t["max_workers"] for t in workers.values()) <= cfg["max_workers"]

    # GPU nodes get CUDA torch (no CPU index); CPU nodes the CPU wheels; every node installs the mounted project.
    gpu_setup = " ; ".join(types[gpu_groups[0]]["worker_setup_commands"])
    assert "whl/cpu" not in gpu_setup and "pip install -q torch" in gpu_setup
    for n in ingest_groups:
        assert "whl/cpu" in " ; ".join(types[n]["worker_setup_commands"])
    for commands in [cfg["head_setup_commands"]] + [t["worker_setup_commands"] for t in workers.values()]:
        joined = " ; ".join(commands)
        assert joined.index("torch") < joined.index("-e ~/eee_ray")
    assert cfg["file_mounts"] == {"~/eee_ray": "."}

    head_start = " ; ".join(cfg["head_start_ray_commands"])
    assert "mlflow server --host 0.0.0.0 --port 5000" in head_start
    assert "--artifacts-destination s3://" in head_start
    assert "MLFLOW_TRACKING_URI=http://$RAY_HEAD_IP:5000" in " ; ".join(cfg["worker_start_ray_commands"])


def test_onprem_cluster_validates_without_node_types():
    raw = yaml.safe_load((REPO / "cluster.local.yaml").read_text())
    assert raw["provider"]["type"] == "local" and "available_node_types" not in raw
    assert {"head_ip", "worker_ips"} <= set(raw["provider"])
    cfg = _prepared("cluster.local.yaml")
    assert "mlflow server" in " ; ".join(cfg["head_start_ray_commands"])


def test_validator_rejects_a_broken_file():
    """Guard that the check above can fail: a typo in a node type is refused by Ray's schema."""
    import jsonschema

    raw = yaml.safe_load((REPO / "cluster.yaml").read_text())
    raw["available_node_types"]["gpu_train"]["resorces"] = {"GPU": 1}
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(raw))
