"""``eee-ray benchmark``: the four-model structural heart disease benchmark under Ray Tune + MLflow (SPEC S7)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eee_ray.errors import UserError


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=["mimic", "ptbxl", "synthetic"], default=None,
                   help="data source (default synthetic); synthetic reads the `eee-ray synth` root's ecg/ folder")
    p.add_argument("--data", default=None, help="MIMIC-IV-ECG root (record_list.csv), PTB-XL root or synth root")
    p.add_argument("--output", default=None, help="output folder (results.csv, results.md, trials/, mlflow.db)")
    p.add_argument("--pretrained", default=None, help="ecg_encoder.pt from `eee-ray pretrain` (needed for model eee)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs per trial (default 10)")
    p.add_argument("--preset", choices=["tiny", "paper"], default=None, help="model size preset (default paper)")
    p.add_argument("--models", type=_csv, default=None,
                   help="comma list of xresnet1d50,s4,st_mem,eee,eee_random (default all; eee needs --pretrained)")
    p.add_argument("--leads", type=_csv, default=None, help="lead configurations, comma list of II,all")
    p.add_argument("--strategies", type=_csv, default=None,
                   help="comma list of scratch,finetune,linear_probe (default every strategy of each model)")
    p.add_argument("--label-level", choices=["category", "code"], default=None,
                   help="labels are CCSR CIR categories or the CIR ICD-10 codes themselves (default category)")
    p.add_argument("--mapping", default=None,
                   help="ICD-10 -> CCSR source: official (a DXCCSR_*.csv beside the data, else the shared AHRQ "
                        "default-category JSON), json, paper-table2, or a PATH to a DXCCSR CSV / JSON")
    p.add_argument("--labels-csv", default=None, help="labels CSV (default <data>/records_w_diag_icd10.csv)")
    p.add_argument("--max-records", type=int, default=None, help="use only the first N records (0: all)")
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial (e.g. 1 or 0.5); trials then train on CUDA and run on GPU nodes only")
    p.add_argument("--config", default=None, help="YAML file with BenchmarkConfig fields")


def run(args: argparse.Namespace) -> int:
    from eee_ray import config
    from eee_ray.benchmark import BenchmarkConfig, run_benchmark

    overrides = {"dataset": args.dataset, "data": args.data, "output": args.output, "pretrained": args.pretrained,
                 "epochs": args.epochs, "preset": args.preset, "models": args.models, "leads": args.leads,
                 "strategies": args.strategies, "label_level": args.label_level, "mapping": args.mapping,
                 "labels_csv": args.labels_csv, "max_records": args.max_records,
                 "gpus_per_trial": args.gpus_per_trial}
    cfg = config.resolve(BenchmarkConfig, args.config, overrides)
    if not cfg.data:
        raise UserError("--data is required (a MIMIC-IV-ECG, PTB-XL or `eee-ray synth` folder)")
    results = run_benchmark(cfg)
    out = Path(cfg.output)
    skipped = json.loads((out / "summary.json").read_text())["skipped"]
    print(results.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\n{len(results)} trial(s) done, {skipped} record(s) skipped (see {out / 'skipped.csv'})")
    print(f"tables: {out / 'results.csv'}, {out / 'results.md'}, {out / 'per_label_auroc.csv'}")
    return 0
