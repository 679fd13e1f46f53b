"""ECG tracing fidelity per hard case, the real DICOMs' verdicts, and tracing time against a baseline tracer.

Every case of ``eee_ray.synth.trace_cases`` is rendered over ``--seeds`` seeds (PTB-XL lead II when the shared data
is there, else the physiology model) and traced as the ingest does (first frame's bottom 30 %, the case's
``--trace-color``). Per case it prints: the share accepted (clean cases) or rejected with the right reason
(defects), the median and minimum Pearson r of the traced waveform against the drawn one (accepted cines), the share
of accepted cines whose R-peak count equals the drawn trace's, and the same acceptance share for the baseline
tracer (``--baseline-ref``, the tracer at that git revision, loaded from git in this run). Then every DICOM under
``--dicom`` is decoded and traced in paper and auto mode (none may be accepted), and the mean tracing CPU time per
strip of both tracers on the same strips (one OpenCV thread, like one ingest actor). Usage:
    python benchmarks/trace_fidelity.py [--seeds 10] [--kinds thin_aa,gap] [--baseline-ref 173efda] [--no-ptbxl]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = next((p for p in (Path(os.environ.get("EEE_SHARED_DATA", "/nonexistent")), REPO.parent / "shared" / "data",
               REPO.parent.parent / "shared" / "data") if (p / "README.md").is_file()), REPO.parent / "shared" / "data")


def load_baseline(ref: str):
    """The tracer module as it is at git revision ``ref`` (None when git cannot show it)."""
    try:
        src = subprocess.run(["git", "show", f"{ref}:eee_ray/ingest/trace.py"], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    path = Path(tempfile.mkdtemp()) / "trace_baseline.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("trace_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["trace_baseline"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def fidelity(case, res) -> float:
    """Pearson r of the traced waveform against the drawn one on the columns both cover."""
    a, b = max(res.x0, case.x0), min(res.x1, case.x1)
    if b - a < 8:
        return float("nan")
    t = case.trace_y[a - case.x0:b - case.x0 + 1]
    e = res.ecg_px[a - res.x0:b - res.x0 + 1]
    ok = np.isfinite(t)
    return float(np.corrcoef(t[ok], e[ok])[0, 1])


def case_table(kinds, seeds, ptbxl, baseline) -> tuple[list[dict], dict]:
    from eee_ray.ingest.trace import TraceConfig, trace_ecg
    from eee_ray.synth.trace_cases import CLEAN, r_peak_count, render_case

    cfg, rows, times = TraceConfig(), [], {"new": 0.0, "old": 0.0, "n": 0}
    base_cfg = baseline.TraceConfig() if baseline else None
    for kind in kinds:
        ok, rs, peaks_ok, base_ok, reasons = 0, [], 0, 0, {}
        for seed in seeds:
            case = render_case(kind, seed, ptbxl_dir=ptbxl)
            # CPU time, the two tracers in alternating order: on a shared machine the wall clock charges whichever
            # runs first after the rendering with the waits for a core
            runs = [("new", trace_ecg, cfg)] + ([("old", baseline.trace_ecg, base_cfg)] if baseline else [])
            out = {}
            for key, fn, c in runs[::-1] if times["n"] % 2 else runs:
                t0 = time.process_time()
                out[key] = fn(case.strip.copy(), c, case.trace_color)
                times[key] += time.process_time() - t0
            res = out["new"]
            if baseline:
                base_ok += out["old"].reason in case.expected
            times["n"] += 1
            ok += res.reason in case.expected
            reasons[res.reason] = reasons.get(res.reason, 0) + 1
            if res.reason is None and case.x0 is not None:
                rs.append(fidelity(case, res))
                cols_per_s = (case.x1 - case.x0 + 1) / max(case.seconds, 1e-6)
                peaks_ok += r_peak_count(res.ecg_px, cols_per_s) == case.r_peaks
        rows.append({"case": kind, "clean": kind in CLEAN, "mode": case.trace_color, "n": len(seeds),
                     "ok": ok / len(seeds), "base_ok": base_ok / len(seeds) if baseline else float("nan"),
                     "r_med": float(np.median(rs)) if rs else float("nan"),
                     "r_min": float(np.min(rs)) if rs else float("nan"),
                     "peaks": peaks_ok / len(rs) if rs else float("nan"), "reasons": reasons})
    return rows, times


def file_context(frames: int = 32, repeat: int = 5) -> float:
    """Mean CPU ms to decode one default-geometry cine (480 x 640, ``frames`` JPEG frames) on the ingest's fast path:
    the rest of a file's work that the tracing time adds to."""
    import pydicom

    from eee_ray.ingest.decode import decode
    from eee_ray.synth.trace_cases import render_case, write_case_dicom

    path = Path(tempfile.mkdtemp()) / "cine.dcm"
    write_case_dicom(render_case("easy", 0), path, n_frames=frames)
    t0 = time.process_time()
    for _ in range(repeat):
        ds = pydicom.dcmread(path)
        decode(ds, frames, 0.30, 224, 0.9)
    return 1000 * (time.process_time() - t0) / repeat


