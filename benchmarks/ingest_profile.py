"""Where the full ingest's per-file time goes beyond decoding, in ONE process, without Ray.

Interleaves, per repeat and file, (b) the decode-only work of ``ingest_throughput.py`` and (c0) the full per-file
work (``process_file`` + this file's share of the Parquet write), so the ratio c0 / b is robust to CPU noise from
other jobs; then profiles (c0) with cProfile and prints its top costs. Usage:
    python benchmarks/ingest_profile.py [--data DIR] [--patients 4] [--repeat 3] [--top 25] [--echo-storage bytes]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_throughput import decode_only, dicoms, in_process  # noqa: E402


def interleaved(files: list[Path], out: Path, repeat: int, clock, storage: str) -> tuple[float, float]:
    """Total seconds of (b) and (c0) over ``repeat`` interleaved passes, one file at a time."""
    b = c = 0.0
    for _ in range(repeat):
        for f in files:
            t = clock()
            decode_only([f])
            b += clock() - t
            t = clock()
            in_process([f], out, storage)
            c += clock() - t
    return b, c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="a synth output folder (default: generate one)")
    ap.add_argument("--patients", type=int, default=4)
    ap.add_argument("--rows", type=int, default=708)
    ap.add_argument("--cols", type=int, default=1016)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--echo-storage", choices=("tensor", "bytes"), default="tensor")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    work = Path(tempfile.mkdtemp(prefix="eee_ingest_profile_"))
    data = Path(args.data) if args.data else work / "synth"
    if not (data / "echo").is_dir():
        from eee_ray.synth import SynthConfig, generate

        generate(data, SynthConfig(seed=1, patients=args.patients, rows=args.rows, cols=args.cols), overwrite=True)
    files = dicoms(data / "echo")
    in_process(files[:2], work / "warm")
    decode_only(files[:2])
    n = len(files) * args.repeat
    print(f"{len(files)} files x {args.repeat} repeats, interleaved per file; CPU time of this process is robust to "
          "other jobs on the machine, wall time is not")
    print("| work | CPU ms per file | wall ms per file |")
    print("|---|---:|---:|")
    (bc, cc), (bw, cw) = (interleaved(files, work / "c0", args.repeat, clock, args.echo_storage)
                          for clock in (time.process_time, time.perf_counter))
    print(f"| (b) decode-only | {1000 * bc / n:.1f} | {1000 * bw / n:.1f} |")
    print(f"| (c0) full per-file work, no Ray, echo as {args.echo_storage} | {1000 * cc / n:.1f} | "
          f"{1000 * cw / n:.1f} |")
    print(f"| ratio (c0) / (b) (target <= 1.5x) | {cc / bc:.2f}x | {cw / bw:.2f}x |")
    prof = cProfile.Profile()
    prof.enable()
    in_process(files, work / "prof", args.echo_storage)
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(args.top)
    print(s.getvalue())


if __name__ == "__main__":
    main()
