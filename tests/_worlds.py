"""Synthetic worlds of the slowest tests, rendered in the background early in the session.

Rendering a world is CPU work and nothing else: no Ray, no shared state, the same bytes whoever runs it (the
generator is seeded; tests/test_synth.py checks it). The suite leaves a core idle for much of its time (Ray start-ups,
health checks, processes that wait on each other), so a world that a later test needs is rendered by a child process
at the lowest priority (nice 19): it takes much of the CPU the suite leaves idle. The test then waits for what is left
of its world and goes on as before. The renders start once the session's own synthetic set (conftest ``synth_dir``)
is written, or at the session's start when no selected test uses it: beside a render that keeps both cores busy,
nice 19 is no shield (``start_after``).

A test opts in with ``pytest.mark.world(name, synth_kwargs)``; ``world(name)`` waits and returns the data set's
folder, ``<a temp folder named name>/synth``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

_WORLDS: dict[str, "_Render"] = {}
_PENDING = None   # start_all, held until the session's own world is rendered (start_after)
_CODE = ("import json, os, sys\n"
         "os.nice(19)\n"   # its render workers inherit it
         "from eee_ray.synth import SynthConfig, generate\n"
         "if __name__ == '__main__':\n"
         "    generate(sys.argv[1], SynthConfig(**json.loads(sys.argv[2])))\n")


class _Render:
    def __init__(self, out: Path, synth: dict, env: dict[str, str]) -> None:
        self.out = out
        self.log = tempfile.NamedTemporaryFile("w+", prefix="eee_world_", suffix=".log", delete=False)
        # its own process group: stop() kills its render workers with it
        self.proc = subprocess.Popen([sys.executable, "-c", _CODE, str(out), json.dumps(synth)], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float) -> Path:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise
        self.log.seek(0)
        if rc != 0:
            raise RuntimeError(f"rendering {self.out} failed ({rc}):\n{self.log.read()[-4000:]}")
        return self.out

    def stop(self) -> None:
        """Kill the render (an interrupted session) and its workers; drop the log."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def start_all(items, mktemp, env: dict[str, str]) -> None:
    """Start rendering the world of every ``world`` marker of the selected tests (once per name) into
    ``mktemp(name) / "synth"``."""
    for item in items:
        for mark in item.iter_markers("world"):
            name, synth = mark.args
            if name not in _WORLDS:
                _WORLDS[name] = _Render(mktemp(name) / "synth", synth, env)


def start_after(first) -> None:
    """Hold the start until ``started()`` is called (or a world is asked for): ``first`` renders on every core
    before any world does. Measured alone: the session's 12-patient world took 8.5-12 s to render, and 21-27 s beside
    the two background renders, nice 19 or not."""
    global _PENDING
    _PENDING = first


def started() -> None:
    """Start the held renders (no-op when none are held)."""
    global _PENDING
    first, _PENDING = _PENDING, None
    if first is not None:
        first()


def world(name: str, timeout: float = 1200) -> Path:
    """The folder of world ``name`` once it is rendered."""
    started()
    if name not in _WORLDS:
        raise LookupError(f"world {name!r} was not started: its test needs pytest.mark.world({name!r}, ...)")
    return _WORLDS[name].wait(timeout)


def stop_all() -> None:
    global _PENDING
    _PENDING = None
    while _WORLDS:
        _WORLDS.popitem()[1].stop()