def real_dicoms(root: Path) -> list[tuple[str, str, str]]:
    """(file, paper verdict, auto verdict) for every decodable DICOM under ``root``."""
    import pydicom

    from eee_ray.ingest.decode import decode, echo_rows
    from eee_ray.ingest.trace import TraceConfig, trace_ecg

    out = []
    for f in sorted(root.rglob("*.dcm")):
        try:
            ds = pydicom.dcmread(f)
            dec = decode(ds, int(ds.get("NumberOfFrames", 1) or 1), 0.30, 224, 0.9)
        except Exception:
            out.append((f.name, "not decodable", "not decodable"))
            continue
        strip = dec.first_rgb[echo_rows(dec.first_rgb.shape[0], 0.30):]
        verdicts = [trace_ecg(strip.copy(), TraceConfig(), m).reason or "ACCEPTED" for m in ("paper", "auto")]
        out.append((f.name, *verdicts))
    return out


def main(argv=None) -> int:
    from eee_ray.synth.trace_cases import KINDS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--baseline-ref", default="173efda",
                    help="git revision of the baseline tracer ('' for none); default: the tracer before hysteresis "
                         "and the plausibility checks")
    ap.add_argument("--no-ptbxl", action="store_true", help="draw the physiology model, not PTB-XL lead II")
    ap.add_argument("--dicom", default=str(SHARED / "dicom"))
    args = ap.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)  # one core per measurement, like one Ray actor
    ptbxl = None if args.no_ptbxl or not (SHARED / "ecg" / "ptbxl_500").is_dir() else str(SHARED / "ecg" / "ptbxl_500")
    baseline = load_baseline(args.baseline_ref) if args.baseline_ref else None
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    rows, times = case_table(args.kinds.split(","), seeds, ptbxl, baseline)

    print(f"signal: {'PTB-XL lead II' if ptbxl else 'physiology model'}; seeds {seeds.start}..{seeds.stop - 1}; "
          f"baseline tracer: {args.baseline_ref or 'none'}")
    print("| case | mode | n | accepted / right reason | baseline | median r | min r | R peaks recovered | verdicts |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        verdicts = ", ".join(f"{k or 'accepted'} {v}" for k, v in sorted(r["reasons"].items(), key=lambda kv: -kv[1]))
        fid = (f"{r['r_med']:.4f} | {r['r_min']:.4f} | {r['peaks']:.0%}" if np.isfinite(r["r_med"]) else "- | - | -")
        print(f"| {r['case']}{'' if r['clean'] else ' (defect)'} | {r['mode']} | {r['n']} | {r['ok']:.0%} | "
              f"{r['base_ok']:.0%} | {fid} | {verdicts} |")
    clean = [r for r in rows if r["clean"]]
    bad = [r for r in rows if not r["clean"]]
    if clean:
        print(f"\nclean cines accepted: {np.mean([r['ok'] for r in clean]):.1%} "
              f"(baseline {np.mean([r['base_ok'] for r in clean]):.1%}); "
              f"median of per-case median r {np.median([r['r_med'] for r in clean]):.4f}, "
              f"min r {np.nanmin([r['r_min'] for r in clean]):.4f}")
    if bad:
        print(f"defects rejected with the right reason: {np.mean([r['ok'] for r in bad]):.1%} "
              f"(baseline {np.mean([r['base_ok'] for r in bad]):.1%})")
    if times["n"]:
        new, old = 1000 * times["new"] / times["n"], 1000 * times["old"] / times["n"]
        ratio = f", ratio {new / old:.2f}x" if old else ""
        print(f"tracing CPU time per strip: {new:.2f} ms (baseline {old:.2f} ms{ratio})")
        dec = file_context()
        print(f"reading + decoding one 32-frame 480x640 cine: {dec:.1f} ms of CPU; per file with tracing "
              f"{dec + new:.1f} ms (baseline {dec + old:.1f} ms, ratio {(dec + new) / (dec + old):.2f}x)")
    root = Path(args.dicom)
    if root.is_dir():
        real = real_dicoms(root)
        print(f"\nreal DICOMs under {root}: {sum('ACCEPTED' in v for v in real)} of {len(real)} accepted")
        for name, paper, auto in real:
            print(f"  {name}: paper {paper}, auto {auto}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
