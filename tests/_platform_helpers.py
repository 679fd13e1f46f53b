"""Helpers of the platform tests: separate Ray processes for tests that cannot share the session's in-process Ray
(docs/contract.md, Ray and MLflow facts), and manifest readers that show duplicates.

A head started with ``ray start --head`` in its own short temp dir, on free loopback ports, and ended by killing
exactly the processes of that temp dir (and their children), never with ``ray stop``, which would also stop the
test session's own Ray.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def reasons(df, column: str = "reason") -> dict[str, str | None]:
    """``path -> reason`` of a manifest or truth frame, every missing value (None, NaN, NA) as None."""
    return {p: (r if isinstance(r, str) else None) for p, r in zip(df["path"], df[column])}


def raw_manifest(out: Path):
    """Every manifest row of every part, duplicates included (``read_manifest`` would hide them)."""
    import pyarrow.parquet as pq

    return pq.read_table(Path(out) / "manifest").to_pandas()


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def child_env(**extra: str) -> dict[str, str]:
    """The test environment for a child process: no inherited Ray address, token auth off, one thread per op."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_JOB_ID")}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep), **extra)
    return env


def short_temp_dir(prefix: str) -> str:
    """Ray puts unix sockets under its temp dir; paths over ~107 bytes break them, so stay directly under /tmp."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def _proc_table() -> dict[int, tuple[int, list[str]]]:
    """``pid -> (parent pid, command line)`` from /proc (Linux; psutil is not a dependency)."""
    table = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            cmd = (d / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, ValueError):
            continue
        table[int(d.name)] = (ppid, cmd)
    return table


def processes_of(marker: str) -> set[int]:
    """Every process whose command line mentions ``marker`` (a unique temp dir), plus all their descendants.

    Ray workers rename themselves (``ray::IDLE``) and lose their arguments, so descendants are collected from
    the raylet and GCS, which keep theirs.
    """
    table = _proc_table()
    found = {pid for pid, (_, cmd) in table.items() if pid != os.getpid() and any(marker in a for a in cmd)}
    grew = True
    while grew:
        kids = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= kids
        grew = bool(kids)
    return found


def _signal_all(pids: set[int], sig: int) -> set[int]:
    """Send ``sig``; returns the pids that still existed."""
    alive = set()
    for pid in pids:
        try:
            os.kill(pid, sig)
            alive.add(pid)
        except ProcessLookupError:
            pass
    return alive


def _alive(pids: set[int]) -> set[int]:
    table = _proc_table()
    return {p for p in pids if p in table and "zombie" not in (Path(f"/proc/{p}/status").read_text()
                                                              if Path(f"/proc/{p}/status").exists() else "zombie")}


def kill_processes_of(marker: str, timeout: float = 3.0) -> int:
    """SIGTERM, wait, then SIGKILL whatever of ``marker``'s processes is left; returns how many there were.

    The GCS server and the autoscaler monitor ignore SIGTERM for longer than 15 s; a test cluster holds nothing
    worth a graceful exit, so the grace period is short.
    """
    pids = processes_of(marker)
    alive = _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = _alive(alive)
    _signal_all(alive, signal.SIGKILL)
    return len(pids)


@dataclass
class Head:
    temp_dir: str
    gcs_address: str        # 127.0.0.1:PORT, for ray.init / RAY_ADDRESS
    dashboard_url: str      # http://127.0.0.1:PORT, for `ray job submit --address`


def start_head(num_cpus: int = 1, object_store_mb: int = 200) -> Head:
    """``ray start --head`` on loopback with every port chosen free, in a fresh temp dir; raises with Ray's output."""
    temp_dir = short_temp_dir("eee_head_")
    gcs, dash, client, agent, agent_grpc, metrics, env_agent, node_mgr, obj_mgr = free_ports(9)
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--node-ip-address", "127.0.0.1",
           "--port", str(gcs), "--temp-dir", temp_dir, "--num-cpus", str(num_cpus), "--num-gpus", "0",
           "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
           "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
           "--dashboard-agent-grpc-port", str(agent_grpc), "--metrics-export-port", str(metrics),
           "--runtime-env-agent-port", str(env_agent), "--node-manager-port", str(node_mgr),
           "--object-manager-port", str(obj_mgr), "--object-store-memory", str(object_store_mb * 1024 * 1024),
           "--disable-usage-stats"]
    res = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        kill_processes_of(temp_dir)
        raise RuntimeError(f"ray start failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    head = Head(temp_dir, f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}")
    wait_for_dashboard(head)
    return head


def wait_for_dashboard(head: Head, timeout: float = 60.0) -> None:
    """The job API answers only once the dashboard is up; poll it."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{head.dashboard_url}/api/version", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"dashboard at {head.dashboard_url} did not answer within {timeout:.0f} s")
        time.sleep(0.5)


def ingest_cmd(inp: Path, out: Path, limit: int) -> list[str]:
    return [sys.executable, "-m", "eee_ray.cli", "ingest", "--input", str(inp), "--output", str(out),
            "--limit", str(limit)]


def interrupt_ingest(inp: Path, out: Path, limit: int, env: dict[str, str], timeout: float = 180.0) -> tuple[int, str]:
    """Start ``eee-ray ingest`` and press Ctrl-C once its first manifest part is on disk.

    A real Ctrl-C: SIGINT to the whole process group (the driver and the local Ray it started). Returns the exit
    code and the output of the interrupted run.
    """
    proc = subprocess.Popen(ingest_cmd(inp, out, limit), env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    while not list((Path(out) / "manifest").glob("part-*.parquet")) and proc.poll() is None:
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise TimeoutError(f"no manifest part written within {timeout:.0f} s")
        time.sleep(0.05)
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    log, _ = proc.communicate(timeout=timeout)
    return proc.returncode, log

