"""``eee-ray benchmark``: the four-model structural heart disease benchmark under Ray Tune + MLflow (docs/downstream.md)."""

from __future__ import annotations

import argparse
import json
import sys

from eee_ray.config import DeprecatedAlias, add_common_arguments


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from eee_ray.downstream import EXPERIMENT, BenchmarkConfig

    p.argument_default = argparse.SUPPRESS  # an option not given leaves the YAML/dataclass value
    p.add_argument("--dataset", choices=["mimic", "ptbxl", "synthetic"],
                   help="data source (default synthetic); synthetic reads the `eee-ray synth` root's ecg/ folder")
    p.add_argument("--data", help="MIMIC-IV-ECG root (record_list.csv), PTB-XL root or synth root")
    p.add_argument("--output", help="output folder (results.csv, results.md, trials/) (default benchmark)")
    p.add_argument("--prepared", help="prepared-signal store folder (default <output>/prepared); reused when the "
                                      "same records and preparation settings are asked again, rebuilt otherwise")
    p.add_argument("--shard-records", dest="shard_records", type=int,
                   help="records per prepared-store shard (default 1024)")
    p.add_argument("--pretrained", help="ecg_encoder.pt from `eee-ray pretrain` (needed for model eee)")
    p.add_argument("--epochs", type=int, help="training epochs per trial (default 10)")
    p.add_argument("--preset", choices=["tiny", "paper"], help="model size preset (default paper)")
    p.add_argument("--models", type=_csv,
                   help="comma list of xresnet1d50,s4,st_mem,eee,eee_random (default all; eee needs --pretrained)")
    p.add_argument("--leads", type=_csv, help="lead configurations, comma list of II,all (default both)")
    p.add_argument("--strategies", type=_csv,
                   help="comma list of scratch,finetune,linear_probe (default every strategy of each model)")
    p.add_argument("--labels", choices=["icd", "echo-measurements"],
                   help="icd: diagnosis codes -> CCSR categories (default); echo-measurements: EchoNext structural "
                        "findings from MIMIC-IV-ECHO's structured_measurement table (nearest TTE in a window)")
    p.add_argument("--echo-measurements", dest="echo_measurements",
                   help="structured_measurement CSV (default: found in the data folder, its echo/ or its parent)")
    p.add_argument("--measurement-mapping", dest="measurement_mapping",
                   help="YAML of measurement names, severity words and thresholds (default: the package's "
                        "eee_ray/ecgdata/echo_measurements.yaml)")
    p.add_argument("--echo-window-days", dest="echo_window_days", type=float,
                   help="an ECG takes the nearest TTE of the same patient at most this many days away; ECGs "
                        "without one are left out and counted (default 30)")
    p.add_argument("--label-level", dest="label_level", choices=["category", "code"],
                   help="labels are CCSR CIR categories or the CIR ICD-10 codes themselves (default category)")
    p.add_argument("--mapping",
                   help="ICD-10 -> CCSR source: official (a DXCCSR_*.csv beside the data, else the shared AHRQ "
                        "default-category JSON), json, paper-table2, or a PATH to a DXCCSR CSV / JSON "
                        "(default official)")
    p.add_argument("--labels-csv", dest="labels_csv", help="labels CSV (default <data>/records_w_diag_icd10.csv)")
    p.add_argument("--max-records", dest="max_records", type=int, help="use only the first N records (0: all)")
    p.add_argument("--label-fractions", dest="label_fractions", type=_csv,
                   help="shares of the training patients each model trains on, e.g. 0.02,0.1,1.0: patient-wise, "
                        "label-stratified, seeded subsets; validation and test stay whole (default 1.0)")
    p.add_argument("--label-seeds", dest="label_seeds", type=int,
                   help="subsets drawn per fraction below 1, for the spread over draws (default 1)")
    p.add_argument("--head-init", dest="head_init", choices=["default", "zero"],
                   help="EEE's linear head at the start (linear probe and fine-tuning): zero (starts neutral, so a "
                        "probe's AUROC follows the labels even in a few hundred steps) or default (PyTorch's random "
                        "init) (default zero)")
    p.add_argument("--probe-head-init", dest="head_init", choices=["default", "zero"], action=DeprecatedAlias,
                   replacement="--head-init", help=argparse.SUPPRESS)
    p.add_argument("--encoder-lr-scale", dest="encoder_lr_scale", type=float,
                   help="fine-tuning EEE: the encoder's learning rate is the config's lr times this, the head's is lr "
                        "(default 1)")
    p.add_argument("--min-steps", dest="min_steps", type=int,
                   help="at least this many optimiser steps per trial: a small label subset trains for more "
                        "epochs (default 0: --epochs only)")
    p.add_argument("--gpus-per-trial", dest="gpus_per_trial", type=float,
                   help="GPUs per trial (e.g. 1 or 0.5); trials then train on CUDA and run on GPU nodes only")
    add_common_arguments(p, BenchmarkConfig, EXPERIMENT)


def run(args: argparse.Namespace) -> int:
    from eee_ray import storage
    from eee_ray.config import resolve_cli
    from eee_ray.downstream import BenchmarkConfig, run_benchmark
    from eee_ray.runtime import mlflow_ui_command, mlflow_ui_url

    cfg = resolve_cli(BenchmarkConfig, args)
    results = run_benchmark(cfg)
    out = cfg.output
    summary = json.loads(storage.read_text(storage.join(out, "summary.json")))
    print(results.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\n{len(results)} trial(s) done, {summary['skipped']} record(s) skipped "
          f"(see {storage.join(out, 'skipped.csv')})")
    print("tables: " + ", ".join(storage.join(out, f) for f in ("results.csv", "results.md", "per_label_auroc.csv")))
    print(f"MLflow: {mlflow_ui_command(summary['tracking_uri'])}   (then open {mlflow_ui_url()})")
    for r in summary.get("registered_models", []):
        print(f"registered {r['uri']}: {r['model']} ({r['strategy']}), test macro AUROC {r.get('test_macro_auroc', '-')}")
    if summary["failed"]:
        failed = [n for n in summary["notes"] if n.startswith("trial ")]
        print(f"eee-ray benchmark: error: {summary['failed']} of {summary['trials']} trial(s) failed "
              f"(first: {failed[0] if failed else 'see the log'})", file=sys.stderr)
        return 1
    return 0
