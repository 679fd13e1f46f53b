"""Ingest throughput on the same generated files, in one run.

(a) naive: pydicom ``pixel_array`` of all frames, colour conversion, resize (one process);
(b) decode-only: every frame through the fast decoder (libjpeg-turbo, DCT-downscaled grayscale), nothing else;
(c) the full ingest (``run_ingest``: header filter, decode, resize, ECG tracing, Parquet) on 1 and on 2 Ray CPUs,
    once per ``echo_storage`` (the default tensor type, and raw bytes),
    each in a fresh local Ray (Ray start-up excluded, worker start-up included), over ``--repeat`` symlinked replicas
    of the same files so that the workers' start-up is amortised as on a real data set;
(c-steady) the same runs without their fixed costs (Ray Data and worker start-up before the first batch, the MLflow
    run after the last: seconds that a 525,000-file run does not notice): the files in the manifest parts written
    after the first one, over the time from the first part to the last (parts' modification times). The ratios and
    the MIMIC projection use it.

(t) the ECG tracer alone on every file's first-frame strip, this tree's against the tracer at ``--baseline-ref``
    (loaded from git in this run), interleaved with the rounds and alternating ``--tracer-passes`` times in each,
    in wall-clock and CPU time (the CPU time is the steadier figure on a shared machine): what a change of the
    tracer costs per file.

Prints files/s and MB/s per core and the ratios against the targets, plus a projection for the full MIMIC-IV-ECHO
(525,422 files, 1.8 TB) on a 16-core node. Usage:
    python benchmarks/ingest_throughput.py [--patients 4] [--repeat 6] [--rounds 3] [--rows 708 --cols 1016]
        [--workdir DIR] [--baseline-ref REV] [--tracer-passes 5]
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

from eee_ray.ingest import trace
from trace_fidelity import load_baseline

MIMIC_FILES, MIMIC_BYTES = 525_422, 1.8e12
STORAGES = ("tensor", "bytes")  # IngestConfig.echo_storage

FULL = """
import json, os, sys, time
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
import ray
from eee_ray.ingest import IngestConfig, run_ingest
n = int(sys.argv[1])
ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False)
t = time.perf_counter()
s = run_ingest(IngestConfig(input=sys.argv[2], output=sys.argv[3], num_cpus=n, echo_storage=sys.argv[4]))
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
    """k copies of the tree as per-file hard links (real folders, so the walk sees each replica; symlinks would
    point outside the ingest's input, which it refuses), copies where the file system has no hard links."""
    for i in range(k):
        for f in files:
            link = dst / f"r{i}" / f.relative_to(src)
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink():
                link.unlink()
            if not link.exists():
                try:
                    os.link(f, link)
                except OSError:
                    shutil.copy2(f, link)


def in_process(files: list[Path], out: Path, echo_storage: str = "tensor") -> None:
    """The full ingest's per-file work (header, decode, resize, tracing, Parquet) without Ray: where (c) would be
    without Ray's scheduling and worker start-up."""
    from eee_ray.ingest import IngestConfig
    from eee_ray.ingest.discover import InputFile
    from eee_ray.ingest.pipeline import clips_table, write_table
    from eee_ray.ingest.process import process_file

    cfg = IngestConfig(input=str(out), output=str(out))
    for i in range(0, len(files), cfg.batch_files):
        outs = [process_file(InputFile(f.name, bytes(f)), cfg) for f in files[i:i + cfg.batch_files]]
        clips = [o.clip for o in outs if o.clip is not None]
        if clips:
            write_table(out / f"part-{i}.parquet", clips_table(clips, echo_storage))


def first_strips(files: list[Path]) -> list[np.ndarray]:
    """The ECG strip of every file's first frame (RGB), as the ingest cuts it."""
    from eee_ray.ingest.config import IngestConfig
    from eee_ray.ingest.discover import InputFile
    from eee_ray.ingest.process import echo_rows, process_file

    cfg = IngestConfig(input=str(files[0].parent), output=str(files[0].parent))
    out = []
    for f in files:
        o = process_file(InputFile(path=f.name, fs=os.fsencode(f)), cfg, keep=True)
        if o.decoded is not None:
            rgb = o.decoded.first_rgb
            out.append(rgb[echo_rows(rgb.shape[0], cfg.ecg_roi_fraction):])
    return out


