"""`eee-ray ingest`: DICOM cines -> manifest/ + clips/ Parquet (SPEC S3). Thin: parse, configure, run, summarise."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="MIMIC-IV-ECHO root (with files/ and echo-record-list.csv) "
                                                       "or any folder of DICOM files")
    parser.add_argument("--output", required=True, help="output folder (manifest/, clips/, qa/); re-running with "
                                                        "the same output resumes")
    parser.add_argument("--num-cpus", type=int, default=None, help="Ray CPUs to use (default: all of the cluster)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N input files (in path order)")
    parser.add_argument("--qa-samples", type=int, default=None,
                        help="write N PNGs of first frames with the traced ECG and the verdict to OUTPUT/qa/ "
                             "(default 0)")
    parser.add_argument("--trace-color", choices=("paper", "auto"), default=None,
                        help="paper: the paper's HSV window (default); auto: fall back to the strip's dominant "
                             "saturated hue and ignore a moving cursor line")
    parser.add_argument("--echo-storage", choices=("tensor", "bytes"), default=None,
                        help="clips.echo as Ray's uint8 tensor type (default, SPEC S3) or as raw bytes (less "
                             "ingest CPU; eee-ray's later stages read both)")
    parser.add_argument("--max-frames", type=int, default=None, help="reject cines with more frames (default 120)")
    parser.add_argument("--config", default=None, help="YAML file with IngestConfig fields (trace: {...} for the "
                                                       "tracing thresholds); options given here win")


def run(args: argparse.Namespace) -> int:
    from eee_ray.config import resolve
    from eee_ray.errors import UserError
    from eee_ray.ingest import IngestConfig, run_ingest

    if not Path(args.input).is_dir():
        raise UserError(f"--input folder not found: {args.input}")
    cfg = resolve(IngestConfig, args.config, {
        "input": args.input, "output": args.output, "num_cpus": args.num_cpus, "limit": args.limit,
        "qa_samples": args.qa_samples, "trace_color": args.trace_color, "max_frames": args.max_frames,
        "echo_storage": args.echo_storage})
    s = run_ingest(cfg)
    print(f"ingest: {s.discovered} files found, {s.skipped} already done, {s.processed} processed; "
          f"manifest holds {s.total}: " + ", ".join(f"{k} {v}" for k, v in sorted(s.by_status.items())))
    for reason, n in sorted(s.by_reason.items(), key=lambda kv: -kv[1]):
        print(f"  rejected {reason}: {n}")
    print(f"manifest: {s.manifest_dir}\nclips:    {s.clips_dir}")
    if s.qa_pngs:
        print(f"QA pictures: {len(s.qa_pngs)} in {Path(s.output) / 'qa'}")
    return 0
