"""`eee-ray analyze`: LDA grid, ROC curves and per-label AUROC heat map of a finished benchmark."""

from __future__ import annotations

import argparse

from eee_ray.config import add_common_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from eee_ray.analyze import AnalyzeConfig

    parser.argument_default = argparse.SUPPRESS  # an option not given leaves the YAML/dataclass value
    parser.add_argument("--benchmark", required=True, help="output folder of `eee-ray benchmark` (holds trials/)")
    parser.add_argument("--output", help="where figures and tables go (default: <benchmark>/analysis)")
    parser.add_argument("--categories", nargs="+", metavar="LABEL",
                        help="labels to colour in the LDA plots (default: the --max-categories most frequent)")
    parser.add_argument("--max-categories", dest="max_categories", type=int,
                        help="how many frequent labels to plot (default 5)")
    parser.add_argument("--min-records", dest="min_records_per_category", type=int,
                        help="drop LDA categories with fewer records (default 5)")
    add_common_arguments(parser, AnalyzeConfig, "the benchmark's")


def run(args: argparse.Namespace) -> int:
    from eee_ray.analyze import AnalyzeConfig, run_analysis
    from eee_ray.config import resolve_cli

    out = run_analysis(resolve_cli(AnalyzeConfig, args))
    print(f"analysis written to {out}: lda_grid.png, roc_curves.png, per_label_auroc_heatmap.png, "
          "lda_summary.csv, per_label_auroc.csv (also in the MLflow run 'analysis')")
    return 0
