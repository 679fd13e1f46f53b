"""`eee-ray analyze`: LDA grid, ROC curves and per-label AUROC heat map of a finished benchmark."""

from __future__ import annotations

import argparse

from eee_ray.analyze import AnalyzeConfig, run_analysis
from eee_ray.config import resolve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark", required=True, help="output folder of `eee-ray benchmark` (holds trials/)")
    parser.add_argument("--output", help="where figures and tables go (default: <benchmark>/analysis)")
    parser.add_argument("--categories", nargs="+", metavar="LABEL",
                        help="labels to colour in the LDA plots (default: the --max-categories most frequent)")
    parser.add_argument("--max-categories", type=int, help="how many frequent labels to plot (default 5)")
    parser.add_argument("--min-records", type=int, dest="min_records_per_category",
                        help="drop LDA categories with fewer records (default 5)")
    parser.add_argument("--config", help="YAML file with AnalyzeConfig fields")


def run(args: argparse.Namespace) -> int:
    cfg = resolve(AnalyzeConfig, args.config, {
        "benchmark": args.benchmark, "output": args.output, "categories": args.categories,
        "max_categories": args.max_categories, "min_records_per_category": args.min_records_per_category})
    out = run_analysis(cfg)
    print(f"analysis written to {out}: lda_grid.png, roc_curves.png, per_label_auroc_heatmap.png, "
          "lda_summary.csv, per_label_auroc.csv (also in the MLflow run 'analysis')")
    return 0
