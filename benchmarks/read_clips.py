"""Reading the ingest output back: Ray Data's Parquet datasource V1 (what ``eee_ray.io.read_parquet`` uses) against
Ray 2.60's default DataSourceV2, on the same ``clips/`` folder, in one local Ray, alternating, best of ``--rounds``.

Two reads per datasource: one column (``subject_id``: listing and per-file overhead) and every column (the echo
pixels too). Usage:
    python benchmarks/read_clips.py INGEST_DIR [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ray
from ray.data import DataContext


def timed_read(files: list[str], columns: list[str] | None, v2: bool) -> tuple[float, int]:
    ctx = DataContext.get_current()
    ctx.use_datasource_v2 = v2
    t = time.perf_counter()
    ds = ray.data.read_parquet(files)
    ds = (ds.select_columns(columns) if columns else ds).materialize()
    return time.perf_counter() - t, ds.count()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ingest", help="an ingest output folder (holding clips/)")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    files = sorted(str(f) for f in (Path(a.ingest) / "clips").glob("part-*.parquet"))
    if not files:
        raise SystemExit(f"no clips/part-*.parquet under {a.ingest}")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    DataContext.get_current().enable_progress_bars = False
    rows = []
    for label, columns in (("subject_id only", ["subject_id"]), ("all columns", None)):
        best = {True: float("inf"), False: float("inf")}
        for _ in range(a.rounds):
            for v2 in (False, True):
                seconds, n = timed_read(files, columns, v2)
                best[v2] = min(best[v2], seconds)
        rows.append((label, n, best[False], best[True]))
    print(f"\n{len(files)} Parquet files in {a.ingest}/clips, best of {a.rounds}\n")
    print("| read | rows | V1 (s) | V2, Ray's default (s) | V2 / V1 |")
    print("|---|---|---|---|---|")
    for label, n, v1, v2 in rows:
        print(f"| {label} | {n} | {v1:.1f} | {v2:.1f} | {v2 / v1:.1f}x |")


if __name__ == "__main__":
    main()
