"""`eee-ray ingest`: DICOM cines -> manifest/ + clips/ Parquet (docs/ingest.md). Thin: parse, configure, run, summarise."""

from __future__ import annotations

import argparse

from eee_ray.config import add_common_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from eee_ray.ingest.config import EXPERIMENT, IngestConfig

    parser.argument_default = argparse.SUPPRESS  # an option not given leaves the YAML/dataclass value
    parser.add_argument("--input", required=True, help="MIMIC-IV-ECHO root (with files/ and echo-record-list.csv) "
                                                       "or any folder of DICOM files")
    parser.add_argument("--output", required=True, help="output folder (manifest/, clips/, qa/); re-running with "
                                                        "the same output resumes")
    parser.add_argument("--num-cpus", dest="num_cpus", type=int,
                        help="Ray CPUs to use (default: all of the cluster)")
    parser.add_argument("--limit", type=int, help="only the first N input files (in path order)")
    parser.add_argument("--qa-samples", dest="qa_samples", type=int,
                        help="write N PNGs of first frames with the traced ECG and the verdict to OUTPUT/qa/ "
                             "(default 0)")
    parser.add_argument("--trace-color", dest="trace_color", choices=("paper", "auto"),
                        help="paper: the paper's HSV window (default); auto: fall back to the strip's dominant "
                             "saturated hue and ignore a moving cursor line")
    parser.add_argument("--echo-storage", dest="echo_storage", choices=("tensor", "bytes"),
                        help="clips.echo as Ray's uint8 tensor type (default) or as raw bytes (less ingest CPU; "
                             "eee-ray's later stages read both)")
    parser.add_argument("--max-frames", dest="max_frames", type=int,
                        help="reject cines with more frames (default 120)")
    add_common_arguments(parser, IngestConfig, EXPERIMENT)


def run(args: argparse.Namespace) -> int:
    from eee_ray.config import resolve_cli
    from eee_ray.ingest import IngestConfig, run_ingest
    from eee_ray.runtime import mlflow_ui_command

    s = run_ingest(resolve_cli(IngestConfig, args))
    print(f"ingest: {s.discovered} files found, {s.skipped} already done, {s.processed} processed; "
          f"manifest holds {s.total}: " + ", ".join(f"{k} {v}" for k, v in sorted(s.by_status.items())))
    for reason, n in sorted(s.by_reason.items(), key=lambda kv: -kv[1]):
        print(f"  rejected {reason}: {n}")
    print(f"manifest: {s.manifest_dir}\nclips:    {s.clips_dir}")
    if s.qa_pngs:
        print(f"QA pictures: {len(s.qa_pngs)} in {s.output}/qa")
    if s.mlflow_tracking_uri:
        print(f"MLflow:   {mlflow_ui_command(s.mlflow_tracking_uri)}")
    return 0
