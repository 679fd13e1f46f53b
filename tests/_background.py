"""Subprocess runs that the suite starts at its first test and collects when their tests come.

The simulated cluster (``_cluster_run.py``) and the user's local Ray (``_scale_run.py``) each need a Ray of their own
in a child process, and spend much of their time waiting on Ray (node start-up, health checks, actor start-up), not
computing. Run in turn they kept one core idle for minutes; started at the first test, they run beside the
in-process tests. What they check is unchanged: each test reads its run's result exactly as before.

A test module asks for a run with ``pytest.mark.background(NAME, start)``, where ``start(request)`` returns a
started ``BackgroundRun``; conftest starts every run that a selected test asks for, once, and kills whatever is left
at the end of the session. ``run(NAME).result()`` waits for it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from _platform_helpers import child_env, kill_processes_of, short_temp_dir

_RUNS: dict[str, "BackgroundRun"] = {}


class BackgroundRun:
    """A child process with its own Ray temp dir (every process of that Ray is killed through it) and its output
    in files (a pipe nobody reads would block it)."""

    def __init__(self, argv: Callable[[str], list[str]], prefix: str, timeout: float) -> None:
        """``argv(ray_tmp)``: the command line, given the run's Ray temp dir."""
        self.ray_tmp = short_temp_dir(prefix)
        self.timeout = timeout
        self.log = Path(tempfile.mkdtemp(prefix=f"{prefix}log_"))
        self._out, self._err = open(self.log / "stdout", "w"), open(self.log / "stderr", "w")
        self.proc = subprocess.Popen(argv(self.ray_tmp), env=child_env(RAY_TMPDIR=self.ray_tmp), stdout=self._out,
                                     stderr=self._err, text=True)
        self._done: tuple[int, str, str] | None = None

    def result(self) -> tuple[int, str, str]:
        """``(returncode, stdout, stderr)`` once the run has ended (killed after ``timeout`` s from now)."""
        if self._done is None:
            try:
                rc = self.proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
            for f in (self._out, self._err):
                f.flush()
            self._done = (rc, (self.log / "stdout").read_text(), (self.log / "stderr").read_text())
            self.stop()
        return self._done

    def stop(self) -> None:
        """Kill the child (if still running) and every process of its Ray; remove its temp dirs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        kill_processes_of(self.ray_tmp)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
        for f in (self._out, self._err):
            f.close()
        shutil.rmtree(self.log, ignore_errors=True)


def start_all(request, items) -> None:
    """Start the run of every ``background`` marker of the selected tests (once per name)."""
    for item in items:
        for mark in item.iter_markers("background"):
            name, start = mark.args
            if name not in _RUNS:
                _RUNS[name] = start(request)


def run(name: str) -> BackgroundRun:
    if name not in _RUNS:
        raise LookupError(f"background run {name!r} was not started: its test module needs "
                          f"pytest.mark.background({name!r}, start)")
    return _RUNS[name]


def stop_all() -> None:
    while _RUNS:
        _, r = _RUNS.popitem()
        if r._done is None:
            r.stop()
