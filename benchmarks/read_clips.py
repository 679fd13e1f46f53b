"""Reading the ingest output back: ``eee_ray.io.read_parquet`` (Ray Data's Parquet datasource V1, read tasks capped at
4 per CPU) against V1 with Ray's default task count and against Ray 2.60's default DataSourceV2, on the same
``clips/`` folder, in one local Ray, alternating, best of ``--rounds``.

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

from eee_ray.io import read_parquet


WAYS = ("eee_ray.io.read_parquet", "V1, Ray's task count", "V2 (Ray's default)")


def timed_read(files: list[str], columns: list[str] | None, way: str) -> tuple[float, int]:
    t = time.perf_counter()
    if way == WAYS[0]:
        ds = read_parquet(files, columns)
    else:
        DataContext.get_current().use_datasource_v2 = way == WAYS[2]
        ds = ray.data.read_parquet(files)
        ds = ds.select_columns(columns) if columns else ds
    ds = ds.materialize()
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
        best = dict.fromkeys(WAYS, float("inf"))
        for _ in range(a.rounds):
            for way in WAYS:
                seconds, n = timed_read(files, columns, way)
                best[way] = min(best[way], seconds)
        rows.append((label, n, best))
    print(f"\n{len(files)} Parquet files in {a.ingest}/clips, best of {a.rounds}, seconds (ratio to the first)\n")
    print("| read | rows | " + " | ".join(WAYS) + " |")
    print("|---|---|" + "---|" * len(WAYS))
    for label, n, best in rows:
        base = best[WAYS[0]]
        print(f"| {label} | {n} | " + " | ".join(f"{best[w]:.1f} ({best[w] / base:.1f}x)" for w in WAYS) + " |")


if __name__ == "__main__":
    main()
