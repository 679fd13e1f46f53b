"""``eee-ray synth``: generate the synthetic MIMIC-like data set (docs/data.md)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from eee_ray.config import DeprecatedAlias


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.argument_default = argparse.SUPPRESS  # an option not given leaves the YAML/dataclass value
    parser.add_argument("--output", dest="_output",
                        help="output folder (created; must be empty or a previous synth output)")
    parser.add_argument("--out", dest="_output", action=DeprecatedAlias, replacement="--output",
                        help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help="random seed (same seed -> identical files) (default 0)")
    parser.add_argument("--patients", type=int, help="patients with echo studies (default 40)")
    parser.add_argument("--ecg-patients", dest="ecg_patients", type=int,
                        help="patients in the downstream ECG tree, >= --patients; 0 = 4 x patients (default 0)")
    parser.add_argument("--config", metavar="FILE", help="YAML file with SynthConfig fields (options given on the "
                                                         "command line win)")
    parser.add_argument("--overwrite", dest="_overwrite", action="store_true",
                        help="write into a non-empty folder that is not a previous synth output")


def run(args: argparse.Namespace) -> int:
    from eee_ray import storage
    from eee_ray.config import resolve_cli
    from eee_ray.errors import UserError
    from eee_ray.synth import SynthConfig, generate

    output = getattr(args, "_output", None)
    if not output:
        raise UserError("--output is required")
    cfg = resolve_cli(SynthConfig, args)
    overwrite = getattr(args, "_overwrite", False)
    if storage.is_uri(output):  # generated in a local temporary folder, then uploaded file by file
        storage.check_bucket(output, "--output")
        if storage.walk(output) and not storage.exists(storage.join(output, "synth.json")) and not overwrite:
            raise UserError(f"--output {output} holds other objects; pick an empty prefix or pass --overwrite")
        with tempfile.TemporaryDirectory(prefix="eee-ray-synth-") as tmp:
            generate(Path(tmp), cfg, overwrite=True)
            summary = json.loads((Path(tmp) / "synth.json").read_text())
            storage.upload_tree(tmp, output)
        out = output
    else:
        out = generate(Path(output), cfg, overwrite=overwrite)
        summary = json.loads((out / "synth.json").read_text())
    print(f"synthetic data set in {out}: {summary['cines']} echo files for {cfg.patients} patients, "
          f"{summary['ecg_records']} ECG records for {cfg.n_ecg_patients} patients (seed {cfg.seed})")
    return 0
