"""Figures of a finished benchmark (docs/contract.md, Analysis and inference, paper section 4.5): LDA grid, ROC curves,
per-label AUROC heat map, and the label-efficiency curves (macro AUROC against the share of labelled training
patients) when the benchmark ran more than one label fraction.

Reads each trial's ``test_outputs.npz`` (record-averaged penultimate embeddings, labels, scores) and ``meta.json``
under ``<benchmark>/trials/``; writes PNGs and CSVs to the output folder and logs them to an MLflow run "analysis".

LDA classes for multi-label records: every record gets the *rarest* of its positive labels among the plotted
categories (the most specific finding wins, so a small category is not swallowed by a common one); records with no
positive among them are left out. The projection is fitted on all plotted records (as in the paper); to tell real
separation from LDA's over-fitting of high-dimensional embeddings, each panel also reports the 5-fold cross-validated
balanced accuracy of the same (shrinkage) LDA used as a classifier.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from eee_ray.config import MlflowConfig
from eee_ray.downstream import DISPLAY, EXPERIMENT, MODEL_STRATEGIES
from eee_ray.errors import UserError
from eee_ray.io import atomic_write, atomic_write_text

log = logging.getLogger(__name__)

STRATEGY_NAMES = {"scratch": "from scratch", "finetune": "fine-tune", "linear_probe": "linear probe"}


@dataclass
class AnalyzeConfig:
    """Where to read and write, which categories to plot, and the thresholds of the LDA panels."""

    benchmark: str = ""
    output: str = ""  # default: <benchmark>/analysis
    categories: list[str] = field(default_factory=list)  # labels to plot; default: the most frequent ones
    max_categories: int = 5  # how many frequent labels to plot when ``categories`` is empty
    min_records_per_category: int = 5  # smaller LDA classes are dropped (too few points to fit or see)
    cv_folds: int = 5  # folds of the cross-validated LDA accuracy shown on each panel (fewer if a class is smaller)
    seed: int = 0
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)  # default: the store and experiment of the benchmark

    def validate(self) -> None:
        from eee_ray import storage

        storage.check_dir(self.benchmark, "--benchmark")
        if self.output:
            storage.check_bucket(self.output, "--output")
        if self.max_categories < 1 or self.min_records_per_category < 1:
            raise UserError("max_categories and min_records_per_category must be >= 1")


@dataclass
class Trial:
    """One benchmark trial's test outputs and identity."""

    name: str
    model: str
    strategy: str
    leads: list[str]
    label_names: list[str]
    record_id: np.ndarray
    embedding: np.ndarray
    y_true: np.ndarray
    y_score: np.ndarray
    label_fraction: float = 1.0
    label_seed: int = 0

    @property
    def lead_config(self) -> str:
        return f"Lead {self.leads[0]}" if len(self.leads) == 1 else f"{len(self.leads)} leads"

    @property
    def row(self) -> str:
        """The figure row: the model, plus the strategy for the models that have two (EEE)."""
        name = DISPLAY.get(self.model, self.model)
        if len(MODEL_STRATEGIES.get(self.model, ())) < 2:
            return name
        return f"{name} ({STRATEGY_NAMES.get(self.strategy, self.strategy)})"

    @property
    def order(self) -> tuple:
        known = list(DISPLAY)  # the paper's order
        return (known.index(self.model) if self.model in known else len(known), self.model, self.strategy != "finetune",
                self.strategy, len(self.leads) > 1, self.leads)


