"""`eee-ray analyze` on a benchmark folder with known ground truth: one model whose embeddings carry the categories,
one whose embeddings are noise. The LDA summary must tell them apart, the AUROC table must equal sklearn's on the
trial outputs, and the figures and the MLflow run "analysis" must exist."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from _platform_helpers import start_store
from eee_ray.analyze import assign_classes
from eee_ray.cli import main

LABELS = ["HF", "AORTIC", "PERICARD", "PULM", "RARE"]


def _write_trial(bench: Path, model: str, leads: list[str], strategy: str, informative: bool,
                 rng: np.random.Generator) -> None:
    n, dim = 160, 48
    y = np.zeros((n, len(LABELS)), np.uint8)
    primary = rng.integers(0, 4, n)
    y[np.arange(n), primary] = 1
    y[rng.random(n) < 0.15, 0] = 1  # multi-label records: HF on top of another category
    y[:2, 4] = 1  # a category with too few records to plot
    centres = rng.normal(0, 3.0, (4, dim))
    emb = rng.normal(0, 1.0, (n, dim)) + (centres[primary] if informative else 0.0)
    score = np.clip(y * (0.35 if informative else 0.0) + rng.random(y.shape) * 0.65, 0, 1)
    d = bench / "trials" / f"{model}__{'II' if len(leads) == 1 else 'all'}__{strategy}"
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"model": model, "leads": leads, "strategy": strategy,
                                             "label_names": LABELS, "window": 250, "sample_rate": 100}))
    np.savez(d / "test_outputs.npz", record_id=np.array([f"r{i}" for i in range(n)]),
             embedding=emb.astype(np.float32), y_true=y, y_score=score.astype(np.float32))


def distinct_colours(img: np.ndarray) -> int:
    """The number of distinct RGB colours of an image (packed into one integer: ``np.unique(axis=0)`` on rows sorts
    them as structured records, 1-2 s a figure)."""
    rgb = img.reshape(-1, 3).astype(np.uint32)
    return len(np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2]))


@pytest.fixture(scope="module")
def bench(tmp_path_factory, _empty_mlflow_store) -> Path:
    root = tmp_path_factory.mktemp("analyze")
    start_store(root, _empty_mlflow_store)   # the default store of `analyze`: beside the benchmark folder
    bench = root / "bench"
    bench.mkdir()
    rng = np.random.default_rng(0)
    for leads in (["II"], ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]):
        _write_trial(bench, "eee", leads, "finetune", True, rng)
        _write_trial(bench, "eee", leads, "linear_probe", True, rng)
        _write_trial(bench, "xresnet1d50", leads, "scratch", False, rng)
    return bench


def test_rarest_positive_wins():
    y = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 0, 1], [1, 0, 0]], np.uint8)
    # prevalence: A=4, B=1, C=1 -> B and C beat A; a record with none is left out ('')
    assert list(assign_classes(y, ["A", "B", "C"], ["A", "B", "C"])) == ["B", "A", "", "C", "A"]


def test_analyze_end_to_end(bench, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "analysis"
    assert main(["analyze", "--benchmark", str(bench), "--output", str(out)]) == 0
    from PIL import Image

    for name in ("lda_grid.png", "roc_curves.png", "per_label_auroc_heatmap.png"):
        img = np.asarray(Image.open(out / name).convert("RGB"))
        assert min(img.shape[:2]) > 300, name
        assert distinct_colours(img) > 50, f"{name} looks blank"  # drawn, not an empty canvas
    assert yaml.safe_load((out / "config.yaml").read_text())["benchmark"] == str(bench)

    lda = pd.read_csv(out / "lda_summary.csv").set_index("trial")
    assert len(lda) == 6
    assert (lda["n_classes"] == 4).all()  # RARE (2 records) dropped, HF kept
    good = lda[lda["model"] == "eee"]["cv_balanced_accuracy"]
    noise = lda[lda["model"] == "xresnet1d50"]["cv_balanced_accuracy"]
    assert good.min() > 0.9, good
    assert noise.max() < 0.45, noise  # chance is 0.25

    table = pd.read_csv(out / "per_label_auroc.csv", index_col="trial")
    assert table.shape == (6, len(LABELS))
    z = np.load(bench / "trials" / "eee__II__finetune" / "test_outputs.npz")
    expected = roc_auc_score(z["y_true"][:, 1], z["y_score"][:, 1])
    assert table.loc["EEE (fine-tune), Lead II", "AORTIC"] == pytest.approx(expected)

    mlflow.set_tracking_uri(f"sqlite:///{bench.resolve().parent / 'mlflow.db'}")  # beside the benchmark folder
    runs = mlflow.search_runs(experiment_names=["eee-benchmark"], filter_string="tags.mlflow.runName = 'analysis'")
    assert len(runs) == 1
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs.run_id[0], "analysis")}
    assert "analysis/lda_grid.png" in arts and "analysis/per_label_auroc_heatmap.png" in arts


def test_analyze_refuses_a_folder_without_trials(tmp_path, capsys):
    assert main(["analyze", "--benchmark", str(tmp_path)]) == 2
    assert "no trials/ folder" in capsys.readouterr().err


def test_tiny_test_split_still_gives_figures(tmp_path):
    """A demo-sized test split (6 records, one label never positive) draws placeholders instead of failing."""
    from eee_ray.analyze import AnalyzeConfig, load_trials, per_label_auroc, plot_lda_grid, plot_roc

    rng = np.random.default_rng(0)
    d = tmp_path / "trials" / "s4__II__scratch"
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"model": "s4", "leads": ["II"], "strategy": "scratch",
                                             "label_names": ["A", "B"]}))
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0], [1, 0], [0, 0]], np.uint8)
    np.savez(d / "test_outputs.npz", record_id=np.arange(6).astype(str), embedding=rng.normal(size=(6, 8)),
             y_true=y, y_score=rng.random((6, 2)))
    trials = load_trials(tmp_path)
    summary = plot_lda_grid(trials, ["A", "B"], AnalyzeConfig(), tmp_path / "lda.png")
    plot_roc(trials, tmp_path / "roc.png")
    assert summary.empty and (tmp_path / "lda.png").is_file() and (tmp_path / "roc.png").is_file()
    assert np.isnan(per_label_auroc(trials).loc["S4, Lead II", "B"])


def test_label_efficiency_figure_and_full_fraction_panels(tmp_path):
    """A benchmark with a label-fraction axis: the curves are drawn from results.csv, and the LDA/ROC/per-label
    figures show only the trials of the largest fraction (one per model and lead configuration)."""
    from PIL import Image

    from eee_ray.analyze import full_label_trials, load_trials, plot_label_efficiency

    rng = np.random.default_rng(1)
    for frac, seed in ((1.0, 0), (0.1, 0), (0.1, 1)):
        _write_trial(tmp_path, "eee", ["II"], "finetune", False, rng)
        d = tmp_path / "trials" / "eee__II__finetune"
        meta = json.loads((d / "meta.json").read_text()) | {"label_fraction": frac, "label_seed": seed}
        (d / "meta.json").write_text(json.dumps(meta))
        d.rename(tmp_path / "trials" / f"eee__II__finetune__lf{frac:g}__s{seed}")
    shown = full_label_trials(load_trials(tmp_path))
    assert [(t.label_fraction, t.label_seed) for t in shown] == [(1.0, 0)]

    rows = [{"model": m, "leads": lead, "strategy": s, "label_fraction": f, "label_seed": k,
             "macro_auroc": a, "macro_auroc_ci_low": a - 0.05, "macro_auroc_ci_high": a + 0.05}
            for m, s, base in (("eee", "finetune", 0.8), ("eee", "linear_probe", 0.75), ("s4", "scratch", 0.6))
            for lead in ("II", "all") for f, ks in ((0.02, 3), (0.1, 3), (1.0, 1)) for k in range(ks)
            for a in [base - 0.1 * (f < 0.5) + 0.01 * k]]
    plot_label_efficiency(pd.DataFrame(rows), tmp_path / "label_efficiency.png")
    img = np.asarray(Image.open(tmp_path / "label_efficiency.png").convert("RGB"))
    assert min(img.shape[:2]) > 300 and distinct_colours(img) > 50
