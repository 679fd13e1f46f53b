"""Render the MLflow UI pages a user opens first over a store of eee_ray runs, check what they show, and save
screenshots (docs/img/mlflow_*.png).

Starts ``mlflow ui`` on a free loopback port over the store's sqlite database, opens each page in headless Chromium
(Debian's ``chromium`` package), reads the rendered DOM (``--dump-dom`` after the single-page app has loaded, bounded
by ``--virtual-time-budget``) and checks that the expected text is there:

- the experiments list: the stage experiments;
- the benchmark experiment: it opens on the runs table (not the GenAI traces overview), with the benchmark's parent
  run as the one row its trials are nested under;
- one trial's page: its parent run, its datasets, its registered model and its headline metric;
- the registered model ``eee-ecg-<leads>``: its version.

Usage: ``python benchmarks/mlflow_ui_screens.py --store WORKDIR [--out docs/img]`` where WORKDIR holds mlflow.db
(e.g. the folder of a ``eee-ray demo`` or of a benchmark's output). Prints one line per page; exits 1 when a check
fails.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
from eee_ray.runtime import UI_VIEW  # the model-training view: MLflow 3.17 opens on GenAI traces otherwise
from eee_ray.serving import REGISTRY_PREFIX

RENDER_BUDGET_MS = 20000  # virtual time Chromium gives the app to fetch and render before the DOM/screenshot is taken
SERVER_START_S = 300  # `mlflow ui` answers /health after 5-10 s on an idle 2-core machine, up to ~2 min on a loaded one


@dataclass
class Page:
    name: str  # screenshot file stem
    route: str  # the app's hash route
    expect: list[str] = field(default_factory=list)  # text that must appear in the rendered DOM
    refuse: list[str] = field(default_factory=list)  # text that must not appear
    height: int = 950  # browser window height (px) of the screenshot


def find_chromium() -> str | None:
    return next((p for n in CHROMIUM_NAMES if (p := shutil.which(n))), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_ui(tracking_uri: str, port: int):
    """``mlflow ui`` bound to loopback, stopped (its process group) on exit. Without MLflow's job runner: the pages
    need none, and it starts a pool of consumer processes (about 15 CPU-seconds on 2 cores)."""
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + SERVER_START_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.seek(0)
                raise RuntimeError(f"mlflow ui did not start: {log.read()[-2000:]}")
            time.sleep(1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        os.unlink(log.name)


def render(chromium: str, url: str, png: Path | None, width: int = 1500, height: int = 950) -> str:
    """The DOM of ``url`` after the app rendered; with ``png``, also a screenshot of the same page."""
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
            f"--window-size={width},{height}", f"--virtual-time-budget={RENDER_BUDGET_MS}", "--lang=en-US"]
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([*base, f"--user-data-dir={profile}", "--dump-dom", url], capture_output=True,
                             text=True, timeout=180).stdout
    if png is not None:
        png.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([*base, f"--user-data-dir={profile}", f"--screenshot={png}", url], capture_output=True,
                           timeout=180, check=True)
    return dom


def pages_for(tracking_uri: str) -> list[Page]:
    """The pages to open, from what the store holds (the newest benchmark, its best trial, its registered model)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
    exps = {e.name: e for e in client.search_experiments()}
    bench = exps.get("eee-benchmark")
    if bench is None:
        raise SystemExit(f"no eee-benchmark experiment in {tracking_uri}")
    parents = client.search_runs([bench.experiment_id], "tags.kind = 'benchmark'", order_by=["start_time DESC"],
                                 max_results=1)
    if not parents:
        raise SystemExit("no benchmark parent run in the eee-benchmark experiment")
    parent = parents[0]
    trials = client.search_runs([bench.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}' and "
                                                       "tags.kind = 'trial'", order_by=["metrics.test_macro_auroc DESC"])
    registered = sorted(m.name for m in client.search_registered_models(f"name LIKE '{REGISTRY_PREFIX}%'"))
    # the trial shown: the one behind a registered version of this benchmark, else the best on test
    versions = [v for name in registered for v in client.search_model_versions(f"name = '{name}'")
                if v.run_id in {t.info.run_id for t in trials}]
    trial = next((t for t in trials if versions and t.info.run_id == versions[0].run_id), trials[0])
    shown_model = [versions[0].name] if versions else []
    names = [e for e in ("eee-ingest", "eee-pretrain", "eee-benchmark") if e in exps]
    pages = [
        Page("mlflow_experiments", "/experiments", expect=names),
        # the experiment opens on its runs table; the trials are nested: hidden under their parent's expander
        Page("mlflow_benchmark_runs", f"/experiments/{bench.experiment_id}",
             expect=[parent.info.run_name, "matching runs"],
             refuse=["Detect issues in your traces", "Token usage", *[t.info.run_name for t in trials]]),
        # one trial: its parent, datasets, tags, registered model and headline metric
        Page("mlflow_trial", f"/experiments/{bench.experiment_id}/runs/{trial.info.run_id}",
             expect=[trial.info.run_name, parent.info.run_name, "test_macro_auroc", f"{cfg_dataset(trial)}-train",
                     *shown_model], height=1700),
    ]
    if registered:
        pages.append(Page("mlflow_registered_model", f"/models/{registered[0]}", expect=[registered[0], "Version 1"]))
    return pages


def cfg_dataset(run) -> str:
    return run.data.tags.get("dataset", "synthetic")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="folder holding mlflow.db (and mlartifacts/)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "img"),
                   help="folder for the PNG screenshots (default docs/img)")
    p.add_argument("--no-screenshots", action="store_true", help="only check the rendered text")
    p.add_argument("--pages", default="", help="comma list of page names to render (default all: mlflow_experiments, "
                                               "mlflow_benchmark_runs, mlflow_trial, mlflow_registered_model)")
    args = p.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print("no chromium found (Debian: apt-get install -y chromium)", file=sys.stderr)
        return 2
    db = Path(args.store).resolve() / "mlflow.db"
    if not db.is_file():
        print(f"no mlflow.db in {args.store}", file=sys.stderr)
        return 2
    uri = f"sqlite:///{db}"
    failures = 0
    with mlflow_ui(uri, free_port()) as url:
        wanted = {n.strip() for n in args.pages.split(",") if n.strip()}
        for page in (p for p in pages_for(uri) if not wanted or p.name in wanted):
            png = None if args.no_screenshots else Path(args.out) / f"{page.name}.png"
            dom = render(chromium, f"{url}/#{page.route}?{UI_VIEW}", png, height=page.height)
            missing = [t for t in page.expect if t not in dom]
            present = [t for t in page.refuse if t.lower() in dom.lower()]
            ok = not missing and not present
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {page.name:26s} #{page.route}"
                  + (f"  missing: {missing}" if missing else "") + (f"  unexpected: {present}" if present else "")
                  + (f"  -> {png}" if png else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