def load_trials(benchmark: Path) -> list[Trial]:
    """Every trial folder with both ``meta.json`` and ``test_outputs.npz``, in a stable order."""
    trials_dir = benchmark / "trials"
    if not trials_dir.is_dir():
        raise UserError(f"no trials/ folder in {benchmark}: is this the output folder of `eee-ray benchmark`?")
    trials = []
    for d in sorted(p for p in trials_dir.iterdir() if p.is_dir()):
        meta_path, npz_path = d / "meta.json", d / "test_outputs.npz"
        if not (meta_path.is_file() and npz_path.is_file()):
            log.warning("skipping %s: no meta.json or test_outputs.npz (trial not finished?)", d.name)
            continue
        meta = json.loads(meta_path.read_text())
        with np.load(npz_path, allow_pickle=False) as z:
            trials.append(Trial(name=d.name, model=meta["model"], strategy=meta.get("strategy", "finetune"),
                                leads=list(meta["leads"]), label_names=list(meta["label_names"]),
                                record_id=z["record_id"].astype(str), embedding=z["embedding"].astype(np.float64),
                                y_true=z["y_true"].astype(np.int8), y_score=z["y_score"].astype(np.float64),
                                label_fraction=float(meta.get("label_fraction", 1.0)),
                                label_seed=int(meta.get("label_seed", 0))))
    if not trials:
        raise UserError(f"no finished trials (meta.json + test_outputs.npz) under {trials_dir}")
    return sorted(trials, key=lambda t: t.order)


def choose_categories(trials: list[Trial], cfg: AnalyzeConfig) -> list[str]:
    """The user's categories, else the ``max_categories`` labels with most positives in the test sets."""
    names = trials[0].label_names
    if cfg.categories:
        unknown = [c for c in cfg.categories if c not in names]
        if unknown:
            raise UserError(f"unknown categories {unknown}; the benchmark's labels are: {', '.join(names)}")
        return list(cfg.categories)
    counts = pd.Series(0, index=names)
    for t in trials:
        counts += pd.Series(t.y_true.sum(axis=0), index=t.label_names).reindex(names, fill_value=0)
    return [c for c in counts.sort_values(ascending=False, kind="stable").index[: cfg.max_categories]
            if counts[c] > 0]


def assign_classes(y_true: np.ndarray, label_names: list[str], categories: list[str]) -> np.ndarray:
    """One class per record: the rarest positive category (most specific); '' where none is positive."""
    idx = [label_names.index(c) for c in categories]
    y = y_true[:, idx].astype(bool)
    prevalence = y.sum(axis=0)
    order = np.argsort(prevalence, kind="stable")  # rarest first
    out = np.full(len(y), "", dtype=object)
    for j in order[::-1]:  # assign commonest first, rarer ones overwrite
        out[y[:, j]] = categories[j]
    return out


@dataclass
class LdaPanel:
    """The 1-D or 2-D LDA coordinates of one trial and how well its classes separate."""

    coords: np.ndarray
    classes: np.ndarray
    cv_balanced_accuracy: float
    chance: float


