"""Background work of the slowest tests, started early in the session: synthetic worlds and whole subprocess runs.

Rendering a world is CPU work and nothing else: no Ray, no shared state, the same bytes whoever runs it (the
generator is seeded; tests/test_synth.py checks it). The suite leaves a core idle for much of its time (Ray start-ups,
health checks, processes that wait on each other), so a world that a later test needs is rendered by a child process
at the lowest priority (nice 19): it takes much of the CPU the suite leaves idle. The test then waits for what is left
of its world and goes on as before. The renders start once the session's own synthetic set (conftest ``synth_dir``)
is written, or at the session's start when no selected test uses it: beside a render that keeps both cores busy,
nice 19 is no shield (``start_after``).

A test opts in with ``pytest.mark.world(name, synth_kwargs)``; ``world(name)`` waits and returns the data set's
folder, ``<a temp folder named name>/synth``.

A test module whose checks share one run with a Ray of its own (the simulated cluster, a `ray start` head for
``ray job submit``, the local Ray of an interrupted ingest) opts in with ``pytest.mark.background(name, starter,
phase=...)``: ``starter(synth_dir, mktemp, store)`` starts the run and returns its ``Job``; conftest runs the quick
tests first and the tests of background runs last, and ``background(name)`` gives the test its ``Job``.

- phase "session": beside the quick tests, as soon as the worlds start. The quick tests are mostly single-threaded:
  a run beside them uses the other core.
- phase "slow": from the first slow test on, one run at a time, each once the one before has ended. The slow tests
  leave about half a core idle; two Rays at once beside them would take more than that.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

_WORLDS: dict[str, "_Render"] = {}
_RUNS: dict[str, Job] = {}   # background runs, started
_LATER: list[tuple[str, functools.partial]] = []   # runs of phase "slow", not started yet, in order
_LOCK = threading.Lock()   # guards _RUNS and _LATER (the slow lane starts runs from its own thread)
_LANE: threading.Thread | None = None   # the slow lane, once started
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


class Job:
    """A whole run in a child process with its own Ray (temp dir ``ray_tmp``), started early; its test waits for it
    and reads what it wrote in ``workdir``. Whatever of that Ray is left when it ends (or the session stops) is killed
    by its temp dir."""

    def __init__(self, argv: list[str], env: dict[str, str], ray_tmp: str, workdir: Path) -> None:
        self.ray_tmp, self.workdir = ray_tmp, workdir
        self._out = tempfile.TemporaryFile("w+")
        self._err = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._out, stderr=self._err, text=True,
                                     start_new_session=True)

    def wait(self, timeout: float) -> subprocess.CompletedProcess:
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            self.stop()
        self._out.seek(0)
        self._err.seek(0)
        return subprocess.CompletedProcess(self.proc.args, rc, self._out.read(), self._err.read())

    def result(self, prefix: str, timeout: float) -> dict:
        """Wait for the run and return its one ``PREFIX {json}`` line; a failed run fails the test with its output."""
        res = self.wait(timeout)
        line = next((x for x in res.stdout.splitlines() if x.startswith(prefix + " ")), None)
        assert res.returncode == 0 and line is not None, res.stdout[-4000:] + res.stderr[-4000:]
        return json.loads(line[len(prefix) + 1:])

    def stop(self) -> None:
        from _platform_helpers import kill_processes_of

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        kill_processes_of(self.ray_tmp)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


def start_all(items, mktemp, env: dict[str, str], synth_dir: Path | None = None, store: Path | None = None) -> None:
    """Start rendering the world of every ``world`` marker of the selected tests (once per name) into
    ``mktemp(name) / "synth"``, and every ``background`` run of phase "session" (``starter(synth_dir, mktemp,
    store)``); those of phase "slow" wait for ``slow_phase()``."""
    for item in items:
        for mark in item.iter_markers("world"):
            name, synth = mark.args
            if name not in _WORLDS:
                _WORLDS[name] = _Render(mktemp(name) / "synth", synth, env)
        for mark in item.iter_markers("background"):
            name, starter = mark.args
            phase = mark.kwargs.get("phase", "session")
            if phase not in ("session", "slow"):
                raise ValueError(f"background run {name!r}: phase must be 'session' or 'slow', not {phase!r}")
            with _LOCK:
                if name in _RUNS or any(name == queued for queued, _ in _LATER):
                    continue
                if phase == "session":
                    _RUNS[name] = starter(synth_dir, mktemp, store)
                else:
                    _LATER.append((name, functools.partial(starter, synth_dir, mktemp, store)))


def slow_phase() -> None:
    """The first slow test starts: the runs of phase "slow" start, one after another, on a thread (once)."""
    global _LANE
    started()
    with _LOCK:
        if _LANE is None and _LATER:
            _LANE = threading.Thread(target=_slow_lane, name="background-slow-lane", daemon=True)
            _LANE.start()


def _slow_lane() -> None:
    while True:
        with _LOCK:
            if not _LATER:
                return
            name, start = _LATER.pop(0)
            job = _RUNS[name] = start()
        while job.proc.poll() is None:
            time.sleep(0.5)
        job.stop()   # what its Ray left behind (a `ray start` head outlives the run) goes now, not at its test


def background(name: str) -> Job | None:
    """The ``Job`` of background run ``name`` (None if it was not selected)."""
    started()
    with _LOCK:
        for i, (queued, start) in enumerate(_LATER):
            if queued == name:   # its test comes before the lane reached it: start it now
                del _LATER[i]
                _RUNS[name] = start()
                break
        return _RUNS.get(name)


def result(name: str, starter, prefix: str, timeout: float, synth_dir: Path, mktemp, store: Path) -> tuple[dict, Path]:
    """The ``PREFIX {json}`` result of background run ``name`` and its work folder; the run starts here when the
    session did not start it (``starter(synth_dir, mktemp, store)``)."""
    job = background(name) or starter(synth_dir, mktemp, store)
    return job.result(prefix, timeout), job.workdir


def start_after(first) -> None:
    """Hold the start until ``started()`` is called (or a world is asked for): ``first`` renders on every core
    before any world does. Measured alone: the session's 12-patient world took 8.5-12 s to render, and 21-27 s beside
    the two background renders, nice 19 or not."""
    global _PENDING
    _PENDING = first


def started(synth_dir: Path | None = None) -> None:
    """Start the held renders (no-op when none are held)."""
    global _PENDING
    first, _PENDING = _PENDING, None
    if first is not None:
        first(synth_dir=synth_dir)


def world(name: str, timeout: float = 1200) -> Path:
    """The folder of world ``name`` once it is rendered."""
    started()
    if name not in _WORLDS:
        raise LookupError(f"world {name!r} was not started: its test needs pytest.mark.world({name!r}, ...)")
    return _WORLDS[name].wait(timeout)


def stop_all() -> None:
    global _PENDING
    _PENDING = None
    with _LOCK:
        _LATER.clear()
    while _WORLDS:
        _WORLDS.popitem()[1].stop()
    with _LOCK:
        while _RUNS:
            _RUNS.popitem()[1].stop()
