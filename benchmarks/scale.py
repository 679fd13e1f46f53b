"""Memory and time from N to 2N to 4N clips and records: pretraining (one epoch, through the on-disk pairs cache) and
the benchmark (one trial, prepared-signal store) on a local Ray with a capped object store, each size in a fresh
process.

    python benchmarks/scale.py [--clips 16] [--records 200] [--object-store-mb 80] [--sizes 1,2,4]

Prints a Markdown table: peak driver RSS (and its growth over the driver's start) per stage, peak object-store use,
spilled bytes, and wall time of each one-epoch stage, with ratios against N measured in the same run. The data are
written by ``tests/_scale_run.py`` (random 224 px clips of 3 MB, 12-lead 10 s records at 500 Hz).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(n_clips: int, n_records: int, store_mb: int) -> dict:
    work = tempfile.mkdtemp(prefix="eee_scale_")
    ray_tmp = tempfile.mkdtemp(prefix="eee_sr_", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_JOB_ID")}
    env.update(RAY_TMPDIR=ray_tmp, RAY_AUTH_MODE="disabled", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    sys.path.insert(0, str(REPO / "tests"))
    from _platform_helpers import kill_processes_of

    try:
        res = subprocess.run([sys.executable, str(REPO / "tests" / "_scale_run.py"), work, "--clips", str(n_clips),
                              "--records", str(n_records), "--object-store-mb", str(store_mb)],
                             env=env, capture_output=True, text=True)
    finally:
        kill_processes_of(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    if res.returncode != 0:
        raise SystemExit(f"N={n_clips}/{n_records} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return json.loads(next(line for line in res.stdout.splitlines() if line.startswith("SCALE "))[6:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--object-store-mb", type=int, default=80)
    ap.add_argument("--sizes", default="1,2,4")
    args = ap.parse_args()
    rows = []
    for k in (int(s) for s in args.sizes.split(",")):
        m = run(k * args.clips, k * args.records, args.object_store_mb)
        rows.append((k, m))
        print(f"{k}N done: {json.dumps(m)}", file=sys.stderr, flush=True)

    base = rows[0][1]
    print(f"\nobject store capped at {args.object_store_mb} MB, 2 CPUs; N = {args.clips} clips + {args.records} "
          "records\n")
    print("| size | clips | records | data MB | driver RSS pretrain MB | driver RSS benchmark MB | ratio | "
          "peak object store MB | spilled MB | pretrain s (1 epoch) | benchmark s (1 trial, 1 epoch) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for k, m in rows:
        peak = max(m["pretrain_peak_rss_mb"], m["benchmark_peak_rss_mb"])
        base_peak = max(base["pretrain_peak_rss_mb"], base["benchmark_peak_rss_mb"])
        print(f"| {k}N | {m['clips']} | {m['records']} | {m['clip_mb'] + m['record_mb']:.0f} | "
              f"{m['pretrain_peak_rss_mb']:.0f} | {m['benchmark_peak_rss_mb']:.0f} | {peak / base_peak:.2f} | "
              f"{max(m['pretrain_peak_store_mb'], m['benchmark_peak_store_mb']):.0f} | {m['spilled_mb']:.1f} | "
              f"{m['pretrain_s']:.0f} | {m['benchmark_s']:.0f} |")


if __name__ == "__main__":
    main()
