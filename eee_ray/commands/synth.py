"""``eee-ray synth``: generate the synthetic MIMIC-like data set (SPEC S2.4)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eee_ray.config import resolve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (created; must be empty or a previous synth output)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (same seed -> identical files) [0]")
    parser.add_argument("--patients", type=int, default=None, help="patients with echo studies [40]")
    parser.add_argument("--ecg-patients", type=int, default=None,
                        help="patients in the downstream ECG tree, >= --patients; 0 = 4 x patients [0]")
    parser.add_argument("--config", default=None, help="YAML file with SynthConfig fields")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty folder that is not a previous synth output")


def run(args: argparse.Namespace) -> int:
    from eee_ray.synth import SynthConfig, generate

    cfg = resolve(SynthConfig, args.config, {"seed": args.seed, "patients": args.patients,
                                             "ecg_patients": args.ecg_patients})
    out = generate(Path(args.out), cfg, overwrite=args.overwrite)
    summary = json.loads((out / "synth.json").read_text())
    print(f"synthetic data set in {out}: {summary['cines']} echo files for {cfg.patients} patients, "
          f"{summary['ecg_records']} ECG records for {cfg.n_ecg_patients} patients (seed {cfg.seed})")
    return 0