def lda_panel(trial: Trial, categories: list[str], cfg: AnalyzeConfig) -> LdaPanel | None:
    """Standardise, fit shrinkage LDA on the plotted records, project; None when fewer than two classes remain."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = assign_classes(trial.y_true, trial.label_names, categories)
    keep = classes != ""
    values, counts = np.unique(classes[keep], return_counts=True)
    big = set(values[counts >= cfg.min_records_per_category])
    keep &= np.isin(classes, list(big))
    if len(big) < 2:
        return None
    x, y = trial.embedding[keep], classes[keep]

    def make():
        return make_pipeline(StandardScaler(), LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto"))

    pipe = make().fit(x, y)
    coords = pipe.transform(x)[:, :2]
    folds = min(cfg.cv_folds, int(pd.Series(y).value_counts().min()))
    acc = np.nan  # a class with a single record cannot be cross-validated
    if folds >= 2:
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=cfg.seed)
        acc = float(np.mean(cross_val_score(make(), x, y, cv=cv, scoring="balanced_accuracy")))
    return LdaPanel(coords=coords, classes=y, cv_balanced_accuracy=acc, chance=1.0 / len(big))


def _grid(trials: list[Trial]) -> tuple[list[str], list[str], dict[tuple[str, str], Trial]]:
    rows = list(dict.fromkeys(t.row for t in trials))
    cols = sorted(dict.fromkeys(t.lead_config for t in trials), key=lambda c: (not c.startswith("Lead"), c))
    return rows, cols, {(t.row, t.lead_config): t for t in trials}


def plot_lda_grid(trials: list[Trial], categories: list[str], cfg: AnalyzeConfig, path: Path) -> pd.DataFrame:
    """Figure 3: rows = model (and strategy), columns = lead configuration; returns the per-panel summary."""
    import matplotlib.pyplot as plt

    rows, cols, cell = _grid(trials)
    colors = {c: plt.get_cmap("tab10")(i % 10) for i, c in enumerate(categories)}
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(4.2 * len(cols) + 1.8, 3.6 * len(rows)), squeeze=False)
    summary, plotted = [], []
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i][j]
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(c, fontsize=13, fontweight="bold", pad=18)
            if j == 0:
                ax.set_ylabel(r, fontsize=12, fontweight="bold")
            t = cell.get((r, c))
            panel = lda_panel(t, categories, cfg) if t is not None else None
            if panel is None:
                ax.text(0.5, 0.5, "not run" if t is None else "fewer than 2 categories\nwith enough records",
                        ha="center", va="center", transform=ax.transAxes, color="0.4")
                continue
            rng = np.random.default_rng(cfg.seed)
            for cat in categories:
                m = panel.classes == cat
                if not m.any():
                    continue
                xy = panel.coords[m]
                y2 = xy[:, 1] if xy.shape[1] > 1 else rng.uniform(-1, 1, m.sum())  # 2 classes: LD1 + jitter
                ax.scatter(xy[:, 0], y2, s=14, alpha=0.7, color=colors[cat], edgecolors="none")
            ax.set_xlabel("LD1", fontsize=9)
            if j > 0:
                ax.set_ylabel("LD2" if panel.coords.shape[1] > 1 else "jitter", fontsize=9)
            ax.text(0.02, 1.01, f"{cfg.cv_folds}-fold LDA bal. acc. {panel.cv_balanced_accuracy:.2f} (chance {panel.chance:.2f}), "
                    f"n={len(panel.classes)}", transform=ax.transAxes, fontsize=8, va="bottom")
            plotted.append(panel.classes)
            summary.append({"trial": t.name, "model": t.model, "strategy": t.strategy, "leads": c,
                            "n_records": len(panel.classes), "n_classes": len(set(panel.classes)),
                            "cv_balanced_accuracy": panel.cv_balanced_accuracy, "chance": panel.chance})
    shown = [c for c in categories if any(c in set(panel_classes) for panel_classes in plotted)]
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colors[c], label=c) for c in shown]
    fig.legend(handles=handles, title="category (rarest positive)", loc="center right", frameon=False)
    fig.suptitle("LDA of record-averaged penultimate embeddings (test set)", fontsize=14, y=0.995)
    fig.tight_layout(rect=(0, 0, 1 - 1.6 / fig.get_figwidth(), 0.98))
    _save_fig(fig, path)
    return pd.DataFrame(summary)


def _roc_curves(y_true: np.ndarray, y_score: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Macro (per-label TPR averaged on a common FPR grid) and micro ROC, over labels with both classes present."""
    from sklearn.metrics import roc_auc_score, roc_curve

    ok = (y_true.min(axis=0) == 0) & (y_true.max(axis=0) == 1)
    if not ok.any():
        return {}
    yt, ys = y_true[:, ok], y_score[:, ok]
    grid = np.linspace(0, 1, 201)
    tprs = []
    for k in range(yt.shape[1]):
        fpr, tpr, _ = roc_curve(yt[:, k], ys[:, k])
        tprs.append(np.interp(grid, fpr, tpr))
    macro_auc = float(roc_auc_score(yt, ys, average="macro"))
    fpr, tpr, _ = roc_curve(yt.ravel(), ys.ravel())
    micro_auc = float(roc_auc_score(yt, ys, average="micro"))
    return {"macro": (grid, np.mean(tprs, axis=0), macro_auc), "micro": (fpr, tpr, micro_auc)}


