"""Ingest throughput on the same generated files, in one run (issue 3, item 7).

(a) naive: pydicom ``pixel_array`` of all frames, colour conversion, resize (one process);
(b) decode-only: every frame through the fast decoder (libjpeg-turbo, DCT-downscaled grayscale), nothing else;
(c) the full ingest (``run_ingest``: header filter, decode, resize, ECG tracing, Parquet) on 1 and on 2 Ray CPUs,
    each in a fresh local Ray (Ray start-up excluded, actor start-up included), over ``--repeat`` symlinked replicas
    of the same files so that the actors' start-up is amortised as on a real data set;
(c-steady) the same runs without their fixed costs (Ray Data and actor start-up before the first batch, the MLflow
    run after the last: seconds that a 525,000-file run does not notice): the files in the manifest parts written
    after the first one, over the time from the first part to the last (parts' modification times). The ratios and
    the MIMIC projection use it.

Prints files/s and MB/s per core and the ratios against the targets, plus a projection for the full MIMIC-IV-ECHO
(525,422 files, 1.8 TB) on a 16-core node. Usage:
    python benchmarks/ingest_throughput.py [--patients 4] [--repeat 6] [--rows 708 --cols 1016] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

MIMIC_FILES, MIMIC_BYTES = 525_422, 1.8e12

FULL = """
import json, os, sys, time
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
import ray
from eee_ray.ingest import IngestConfig, run_ingest
n = int(sys.argv[1])
ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False)
t = time.perf_counter()
s = run_ingest(IngestConfig(input=sys.argv[2], output=sys.argv[3], num_cpus=n))
secs = time.perf_counter() - t
import pyarrow.parquet as pq
from pathlib import Path
parts = sorted((p.stat().st_mtime, pq.ParquetFile(p).metadata.num_rows)
               for p in Path(s.manifest_dir).glob("part-*.parquet"))
print(json.dumps({"seconds": secs, "processed": s.processed, "parts": parts}))
"""


def dicoms(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.dcm"))


def read(f: Path):
    """The dataset, or None for the synthetic set's non-DICOM defect (skipped by (a) and (b))."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(f)
    except InvalidDicomError:
        return None


def naive(files: list[Path], size: int = 224, roi: float = 0.3) -> int:
    frames = 0
    for f in files:
        ds = read(f)
        if ds is None or int(ds.get("NumberOfFrames", 1)) > 120:
            continue
        for rgb in ds.pixel_array:
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            cv2.resize(gray[: int(gray.shape[0] * (1 - roi))], (size, size), interpolation=cv2.INTER_AREA)
            frames += 1
    return frames


def decode_only(files: list[Path], size: int = 224, roi: float = 0.3) -> int:
    from eee_ray.ingest.decode import _REDUCED, jpeg_frames, reduction

    frames = 0
    for f in files:
        ds = read(f)
        n = int(ds.get("NumberOfFrames", 1)) if ds is not None else 0
        if ds is None or n > 120:
            continue
        flag = _REDUCED.get(reduction(int(ds.Rows), int(ds.Columns), roi, size, 0.9), cv2.IMREAD_GRAYSCALE)
        for buf in jpeg_frames(ds, n):
            cv2.imdecode(np.frombuffer(buf, np.uint8), flag)
            frames += 1
    return frames


def replicate(src: Path, dst: Path, files: list[Path], k: int) -> None:
    """k copies of the tree as per-file symlinks (real folders, so the walk sees each replica)."""
    for i in range(k):
        for f in files:
            link = dst / f"r{i}" / f.relative_to(src)
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(f)


