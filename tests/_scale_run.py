"""Pretraining and the benchmark on the local Ray a user gets (``init_ray``: bound to loopback), with a capped object
store, measured. ``measure`` runs on the Ray this process is connected to: tests/test_local_ray.py calls it on the
test session's own (80 MB store). As a script it starts that Ray itself and prints one JSON line of measurements
(benchmarks/scale.py runs it once per size, each on a Ray of its own):

    python tests/_scale_run.py WORKDIR --clips N --records M [--object-store-mb 80] [--marker RAY_TMPDIR]

Writes its own data first: ``N`` clips of random 224 px pixels in the ingest's ``clips/`` schema (3 MB each, 2 clips
a patient) and a PTB-XL-shaped tree of ``M`` 12-lead 10 s records at 500 Hz. Then runs one epoch of pretraining
(tiny preset, two workers that meet through gloo) and a one-trial benchmark (tiny xresnet1d50, lead II, one epoch),
sampling the driver's RSS and the object store every 0.2 s and, with a marker (the Ray's temp or session folder),
the listening sockets of every process of that Ray every second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

CLIP_FRAMES, CLIP_SIZE, FRAME_MS = 60, 224, 50.0  # 3 s of cine, 3 MB of pixels a clip


def write_clips(root: Path, n: int, seed: int = 0, per_part: int = 8) -> int:
    """``n`` clips in ``root/clips/part-*.parquet``; returns their pixel bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from eee_ray.ingest.schema import clips_schema, echo_column

    rng = np.random.default_rng(seed)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    schema = clips_schema("tensor")
    n_ecg = int(CLIP_FRAMES * FRAME_MS / 10)
    for start in range(0, n, per_part):
        ids = list(range(start, min(n, start + per_part)))
        echo = [rng.integers(0, 255, (CLIP_FRAMES, CLIP_SIZE, CLIP_SIZE), dtype=np.uint8) for _ in ids]
        ecg = [np.sin(np.linspace(0, 20, n_ecg) + i).astype(np.float32) + rng.normal(0, .1, n_ecg).astype(np.float32)
               for i in ids]
        cols = {"path": [f"p{i // 2}/s{i}/{i}.dcm" for i in ids], "subject_id": [10_000 + i // 2 for i in ids],
                "study_id": [50_000 + i for i in ids], "n_frames": [CLIP_FRAMES] * len(ids),
                "frame_time_ms": [FRAME_MS] * len(ids), "echo": echo_column(echo), "ecg_px": ecg, "ecg": ecg,
                "trace_x0": [0] * len(ids), "trace_x1": [n_ecg] * len(ids), "trace_mode": ["paper"] * len(ids),
                "coverage": [1.0] * len(ids), "edge_columns": [0] * len(ids), "max_gap_px": [0] * len(ids),
                "max_jump_px": [1] * len(ids), "outlier_fraction": [0.0] * len(ids)}
        table = pa.table({f.name: (cols[f.name] if isinstance(cols[f.name], pa.Array)
                                   else pa.array(cols[f.name], f.type)) for f in schema}, schema=schema)
        pq.write_table(table, root / "clips" / f"part-{start:08d}.parquet")
    return n * CLIP_FRAMES * CLIP_SIZE * CLIP_SIZE


def write_ptbxl(root: Path, n: int, seed: int = 0) -> int:
    """A PTB-XL-shaped tree of ``n`` records (one a patient, strat_fold by id); returns the signal files' bytes.
    Written by the synthetic set's WFDB writer (byte-identical to ``wfdb.wrsamp``, ~100 x faster)."""
    import datetime as dt

    import pandas as pd

    from eee_ray.ecgdata.records import CANONICAL_LEADS
    from eee_ray.synth.ecg_records import write_record

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"": ["NORM", "IMI"], "diagnostic": [1, 1], "diagnostic_class": ["NORM", "MI"]}).to_csv(
        root / "scp_statements.csv", index=False)
    rows, t = [], np.arange(5000) / 500.0
    when = dt.datetime(2000, 1, 1)
    for i in range(1, n + 1):
        rel = f"records500/{i // 1000 * 1000:05d}/{i:05d}_hr"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        mi = rng.random() < 0.4
        sig = (np.sin(2 * np.pi * (1.0 + 0.3 * mi) * t)[:, None] * rng.uniform(0.5, 1.5, 12)[None, :]
               + rng.normal(0, 0.05, (5000, 12)))
        write_record(root, rel, sig, when, leads=[s.upper() for s in CANONICAL_LEADS])
        rows.append({"ecg_id": i, "patient_id": 1_000 + i, "scp_codes": str({"IMI" if mi else "NORM": 100.0}),
                     "strat_fold": 1 + i % 10, "filename_lr": rel.replace("500", "100").replace("_hr", "_lr"),
                     "filename_hr": rel})
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    return sum(f.stat().st_size for f in (root / "records500").rglob("*.dat"))


