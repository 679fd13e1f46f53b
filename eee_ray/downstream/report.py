"""The benchmark's tables: results.csv / results.md (the paper's Table 3 layout) and per-label AUROC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from eee_ray.downstream.config import trial_name

DISPLAY = {"xresnet1d50": "XResNet1D50", "s4": "S4", "st_mem": "ST-MEM", "eee": "EEE", "eee_random": "EEE (random init)"}
LEAD_DISPLAY = {"II": "Single-lead", "all": "All-leads"}
RESULT_COLUMNS = ["model", "leads", "strategy", "label_fraction", "label_seed", "macro_auroc", "micro_auroc",
                  "macro_auprc", "macro_auroc_ci_low", "macro_auroc_ci_high", "n_labels", "n_train_records",
                  "n_test_records"]
PER_LABEL_COLUMNS = ["model", "leads", "strategy", "label_fraction", "label_seed", "label", "n_pos", "auroc", "auprc",
                     "included", "train_positives", "train_positive_patients"]
EFFICIENCY_COLUMNS = ["model", "leads", "strategy", "label_fraction", "n_seeds", "macro_auroc_mean",
                      "macro_auroc_sd", "macro_auroc_min", "macro_auroc_max", "ci_low_mean", "ci_high_mean",
                      "n_train_records_mean"]
PAPER_TABLE3 = {("xresnet1d50", "II"): (0.893, 0.761), ("xresnet1d50", "all"): (0.909, 0.807),
                ("st_mem", "II"): (0.884, 0.744), ("st_mem", "all"): (0.911, 0.811),
                ("s4", "II"): (0.899, 0.781), ("s4", "all"): (0.917, 0.826), ("eee", "II"): (0.874, 0.712)}


def label_efficiency(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, leads, strategy, label fraction): the macro AUROC's mean and spread over the label seeds
    (subset draws) and the mean of the per-trial 95% bootstrap bounds (the test set's own uncertainty)."""
    if results.empty:
        return pd.DataFrame(columns=EFFICIENCY_COLUMNS)
    g = results.groupby(["model", "leads", "strategy", "label_fraction"], sort=False)
    out = g.agg(n_seeds=("label_seed", "nunique"), macro_auroc_mean=("macro_auroc", "mean"),
                macro_auroc_sd=("macro_auroc", "std"), macro_auroc_min=("macro_auroc", "min"),
                macro_auroc_max=("macro_auroc", "max"), ci_low_mean=("macro_auroc_ci_low", "mean"),
                ci_high_mean=("macro_auroc_ci_high", "mean"), n_train_records_mean=("n_train_records", "mean"))
    out["macro_auroc_sd"] = out["macro_auroc_sd"].fillna(0.0)
    return out.reset_index()[EFFICIENCY_COLUMNS].sort_values(["leads", "label_fraction", "model", "strategy"],
                                                              kind="stable").reset_index(drop=True)


def _model_name(model: str, strategy: str) -> str:
    name = DISPLAY.get(model, model)
    if model.startswith("eee"):
        name += ", linear probe" if strategy == "linear_probe" else ", fine-tuned"
    return name


