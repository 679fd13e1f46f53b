"""The benchmark's tables: results.csv / results.md (the paper's Table 3 layout) and per-label AUROC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from eee_ray.downstream.config import trial_name

DISPLAY = {"xresnet1d50": "XResNet1D50", "s4": "S4", "st_mem": "ST-MEM", "eee": "EEE", "eee_random": "EEE (random init)"}
LEAD_DISPLAY = {"II": "Single-lead", "all": "All-leads"}
RESULT_COLUMNS = ["model", "leads", "strategy", "macro_auroc", "micro_auroc", "macro_auprc", "macro_auroc_ci_low",
                  "macro_auroc_ci_high", "n_labels", "n_test_records"]
PAPER_TABLE3 = {("xresnet1d50", "II"): (0.893, 0.761), ("xresnet1d50", "all"): (0.909, 0.807),
                ("st_mem", "II"): (0.884, 0.744), ("st_mem", "all"): (0.911, 0.811),
                ("s4", "II"): (0.899, 0.781), ("s4", "all"): (0.917, 0.826), ("eee", "II"): (0.874, 0.712)}


def results_markdown(results: pd.DataFrame, summary: dict[str, Any]) -> str:
    """Table 3 layout (Model | Configuration | Macro | Micro ROC AUC) plus CI, AUPRC and the paper's numbers."""
    lines = [f"# Benchmark results ({summary['dataset']}, {summary['n_labels']} labels, "
             f"{summary['test_records']} test records)", "",
             "| Model | Configuration | Macro ROC AUC (95% CI) | Micro ROC AUC | Macro AUPRC | Paper macro / micro |",
             "|---|---|---|---|---|---|"]
    for r in results.itertuples():
        name = DISPLAY.get(r.model, r.model)
        if r.model.startswith("eee"):
            name += ", linear probe" if r.strategy == "linear_probe" else ", fine-tuned"
        paper = PAPER_TABLE3.get((r.model, r.leads)) if r.strategy != "linear_probe" else None
        paper_s = f"{paper[0]:.3f} / {paper[1]:.3f}" if paper and r.model != "eee_random" else "-"
        lines.append(f"| {name} | {LEAD_DISPLAY.get(r.leads, r.leads)} | {r.macro_auroc:.3f} "
                     f"({r.macro_auroc_ci_low:.3f}-{r.macro_auroc_ci_high:.3f}) | {r.micro_auroc:.3f} | "
                     f"{r.macro_auprc:.3f} | {paper_s} |")
    lines += ["", "Paper numbers: MIMIC-IV-ECG, 89 labels (paper Table 3); not comparable in data or scale.", ""]
    lines += [f"- {n}" for n in summary.get("notes", [])]
    return "\n".join(lines) + "\n"


def collect_results(out: Path, grid: list[dict[str, str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, per_label = [], []
    for combo in grid:
        d = out / "trials" / trial_name(combo)
        if (d / "metrics.json").is_file():
            rows.append(json.loads((d / "metrics.json").read_text()))
            pl = pd.read_csv(d / "per_label.csv")
            per_label.append(pl.assign(**combo))
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS + ["best_epoch"])[RESULT_COLUMNS] if rows else \
        pd.DataFrame(columns=RESULT_COLUMNS)
    pl = pd.concat(per_label, ignore_index=True) if per_label else pd.DataFrame()
    if len(pl):
        pl = pl[["model", "leads", "strategy", "label", "n_pos", "auroc", "auprc", "included"]]
    return results, pl


