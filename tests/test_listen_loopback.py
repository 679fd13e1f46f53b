"""A local Ray started by ``init_ray`` listens on loopback only (no port reachable from the network).

The local Ray cannot live in the test process (it already holds the session's Ray), so this module runs itself as a
script in a subprocess with its own Ray temp dir: ``init_ray``, a Ray task, and a 2-worker ``TorchTrainer`` step with
gloo under ``train_backend.torch_config()`` (torch.distributed opens listeners of its own). The listening sockets of
every process of that Ray are read from /proc while the training step runs and again after it; whatever the run
leaves behind is killed by its temp dir.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from _platform_helpers import _proc_table, child_env, kill_processes_of, processes_of, short_temp_dir

pytestmark = pytest.mark.slow



def _decode(hex_addr: str, v6: bool) -> tuple[str, int]:
    ip, port = hex_addr.split(":")
    raw = bytes.fromhex(ip)
    if v6:
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        return socket.inet_ntop(socket.AF_INET6, raw), int(port, 16)
    return socket.inet_ntop(socket.AF_INET, raw[::-1]), int(port, 16)


def _listening_inodes() -> dict[int, tuple[str, str, int]]:
    """``socket inode -> (protocol, ip, port)`` of every listening TCP socket and every unconnected UDP socket."""
    found = {}
    for table, v6, proto, state in (("tcp", False, "tcp", "0A"), ("tcp6", True, "tcp", "0A"),
                                    ("udp", False, "udp", "07"), ("udp6", True, "udp", "07")):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == state:
                found[int(f[9])] = (proto, *_decode(f[1], v6))
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def listeners(driver: int, marker: str) -> list[dict]:
    """Every listener of the Ray started by ``driver`` (its processes: the driver and all of ``marker``'s)."""
    table = _proc_table()
    listening = _listening_inodes()
    rows = []
    for pid in sorted(processes_of(marker) | {driver}):
        cmd = table.get(pid, (0, []))[1]
        name = os.path.basename(cmd[0].split()[0]) if cmd and cmd[0].strip() else "?"
        for inode in _socket_inodes(pid):
            if inode in listening:
                proto, ip, port = listening[inode]
                rows.append({"pid": pid, "process": name, "proto": proto, "ip": ip, "port": port})
    return rows


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


def _train_step(cfg: dict) -> dict:
    """One gloo all-reduce; returns the listeners seen while the process group is up."""
    import torch
    import torch.distributed as dist

    t = torch.ones(1)
    dist.all_reduce(t)
    return {"sum": float(t), "backend": dist.get_backend(), "listeners": listeners(cfg["driver"], cfg["marker"])}


def _child(marker: str, storage: str) -> None:
    """The subprocess: start a local Ray through ``init_ray`` and exercise it; prints ``RESULT {json}``."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from eee_ray.runtime import init_ray
    from eee_ray.train_backend import torch_config

    init_ray(num_cpus=2)
    try:
        @ray.remote
        def add(x):
            return x + 1

        task = ray.get([add.remote(i) for i in range(4)])
        trainer = TorchTrainer(_train_step, train_loop_config={"driver": os.getpid(), "marker": marker},
                               scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
                               torch_config=torch_config(),
                               run_config=RunConfig(name="loopback", storage_path=storage))
        train = trainer.fit().return_value
        after = listeners(os.getpid(), marker)
    finally:
        ray.shutdown()
    print("RESULT " + json.dumps({"task": task, "train": train, "after": after}))


def test_local_ray_listens_on_loopback_only(tmp_path):
    ray_tmp = short_temp_dir("eee_lb_")
    env = child_env(RAY_TMPDIR=ray_tmp, RAY_TRAIN_V2_ENABLED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env["PYTHONPATH"]])  # Ray workers unpickle helpers
    try:
        res = subprocess.run([sys.executable, __file__, ray_tmp, str(tmp_path / "train")], env=env,
                             capture_output=True, text=True, timeout=300)
    finally:
        kill_processes_of(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    result = json.loads(next(line for line in res.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["task"] == [1, 2, 3, 4]
    train = result["train"]
    assert train["backend"] == "gloo" and train["sum"] == 2.0   # two ranks met (file rendezvous) and all-reduced

    seen = result["after"] + train["listeners"]
    # the check is not vacuous: Ray's own servers and the Train worker (core worker, gloo) were all found
    for expected in ("gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent", "ray::RayTrainWorker"):
        assert any(row["process"].startswith(expected) for row in seen), (expected, seen)
    # torch's TCPStore would bind every interface whatever address it is given: on a local Ray the process group
    # meets through a file instead (eee_ray.train_backend), so no exception is needed
    exposed = [row for row in seen if not is_loopback(row["ip"])]
    assert not exposed, f"listening on a non-loopback address: {exposed}"


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
