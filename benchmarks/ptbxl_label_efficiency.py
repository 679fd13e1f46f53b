"""PTB-XL label efficiency (docs/results.md): every model and both lead configurations at several label fractions.

Runs the real benchmark (Ray Tune + MLflow) on the PTB-XL subset in ../shared/data and prints the label-efficiency
table (macro AUROC: mean over the subset draws with their range, or the 95% bootstrap interval for one draw) as
Markdown. The encoder rows need ``--pretrained ecg_encoder.pt`` (from `eee-ray pretrain`); without it the
random-init EEE control still runs.

    python benchmarks/ptbxl_label_efficiency.py --output runs/ptbxl_le --fractions 0.1 0.3 1 --label-seeds 3
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from eee_ray.downstream import BenchmarkConfig, run_benchmark
from eee_ray.downstream.report import efficiency_markdown, label_efficiency

SHARED = Path(os.environ.get("EEE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "ecg" / "ptbxl_500"))
    ap.add_argument("--output", default="runs/ptbxl_label_efficiency")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    ap.add_argument("--label-seeds", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=[])
    ap.add_argument("--pretrained", default="")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--min-steps", type=int, default=100)
    args = ap.parse_args()
    t0 = time.time()
    out = Path(args.output)
    if not (out / "results.csv").is_file():
        run_benchmark(BenchmarkConfig(dataset="ptbxl", data=args.data, output=str(out), preset="tiny",
                                      epochs=args.epochs, min_steps=args.min_steps, models=args.models,
                                      pretrained=args.pretrained, label_fractions=args.fractions,
                                      label_seeds=args.label_seeds))
    eff = label_efficiency(pd.read_csv(out / "results.csv"))
    print("\n".join(efficiency_markdown(eff)))
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