def efficiency_markdown(eff: pd.DataFrame, what: str = "macro ROC AUC") -> list[str]:
    """Macro AUROC (or ``what`` the table holds) per model (rows) and label fraction (columns), per lead
    configuration: mean over the label seeds with the seeds' min-max, or the 95% bootstrap interval where one seed
    ran."""
    lines = []
    fractions = sorted(eff["label_fraction"].unique())
    for leads, part in eff.groupby("leads", sort=False):
        lines += [f"### Label efficiency, {LEAD_DISPLAY.get(leads, leads)}: {what} vs share of training "
                  "patients", "", "| Model | " + " | ".join(f"{f:g}" for f in fractions) + " |",
                  "|---|" + "---|" * len(fractions)]
        for (model, strategy), rows in part.groupby(["model", "strategy"], sort=False):
            cells = []
            for f in fractions:
                r = rows[rows["label_fraction"] == f]
                if r.empty:
                    cells.append("-")
                    continue
                r = r.iloc[0]
                spread = (f"seeds {r.macro_auroc_min:.3f}-{r.macro_auroc_max:.3f}, n={int(r.n_seeds)}"
                          if r.n_seeds > 1 else f"CI {r.ci_low_mean:.3f}-{r.ci_high_mean:.3f}")
                cells.append(f"{r.macro_auroc_mean:.3f} ({spread})")
            lines.append(f"| {_model_name(model, strategy)} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def results_markdown(results: pd.DataFrame, summary: dict[str, Any], efficiency: pd.DataFrame | None = None) -> str:
    """Table 3 layout (Model | Configuration | Macro | Micro ROC AUC) plus CI, AUPRC and the paper's numbers."""
    lines = [f"# Benchmark results ({summary['dataset']}, {summary['n_labels']} labels, "
             f"{summary['test_records']} test records"
             + (f", {results['label_fraction'].max():g} of the training patients"
                if len(results) and results['label_fraction'].max() < 1 else "") + ")", "",
             "| Model | Configuration | Macro ROC AUC (95% CI) | Micro ROC AUC | Macro AUPRC | Paper macro / micro |",
             "|---|---|---|---|---|---|"]
    full = results[results["label_fraction"] == results["label_fraction"].max()] if len(results) else results
    for r in full.itertuples():
        name = _model_name(r.model, r.strategy)
        paper = PAPER_TABLE3.get((r.model, r.leads)) if r.strategy != "linear_probe" else None
        paper_s = f"{paper[0]:.3f} / {paper[1]:.3f}" if paper and r.model != "eee_random" else "-"
        lines.append(f"| {name} | {LEAD_DISPLAY.get(r.leads, r.leads)} | {r.macro_auroc:.3f} "
                     f"({r.macro_auroc_ci_low:.3f}-{r.macro_auroc_ci_high:.3f}) | {r.micro_auroc:.3f} | "
                     f"{r.macro_auprc:.3f} | {paper_s} |")
    lines += ["", "Paper numbers: MIMIC-IV-ECG, 89 labels (paper Table 3); not comparable in data or scale.", ""]
    if efficiency is not None and efficiency["label_fraction"].nunique() > 1:
        lines += efficiency_markdown(efficiency)
    lines += [f"- {n}" for n in summary.get("notes", [])]
    return "\n".join(lines) + "\n"


def collect_results(out: Path, grid: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
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
        pl = pl.reindex(columns=PER_LABEL_COLUMNS)
    return results, pl




def pretraining_gain_line(efficiency: pd.DataFrame, leads: str = "II", what: str = "macro AUROC") -> str:
    """One sentence on what the label-efficiency table shows: the pretrained EEE linear probe against its
    random-init control at the smallest and the largest label fraction, and whether the evidence is clear (the
    mean 95% bootstrap intervals apart and every subset draw on the same side) or not. ``what`` names the metric
    the table's ``macro_auroc`` columns hold (e.g. one label's AUROC)."""
    e = efficiency[(efficiency["leads"] == leads) & (efficiency["strategy"] == "linear_probe")]
    pre, ctrl = e[e["model"] == "eee"].set_index("label_fraction"), e[e["model"] == "eee_random"].set_index(
        "label_fraction")
    common = sorted(set(pre.index) & set(ctrl.index))
    if not common:
        return "no pretrained EEE linear probe and random-init control at a common label fraction: no gain measured"
    lo, hi = common[0], common[-1]
    p, c = pre.loc[lo], ctrl.loc[lo]
    gap = p.macro_auroc_mean - c.macro_auroc_mean
    apart = p.ci_low_mean > c.ci_high_mean or c.ci_low_mean > p.ci_high_mean
    draws = p.macro_auroc_min > c.macro_auroc_max or c.macro_auroc_min > p.macro_auroc_max
    if apart and draws:
        verdict = "clear: the 95% bootstrap intervals are apart and every subset draw agrees"
    elif draws:
        verdict = "likely: every subset draw agrees, but the 95% bootstrap intervals overlap"
    else:
        verdict = "not established: the subset draws and the 95% bootstrap intervals overlap"
    text = (f"With {lo:g} of the training labels the echo-pretrained EEE linear probe scores {what} "
            f"{p.macro_auroc_mean:.3f} against {c.macro_auroc_mean:.3f} for the same encoder at random init "
            f"({gap:+.3f}; {verdict})")
    if hi != lo:
        gap_hi = pre.loc[hi].macro_auroc_mean - ctrl.loc[hi].macro_auroc_mean
        text += f"; with {hi:g} of them the gap is {gap_hi:+.3f}"
    scratch = efficiency[(efficiency["leads"] == leads) & (efficiency["strategy"] == "scratch")
                         & (efficiency["label_fraction"] == lo)]
    if len(scratch):
        best = scratch.loc[scratch["macro_auroc_mean"].idxmax()]
        side = "below" if best.macro_auroc_mean < p.macro_auroc_mean else "above"
        sure = "apart" if best.ci_high_mean < p.ci_low_mean or p.ci_high_mean < best.ci_low_mean else "overlapping"
        text += (f"; the best model trained from scratch ({DISPLAY.get(best.model, best.model)}) scores "
                 f"{best.macro_auroc_mean:.3f} at {lo:g}, {side} the probe (95% intervals {sure})")
    return text + "."
