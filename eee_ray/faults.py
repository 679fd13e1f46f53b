"""Fault injection for tests and robustness benchmarks: the one place that reads ``EEE_RAY_FAULTS``.

Production configs carry no testing fields. A test sets ``EEE_RAY_FAULTS`` (``name=value`` pairs separated by ``;``)
before it starts a stage; the stage's driver reads the plan here and hands it to its Ray workers with their other
arguments (workers of an already running Ray do not see the driver's later environment changes). Faults:

- ``ingest_worker_crash=PATH``: one ingest actor dies hard once, mid-batch (``PATH`` remembers that it did).
- ``pretrain_worker_exit=EPOCH``: one Ray Train worker exits once at the start of ``EPOCH`` (a marker in the run's
  output folder remembers it).
- ``pretrain_hold=EPOCH:PATH``: the Ray Train workers stop at the start of ``EPOCH`` (after the previous epoch's
  checkpoint is committed), announce it with ``PATH.waiting``, and go on once ``PATH`` exists. A test takes a node
  away in that window (tests/test_cluster.py); a restarted group finds ``PATH`` and does not stop again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

ENV = "EEE_RAY_FAULTS"
KNOWN = ("ingest_worker_crash", "pretrain_worker_exit", "pretrain_hold")
HOLD_TIMEOUT_S = 600   # a hold nobody releases ends here, so that a broken test fails instead of hanging


def plan() -> dict[str, str]:
    """The faults asked for in ``EEE_RAY_FAULTS`` (empty in production)."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return {}
    out: dict[str, str] = {}
    for item in filter(None, (t.strip() for t in text.split(";"))):
        name, _, value = item.partition("=")
        if name not in KNOWN:
            raise ValueError(f"{ENV}: unknown fault {name!r}; known: {', '.join(KNOWN)}")
        out[name] = value
    return out


def crash_once(faults: dict[str, str], name: str = "ingest_worker_crash") -> None:
    """The first process to get here with ``name`` planned dies hard (no cleanup), and never again."""
    marker = faults.get(name)
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)


def hold(faults: dict[str, str], epoch: int) -> None:
    """``pretrain_hold``: wait at the start of the planned epoch until the test releases the run (once)."""
    at, _, path = faults.get("pretrain_hold", "").partition(":")
    if not path or epoch != int(at) or os.path.exists(path):
        return
    open(path + ".waiting", "w").close()
    deadline = time.monotonic() + HOLD_TIMEOUT_S
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)


@contextmanager
def injected(**faults: object) -> Iterator[None]:
    """Tests and benchmarks: ``with injected(ingest_worker_crash=path): run_ingest(...)``."""
    before = os.environ.get(ENV)
    os.environ[ENV] = ";".join(f"{k}={v}" for k, v in faults.items())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