def trace_all(tracer, strips: list[np.ndarray]) -> None:
    cfg = tracer.TraceConfig()
    for s in strips:
        tracer.trace_ecg(s.copy(), cfg, "paper")


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def full(n_cpus: int, inp: Path, out: Path, echo_storage: str = "tensor") -> tuple[float, float]:
    """Seconds of one full ingest, and its steady-state seconds per file (between its first and last part)."""
    res = subprocess.run([sys.executable, "-c", FULL, str(n_cpus), str(inp), str(out), echo_storage],
                         capture_output=True,
                         text=True, check=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    (t0, _), (t1, _) = r["parts"][0], r["parts"][-1]
    return r["seconds"], (t1 - t0) / sum(rows for _, rows in r["parts"][1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=4, help="synthetic patients (about 5 cines each)")
    ap.add_argument("--rows", type=int, default=708, help="frame height (MIMIC-IV-ECHO cines: 708 x 1016)")
    ap.add_argument("--cols", type=int, default=1016)
    ap.add_argument("--baseline-ref", default="6d02083", help="git revision of the tracer to compare with ('' for none)")
    ap.add_argument("--repeat", type=int, default=6, help="replicas of the files for the full ingest runs")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of (b), (c0), (c); medians")
    ap.add_argument("--tracer-passes", type=int, default=5, help="alternating passes of both tracers per round")
    ap.add_argument("--workdir", default=None, help="keep the generated files here (default: a temp folder)")
    args = ap.parse_args()
    cv2.setNumThreads(1)  # one core per measurement, like one Ray task
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

    strips = first_strips(files)
    baseline = load_baseline(args.baseline_ref) if args.baseline_ref else None
    load_before = os.getloadavg()[0]
    naive_s = timed(naive, files)
    timed(in_process, files[:2], work / "warm")  # imports and first-call costs, as a worker's start-up
    runs: dict[str, list[float]] = {}  # key -> seconds per pass, one per round
    labels: dict[str, tuple[str, int]] = {}

    def record(key: str, label: str, cores: int, secs: float) -> None:
        runs.setdefault(key, []).append(secs)
        labels[key] = (label, cores)

    # rounds interleave every configuration, so that a slow spell of a shared machine hits all of them alike
    for r in range(args.rounds):
        record("b", "(b) decode-only, fast decoder", 1, timed(decode_only, files))
        for st in STORAGES:
            record(f"c0 {st}", f"(c0) full per-file work in one process, no Ray, echo as {st}", 1,
                   timed(in_process, files, work / f"in_process_{st}", st))
        for st in STORAGES:
            for cpus in (1, 2):
                out = work / f"out_{st}_{cpus}"
                if out.exists():
                    shutil.rmtree(out)
                secs, per_file = full(cpus, work / "replicas", out, st)
                name = f"full ingest, echo as {st}, {cpus} Ray CPU{'s' if cpus > 1 else ''}"
                record(f"c {st} {cpus}", f"(c) {name}", cpus, secs / args.repeat)
                record(f"steady {st} {cpus}", f"(c-steady) {name}, start-up and MLflow excluded", cpus, per_file * n)
        for _ in range(args.tracer_passes):  # alternating passes: a burst of load hits both tracers alike
            for key, tracer in (("t", trace), ("t base", baseline)):
                if tracer is not None:
                    cpu = time.process_time()
                    record(key, key, 1, timed(trace_all, tracer, strips))
                    record(f"{key} cpu", key, 1, time.process_time() - cpu)
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    rows = [("a", "(a) naive pydicom pixel_array + colour + resize", 1, naive_s)]
    rows += [(k, *labels[k], float(np.median(v))) for k, v in runs.items() if not k.startswith("t")]

    print(f"\n(seconds per pass over the files, median of {args.rounds} interleaved rounds ((a): one pass); (c): the "
          "full ingest's total divided by --repeat)")
    print("| pipeline | cores | seconds | files/s | MB/s | files/s per core | MB/s per core |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    pc = {}
    for key, name, cores, secs in rows:
        pc[key] = mb / secs / cores
        print(f"| {name} | {cores} | {secs:.2f} | {n / secs:.2f} | {mb / secs:.1f} | {n / secs / cores:.2f} | "
              f"{mb / secs / cores:.1f} |")
    print("\n| ratio | echo as tensor (default) | echo as bytes | target |")
    print("|---|---:|---:|---|")

    def line(label: str, f, target: str, fmt: str = "{:.2f}x") -> None:
        print(f"| {label} | " + " | ".join(fmt.format(f(st)) for st in STORAGES) + f" | {target} |")

    line("full ingest per core / naive (steady)", lambda st: pc[f"steady {st} 1"] / pc["a"], ">= 10x", "{:.1f}x")
    line("decode-only / full ingest (per core, steady)", lambda st: pc["b"] / pc[f"steady {st} 1"], "<= 1.5x")
    line(f"decode-only / full ingest (per core, end to end over {args.repeat} replicas)",
         lambda st: pc["b"] / pc[f"c {st} 1"], "(diagnostic)")
    line("decode-only / full per-file work without Ray", lambda st: pc["b"] / pc[f"c0 {st}"], "(diagnostic)")
    line("full ingest 2 CPUs / 1 CPU (throughput, steady)",
         lambda st: 2 * pc[f"steady {st} 2"] / pc[f"steady {st} 1"], ">= 1.7x")
    line("full ingest 2 CPUs / 1 CPU (throughput, end to end)", lambda st: 2 * pc[f"c {st} 2"] / pc[f"c {st} 1"],
         "(diagnostic)")
    for st in STORAGES:
        each = ", ".join(f"{s_ / b_:.2f}x" for b_, s_ in zip(runs["b"], runs[f"steady {st} 1"]))
        print(f"decode-only / full ingest (per core, steady), echo as {st}, round by round: {each}")
    if baseline is not None:
        t_new, t_old, c_new, c_old = (float(np.median(runs[k])) / len(strips)
                                      for k in ("t", "t base", "t cpu", "t base cpu"))
        per_file = float(np.median(runs["c0 tensor"])) / n
        print(f"\ntracer on {len(strips)} first-frame strips ({args.rounds} x {args.tracer_passes} interleaved passes, "
              f"medians): {1000 * t_new:.2f} ms a strip, {1000 * t_old:.2f} ms at {args.baseline_ref} "
              f"({t_new / t_old:.2f}x); CPU time {1000 * c_new:.2f} ms against {1000 * c_old:.2f} ms "
              f"({c_new / c_old:.2f}x); full per-file work (c0, tensor) {1000 * per_file:.1f} ms, so the tracer change "
              f"costs {100 * (t_new - t_old) / per_file:+.1f} % a file ({100 * (c_new - c_old) / per_file:+.1f} % in "
              "CPU time)")
    print(f"\n1-minute load average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on "
          f"{os.cpu_count()} cores (a busy machine distorts the 2-CPU figure most)")
    for st in STORAGES:
        c1 = pc[f"steady {st} 1"]
        eff = min(pc[f"steady {st} 2"] / c1, 1.0)
        for label, e in (("measured 2-CPU efficiency", eff), ("linear scaling", 1.0)):
            node = 16 * c1 * e
            hours = MIMIC_BYTES / (node * 1e6) / 3600
            print(f"Projection, full MIMIC-IV-ECHO ({MIMIC_FILES:,} files, 1.8 TB) on one 16-core node, "
                  f"echo as {st}, {label}: {c1:.1f} MB/s per core x 16 x {e:.2f} = {node:.0f} MB/s -> {hours:.2f} h "
                  f"({MIMIC_FILES / (hours * 3600):.0f} files/s; disk/network permitting)")


if __name__ == "__main__":
    main()