def plot_roc(trials: list[Trial], path: Path) -> None:
    """Columns = lead configuration, rows = macro / micro average; one curve per model (and strategy)."""
    import matplotlib.pyplot as plt

    rows, cols, cell = _grid(trials)
    fig, axes = plt.subplots(2, len(cols), figsize=(5.2 * len(cols), 9.5), squeeze=False)
    colors = {r: plt.get_cmap("tab10")(i % 10) for i, r in enumerate(rows)}
    for j, c in enumerate(cols):
        for r in rows:
            t = cell.get((r, c))
            if t is None:
                continue
            curves = _roc_curves(t.y_true, t.y_score)
            for i, avg in enumerate(curves):
                x, y, auc = curves[avg]
                axes[i][j].plot(x, y, color=colors[r], lw=1.8, label=f"{r}  AUC {auc:.3f}")
        for i, avg in enumerate(("macro", "micro")):
            ax = axes[i][j]
            ax.plot([0, 1], [0, 1], ls=":", color="0.5", lw=1)
            ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate",
                   title=f"{c}: {avg}-average ROC")
            ax.legend(loc="lower right", fontsize=8)
    fig.suptitle("ROC curves on the test set", fontsize=14)
    fig.tight_layout()
    _save_fig(fig, path)


def per_label_auroc(trials: list[Trial]) -> pd.DataFrame:
    """Rows = trial (model, strategy, leads), columns = labels; NaN where a label has one class in the test set."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for t in trials:
        row = {}
        for k, name in enumerate(t.label_names):
            yk = t.y_true[:, k]
            row[name] = float(roc_auc_score(yk, t.y_score[:, k])) if 0 < yk.sum() < len(yk) else np.nan
        out[f"{t.row}, {t.lead_config}"] = row
    return pd.DataFrame.from_dict(out, orient="index")


def plot_heatmap(table: pd.DataFrame, positives: dict[str, int], path: Path) -> None:
    """``positives``: test positives per label, shown under each label (a 0.9 on 3 positives means little)."""
    import matplotlib.pyplot as plt

    n_r, n_c = table.shape
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * n_c + 4.5), max(3.0, 0.45 * n_r + 2.2)))
    values = table.to_numpy(dtype=float)
    im = ax.imshow(values, cmap="RdYlGn", vmin=0.5, vmax=1.0, aspect="auto")
    ticks = [f"{c}\n(n+={positives.get(c, 0)})" for c in table.columns]
    ax.set_xticks(range(n_c), ticks, rotation=45 if n_c > 6 else 0, ha="right" if n_c > 6 else "center")
    ax.set_yticks(range(n_r), table.index)
    if n_r * n_c <= 600:
        for (i, j), v in np.ndenumerate(values):
            dark = not np.isnan(v) and (v < 0.6 or v > 0.93)
            ax.text(j, i, "n/a" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    fig.colorbar(im, ax=ax, label="AUROC (test set)", fraction=0.04)
    ax.set_title("Per-label AUROC: (model, lead configuration) x label, n+ = test positives")
    fig.tight_layout()
    _save_fig(fig, path)


def full_label_trials(trials: list[Trial]) -> list[Trial]:
    """The trials of the largest label fraction and its first label seed: one per (model, strategy, leads), the
    set the LDA, ROC and per-label figures show."""
    top = max(t.label_fraction for t in trials)
    at_top = [t for t in trials if t.label_fraction == top]
    seed = min(t.label_seed for t in at_top)
    return [t for t in at_top if t.label_seed == seed]


def plot_label_efficiency(results: pd.DataFrame, path: Path, ylabel: str = "macro ROC AUC (test set)") -> None:
    """Macro AUROC (or what ``ylabel`` names, held in ``macro_auroc``) against the share of labelled training
    patients (log axis), one panel per lead configuration, one colour per model (and strategy): each seed's point
    with its 95% bootstrap interval, a line through the mean over seeds and a band over the seeds' min-max."""
    import matplotlib.pyplot as plt

    res = results.copy()
    res["row"] = [Trial(name="", model=m, strategy=s, leads=[], label_names=[], record_id=np.array([]),
                        embedding=np.array([]), y_true=np.array([]), y_score=np.array([])).row
                  for m, s in zip(res["model"], res["strategy"])]
    leads = sorted(res["leads"].unique(), key=lambda c: (c != "II", c))
    rank = {m: i for i, m in enumerate(DISPLAY)}  # the paper's order
    rows = list(dict.fromkeys(r for *_, r in sorted(zip(res["model"].map(lambda m: rank.get(m, len(rank))),
                                                        res["strategy"] != "finetune", res["row"]))))
    colors = {r: plt.get_cmap("tab10")(i % 10) for i, r in enumerate(rows)}
    fig, axes = plt.subplots(1, len(leads), figsize=(6.0 * len(leads) + 2.2, 4.8), squeeze=False, sharey=True)
    fractions = sorted(res["label_fraction"].unique())
    for j, lead in enumerate(leads):
        ax = axes[0][j]
        for k, r in enumerate(rows):
            part = res[(res["leads"] == lead) & (res["row"] == r)]
            if part.empty:
                continue
            g = part.groupby("label_fraction")["macro_auroc"]
            mean, lo, hi = g.mean(), g.min(), g.max()
            ax.plot(mean.index, mean.values, "-", color=colors[r], lw=1.8, label=r)
            ax.fill_between(mean.index, lo.values, hi.values, color=colors[r], alpha=0.12, lw=0)
            shift = 1.0 + 0.04 * (k - (len(rows) - 1) / 2)  # side by side, so the intervals stay readable
            x = part["label_fraction"].to_numpy() * shift
            err = np.vstack([part["macro_auroc"] - part["macro_auroc_ci_low"],
                             part["macro_auroc_ci_high"] - part["macro_auroc"]]).clip(min=0)
            ax.errorbar(x, part["macro_auroc"], yerr=err, fmt="o", ms=3.5, color=colors[r], elinewidth=0.8,
                        capsize=1.5, alpha=0.8)
        ax.axhline(0.5, ls=":", color="0.5", lw=1)
        ax.set_xscale("log")
        ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
        ax.minorticks_off()
        ax.set(xlabel="share of training patients with labels", title=LEAD_TITLES.get(lead, lead))
        if j == 0:
            ax.set_ylabel(ylabel)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h), labels.append(lab)
    fig.legend(handles, labels, loc="center right", frameon=False, fontsize=9)
    fig.suptitle("Label efficiency\npoints: one subset draw with its 95% bootstrap interval; line: mean over draws; "
                 "band: their min-max", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1 - 2.2 / fig.get_figwidth(), 0.92))
    _save_fig(fig, path)