def rss() -> int:
    """This process's resident set size in bytes (Linux /proc; psutil is not a dependency)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Monitor:
    """Peaks of this process's RSS and of the object store, sampled on a thread; with a ``marker`` (the Ray temp
    dir), every listening socket of that Ray's processes seen (sampled every ``LISTEN_EVERY`` samples)."""

    LISTEN_EVERY = 5

    def __init__(self, period: float = 0.2, marker: str | None = None) -> None:
        self.period, self.marker = period, marker
        self.peak_rss = self.peak_store = 0
        self.listeners: dict[tuple, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from _platform_helpers import listeners
        from eee_ray.ray_internals import object_store_stats

        n = 0
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, rss())
            try:
                self.peak_store = max(self.peak_store, object_store_stats()["used"])
            except Exception:  # noqa: BLE001 - a sample missed while Ray is busy is no measurement error
                pass
            if self.marker and n % self.LISTEN_EVERY == 0:
                for row in listeners(os.getpid(), self.marker):
                    self.listeners[(row["process"], row["proto"], row["ip"], row["port"])] = row
            n += 1
            self._stop.wait(self.period)

    def __enter__(self) -> "Monitor":
        self.peak_rss = rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def measure(work: Path, clips: int, records: int, marker: str | None = None) -> dict:
    """Write the data (``clips`` clips, ``records`` records) under ``work``, then run one epoch of pretraining and a
    one-trial benchmark on the Ray this process is connected to, measuring as the module says. The spilled bytes are
    those of these two runs (the store's counter before and after)."""
    (work / "ingest").mkdir(parents=True, exist_ok=True)
    (work / "ptbxl").mkdir(parents=True, exist_ok=True)
    clip_bytes = write_clips(work / "ingest", clips)
    record_bytes = write_ptbxl(work / "ptbxl", records)

    import ray

    from eee_ray.downstream import BenchmarkConfig, run_benchmark
    from eee_ray.pairs import PairsConfig
    from eee_ray.pretrain import PretrainConfig, run_pretrain
    from eee_ray.ray_internals import object_store_stats

    task = ray.get([ray.remote(lambda x: x + 1).remote(i) for i in range(4)])
    out = {"clips": clips, "records": records, "clip_mb": clip_bytes / 2**20, "record_mb": record_bytes / 2**20,
           "object_store_mb": ray.cluster_resources().get("object_store_memory", 0) / 2**20}
    spilled_before = object_store_stats()["spilled"]
    out["driver_rss_start_mb"] = rss() / 2**20

    listening: dict[tuple, dict] = {}
    with Monitor(marker=marker) as m:
        t = time.perf_counter()
        metrics = run_pretrain(PretrainConfig(clips=str(work / "ingest"), output=str(work / "pretrain"), epochs=1,
                                              workers=2, cpus_per_worker=0.5, batch_size=4, preset="tiny",
                                              retrieval_max_clips=16,
                                              pairs=PairsConfig(image_size=32, max_tokens=4),
                                              pairs_store="disk"))  # what a set beyond keep_pairs_mb gets
        out["pretrain_s"] = time.perf_counter() - t
    listening.update(m.listeners)
    out.update(pretrain_train_clips=metrics["train_clips"], pairs_store=metrics["pairs_store"],
               pretrain_peak_rss_mb=m.peak_rss / 2**20, pretrain_peak_store_mb=m.peak_store / 2**20,
               spilled_after_pretrain_mb=(object_store_stats()["spilled"] - spilled_before) / 2**20)

    with Monitor(marker=marker) as m:
        t = time.perf_counter()
        results = run_benchmark(BenchmarkConfig(
            dataset="ptbxl", data=str(work / "ptbxl"), output=str(work / "bench"), ptbxl_sample_rate=500,
            ptbxl_labels=["NORM", "MI"], models=["xresnet1d50"], leads=["II"], preset="tiny", epochs=1,
            crops_per_record=1, n_bootstrap=10, max_concurrent=1, batch_size=64))
        out["benchmark_s"] = time.perf_counter() - t
    listening.update(m.listeners)
    summary = json.loads((work / "bench" / "summary.json").read_text())
    out.update(task=task, listeners=list(listening.values()),
               benchmark_trials=len(results), benchmark_records=summary["records"],
               benchmark_peak_rss_mb=m.peak_rss / 2**20, benchmark_peak_store_mb=m.peak_store / 2**20,
               spilled_mb=(object_store_stats()["spilled"] - spilled_before) / 2**20)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir")
    ap.add_argument("--clips", type=int, required=True)
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--object-store-mb", type=int, default=80)
    ap.add_argument("--marker", default=None, help="the Ray temp dir: record the listening sockets of its processes")
    args = ap.parse_args()

    import logging

    import ray

    from eee_ray.runtime import init_ray

    logging.basicConfig(level=logging.WARNING)
    init_ray(num_cpus=2, object_store_mb=args.object_store_mb)
    ray.data.DataContext.get_current().enable_progress_bars = False
    print("SCALE " + json.dumps(measure(Path(args.workdir), args.clips, args.records, args.marker)), flush=True)


if __name__ == "__main__":
    main()
    # no graceful stop of this Ray (about 4 s): the caller kills every process of its temp dir (benchmarks/scale.py)
    os._exit(0)
