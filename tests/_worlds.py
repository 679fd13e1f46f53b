"""Synthetic worlds of the slowest tests, rendered and ingested in the background from the session's start.

Rendering a world and ingesting it is CPU work whose result does not depend on when or where it runs (the generator
is seeded, tests/test_synth.py checks it; the ingest of a file depends on that file alone). The suite leaves a core
idle for much of its time (Ray start-ups, health checks, processes that wait on each other), so a world that a later
test needs is made by a child process at the lowest priority (nice 19, inherited by its render workers and its own
local Ray) from the session's first test on: it takes the CPU the suite leaves idle and yields it as soon as a test
wants it. The test then waits for its world (no longer than making it would have taken) and goes on as before.

A module opts in with ``pytest.mark.world(name, synth_kwargs, ingest_kwargs)``; ``world(name)`` waits and returns
the world's folder: ``synth/`` (the data set) and ``ingest/`` (its real ingest).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _platform_helpers import child_env, kill_processes_of, short_temp_dir

_WORLDS: dict[str, "_Make"] = {}
_CODE = """
import json, os, sys
os.nice(19)
if __name__ == "__main__":
    import ray
    from eee_ray.ingest import IngestConfig, run_ingest
    from eee_ray.runtime import init_ray
    from eee_ray.synth import SynthConfig, generate

    out, synth, ingest = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    generate(os.path.join(out, "synth"), SynthConfig(**synth))
    init_ray(num_cpus=2)
    run_ingest(IngestConfig(input=os.path.join(out, "synth", "echo"), output=os.path.join(out, "ingest"), **ingest))
    ray.shutdown()
"""


class _Make:
    def __init__(self, out: Path, synth: dict, ingest: dict) -> None:
        self.out = out
        self.ray_tmp = short_temp_dir("eee_world_")
        self.log = tempfile.NamedTemporaryFile("w+", prefix="eee_world_", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, "-c", _CODE, str(out), json.dumps(synth), json.dumps(ingest)],
                                     env=child_env(RAY_TMPDIR=self.ray_tmp), stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.rc: int | None = None

    def wait(self, timeout: float) -> Path:
        if self.rc is None:
            try:
                self.rc = self.proc.wait(timeout=timeout)
            finally:
                self.stop()
        if self.rc != 0:
            self.log.seek(0)
            raise RuntimeError(f"making the world {self.out} failed ({self.rc}):\n{self.log.read()[-4000:]}")
        return self.out

    def stop(self) -> None:
        """Kill the child if it still runs, and every process of its Ray."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        kill_processes_of(self.ray_tmp)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


def start_all(items, mktemp) -> None:
    """Start making the world of every ``world`` marker of the selected tests (once per name) in ``mktemp(name)``."""
    for item in items:
        for mark in item.iter_markers("world"):
            name, synth, ingest = mark.args
            if name not in _WORLDS:
                _WORLDS[name] = _Make(mktemp(name), synth, ingest)


def world(name: str, timeout: float = 1200) -> Path:
    """The folder of world ``name`` (``synth/``, ``ingest/``) once it is made."""
    if name not in _WORLDS:
        raise LookupError(f"world {name!r} was not started: its test needs pytest.mark.world({name!r}, ...)")
    return _WORLDS[name].wait(timeout)


def stop_all() -> None:
    while _WORLDS:
        w = _WORLDS.popitem()[1]
        w.stop()
        w.log.close()
        os.unlink(w.log.name)