LEAD_TITLES = {"II": "Lead II", "all": "12 leads"}


def _save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def _mlflow_for(cfg: AnalyzeConfig, bench: Path) -> str:
    """Log where the benchmark logged: its store (from its summary.json) and its experiment, unless told otherwise.

    Returns the benchmark's parent run id when that run is in the chosen store and experiment ("" otherwise): the
    analysis run is nested under it."""
    import mlflow

    from eee_ray.runtime import setup_mlflow, use_tracking_uri

    summary = bench / "summary.json"
    recorded = json.loads(summary.read_text()) if summary.is_file() else {}
    if cfg.mlflow.dir or not recorded.get("tracking_uri"):
        _, exp_id = setup_mlflow(cfg.mlflow, bench, EXPERIMENT)
    else:
        use_tracking_uri(recorded["tracking_uri"])
        exp_id = mlflow.set_experiment(cfg.mlflow.experiment or EXPERIMENT).experiment_id  # the benchmark made it
    parent = recorded.get("mlflow_run_id", "")
    if not parent:
        return ""
    try:
        return parent if mlflow.MlflowClient().get_run(parent).info.experiment_id == exp_id else ""
    except mlflow.exceptions.MlflowException:  # another store: the parent is not there
        return ""


def _read_by_analysis(rel: str) -> bool:
    """The files of a benchmark output that the analysis reads (not the trials' weights or the prepared store)."""
    return rel in ("results.csv", "summary.json") or (
        rel.startswith("trials/") and rel.rsplit("/", 1)[-1] in ("meta.json", "test_outputs.npz"))