def in_process(files: list[Path], out: Path) -> None:
    """The full ingest's per-file work (header, decode, resize, tracing, Parquet) without Ray: where (c) would be
    without Ray's scheduling and actor start-up."""
    from eee_ray.ingest import IngestConfig
    from eee_ray.ingest.discover import InputFile
    from eee_ray.ingest.pipeline import clips_table, write_table
    from eee_ray.ingest.process import process_file

    cfg = IngestConfig(input=str(out), output=str(out))
    for i in range(0, len(files), cfg.batch_files):
        outs = [process_file(InputFile(f.name, bytes(f)), cfg) for f in files[i:i + cfg.batch_files]]
        clips = [o.clip for o in outs if o.clip is not None]
        if clips:
            write_table(out / f"part-{i}.parquet", clips_table(clips))


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def full(n_cpus: int, inp: Path, out: Path) -> tuple[float, float]:
    """Seconds of one full ingest, and its steady-state seconds per file (between its first and last part)."""
    res = subprocess.run([sys.executable, "-c", FULL, str(n_cpus), str(inp), str(out)], capture_output=True,
                         text=True, check=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    (t0, _), (t1, _) = r["parts"][0], r["parts"][-1]
    return r["seconds"], (t1 - t0) / sum(rows for _, rows in r["parts"][1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=4, help="synthetic patients (about 5 cines each)")
    ap.add_argument("--rows", type=int, default=708, help="frame height (MIMIC-IV-ECHO cines: 708 x 1016)")
    ap.add_argument("--cols", type=int, default=1016)
    ap.add_argument("--repeat", type=int, default=6, help="replicas of the files for the full ingest runs")
    ap.add_argument("--workdir", default=None, help="keep the generated files here (default: a temp folder)")
    args = ap.parse_args()
    cv2.setNumThreads(1)  # one core per measurement, like one Ray actor
    from eee_ray.synth import SynthConfig, generate

    work = Path(args.workdir or tempfile.mkdtemp(prefix="eee_ingest_bench_"))
    data = work / "synth"
    if not (data / "echo").is_dir():
        generate(data, SynthConfig(seed=1, patients=args.patients, rows=args.rows, cols=args.cols), overwrite=True)
    files = dicoms(data / "echo")
    mb = sum(f.stat().st_size for f in files) / 1e6
    n = len(files)
    print(f"{n} files, {mb:.1f} MB, {args.rows}x{args.cols} frames; full ingest on {args.repeat} replicas",
          flush=True)
    replicate(data / "echo", work / "replicas", files, args.repeat)

    load_before = os.getloadavg()[0]
    rows = []
    t = timed(naive, files)
    rows.append(("(a) naive pydicom pixel_array + colour + resize", 1, t))
    t = timed(decode_only, files)
    rows.append(("(b) decode-only, fast decoder", 1, t))
    timed(in_process, files[:2], work / "warm")  # imports and first-call costs, as an actor's start-up
    t = timed(in_process, files, work / "in_process")
    rows.append(("(c0) full per-file work in one process, no Ray", 1, t))
    for cpus in (1, 2):
        out = work / f"out_{cpus}"
        if out.exists():
            shutil.rmtree(out)
        secs, per_file = full(cpus, work / "replicas", out)
        name = f"full ingest, {cpus} Ray CPU{'s' if cpus > 1 else ''}"
        rows.append((f"(c) {name}", cpus, secs / args.repeat))
        rows.append((f"(c-steady) {name}, start-up and MLflow excluded", cpus, per_file * n))

    print("\n(seconds per pass over the files; (c): the full ingest's total divided by --repeat)")
    print("| pipeline | cores | seconds | files/s | MB/s | files/s per core | MB/s per core |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    per_core = {}
    for name, cores, secs in rows:
        per_core[name.split()[0] + str(cores)] = mb / secs / cores
        print(f"| {name} | {cores} | {secs:.2f} | {n / secs:.2f} | {mb / secs:.1f} | {n / secs / cores:.2f} | "
              f"{mb / secs / cores:.1f} |")
    a, b, c0, e1, e2, c1, c2 = (per_core[k] for k in ("(a)1", "(b)1", "(c0)1", "(c)1", "(c)2", "(c-steady)1",
                                                          "(c-steady)2"))
    print("\n| ratio | measured | target |")
    print("|---|---:|---|")
    print(f"| full ingest per core / naive (steady) | {c1 / a:.1f}x | >= 10x |")
    print(f"| decode-only / full ingest (per core, steady) | {b / c1:.2f}x | <= 1.5x |")
    print(f"| decode-only / full ingest (per core, end to end over {args.repeat} replicas) | {b / e1:.2f}x | "
          "(diagnostic) |")
    print(f"| decode-only / full per-file work without Ray | {b / c0:.2f}x | (diagnostic) |")
    print(f"| full ingest 2 CPUs / 1 CPU (throughput, steady) | {2 * c2 / c1:.2f}x | >= 1.7x |")
    print(f"| full ingest 2 CPUs / 1 CPU (throughput, end to end) | {2 * e2 / e1:.2f}x | (diagnostic) |")
    print(f"\n1-minute load average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on "
          f"{os.cpu_count()} cores (a busy machine distorts the 2-CPU figure most)")
    eff = min(2 * c2 / c1 / 2, 1.0)
    for label, e in (("measured 2-CPU efficiency", eff), ("linear scaling", 1.0)):
        node = 16 * c1 * e
        hours = MIMIC_BYTES / (node * 1e6) / 3600
        print(f"Projection, full MIMIC-IV-ECHO ({MIMIC_FILES:,} files, 1.8 TB) on one 16-core node, {label}: "
              f"{c1:.1f} MB/s per core x 16 x {e:.2f} = {node:.0f} MB/s -> {hours:.1f} h "
              f"({MIMIC_FILES / (hours * 3600):.0f} files/s; disk/network permitting)")


if __name__ == "__main__":
    main()
