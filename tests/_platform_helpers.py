"""Helpers of the platform tests: separate Ray processes for tests that cannot share the session's in-process Ray
(docs/contract.md, Ray and MLflow facts), and manifest readers that show duplicates.

A head started with ``ray start --head`` in its own short temp dir, on free loopback ports, and ended by killing
exactly the processes of that temp dir (and their children), never with ``ray stop``, which would also stop the
test session's own Ray.
"""

from __future__ import annotations

import ipaddress
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
SESSION_STORE_MB = 80   # the test session's object store (conftest ``ray_session``; tests/test_local_ray.py)


def reasons(df, column: str = "reason") -> dict[str, str | None]:
    """``path -> reason`` of a manifest or truth frame, every missing value (None, NaN, NA) as None."""
    return {p: (r if isinstance(r, str) else None) for p, r in zip(df["path"], df[column])}


def raw_manifest(out: Path):
    """Every manifest row of every part, duplicates included (``read_manifest`` would hide them)."""
    import pyarrow.parquet as pq

    return pq.read_table(Path(out) / "manifest").to_pandas()


def start_store(folder: Path, template: Path) -> None:
    """Put an empty initialised MLflow store where a stage writing into ``folder/<output>`` looks for its default
    store (a copy of ``template``)."""
    import shutil

    if not (folder / "mlflow.db").exists():
        shutil.copy(template, folder / "mlflow.db")


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


def start_head(num_cpus: int = 1, object_store_mb: int = 200, temp_dir: str | None = None) -> Head:
    """``ray start --head`` on loopback with every port chosen free, in ``temp_dir`` (a fresh one if None); raises
    with Ray's output."""
    temp_dir = temp_dir or short_temp_dir("eee_head_")
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


# ---------------------------------------------------------------- listening sockets of a Ray's processes

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