def run_analysis(cfg: AnalyzeConfig) -> str:
    """All figures and tables of one benchmark, logged to MLflow; returns the output folder (or URI).

    A benchmark in a bucket is mirrored to the local cache first (its trials' test outputs are read whole); an
    output in a bucket is written to a local temporary folder and uploaded, file by file, at the end."""
    import tempfile

    from eee_ray import storage

    cfg.validate()
    bench = Path(cfg.benchmark)
    if storage.is_uri(cfg.benchmark):
        bench = storage.mirror(cfg.benchmark, storage.cache_path("data", cfg.benchmark), names=_read_by_analysis)
    dest = cfg.output or (storage.join(cfg.benchmark, "analysis") if storage.is_uri(cfg.benchmark)
                          else str(bench / "analysis"))
    if not storage.is_uri(dest):
        _analyse(cfg, bench, Path(dest))
        return dest
    with tempfile.TemporaryDirectory(prefix="eee-ray-analysis-") as tmp:
        _analyse(cfg, bench, Path(tmp))
        storage.upload_tree(tmp, dest)
    return dest


def _analyse(cfg: AnalyzeConfig, bench: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import mlflow

    from eee_ray.config import flat_params, save

    all_trials = load_trials(bench)
    trials = full_label_trials(all_trials)
    if len(trials) < len(all_trials):
        log.info("LDA, ROC and per-label figures show the %d trials at label fraction %g (seed %d)", len(trials),
                 trials[0].label_fraction, trials[0].label_seed)
    categories = choose_categories(trials, cfg)
    log.info("analysing %d trials; LDA categories: %s", len(trials), ", ".join(categories))

    lda = plot_lda_grid(trials, categories, cfg, out / "lda_grid.png")
    plot_roc(trials, out / "roc_curves.png")
    table = per_label_auroc(trials)
    positives = {n: int(max(t.y_true[:, t.label_names.index(n)].sum() for t in trials if n in t.label_names))
                 for n in table.columns}
    plot_heatmap(table, positives, out / "per_label_auroc_heatmap.png")
    results_csv = bench / "results.csv"
    results = pd.read_csv(results_csv) if results_csv.is_file() else pd.DataFrame()
    if "label_fraction" in results and results["label_fraction"].nunique() > 1:
        plot_label_efficiency(results, out / "label_efficiency.png")
    else:
        log.info("no label-efficiency figure: the benchmark ran one label fraction")
    atomic_write_text(out / "lda_summary.csv", lda.to_csv(index=False))
    atomic_write_text(out / "per_label_auroc.csv", table.to_csv(index_label="trial"))
    save(cfg, out / "config.yaml")

    from eee_ray.tracking import run_tags

    parent = _mlflow_for(cfg, bench)
    benchmark_id = json.loads((bench / "summary.json").read_text()).get("benchmark_id", "") \
        if (bench / "summary.json").is_file() else ""
    with mlflow.start_run(run_name="analysis", tags=run_tags("analysis", "eee-ray analyze", parent,
                                                             benchmark_id=benchmark_id)):
        mlflow.set_tag("stage", "analysis")
        mlflow.log_params({**{k: str(v) for k, v in flat_params(cfg).items()}, "lda_categories": ",".join(categories)})
        for rec in lda.to_dict("records"):
            mlflow.log_metric(f"lda_cv_bal_acc.{rec['trial']}", rec["cv_balanced_accuracy"])
        mlflow.log_artifacts(str(out), artifact_path="analysis")
