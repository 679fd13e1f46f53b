"""The downstream benchmark (SPEC S7, paper section 4): one Ray Tune experiment over model x leads x strategy.

The data set is read once on the driver (Ray Data), materialised to numpy and handed to every trial with
``tune.with_parameters``; each trial trains its model itself (pattern A of SPEC S10, 1 CPU, torch threads = 1) on
random crops, keeps the epoch with the best validation macro AUROC, evaluates the test split with sliding windows,
and is one MLflow run closed in ``finally``. The driver then writes ``results.csv`` / ``results.md`` (Table 3
layout) / ``per_label_auroc.csv`` / ``skipped.csv`` and logs them to a summary MLflow run.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from eee_ray.config import save
from eee_ray.ecgdata.labels import load_mapping, shared_labels_dir
from eee_ray.ecgdata.mimic import find_root, read_mimic
from eee_ray.ecgdata.ptbxl import DEFAULT_LABELS, read_ptbxl
from eee_ray.ecgdata.records import CANONICAL_LEADS, ECGDataset, SignalSpec, build_dataset, lead_names
from eee_ray.ecgdata.windows import AGGREGATES, predict_records, random_crops
from eee_ray.errors import UserError
from eee_ray.io import atomic_torch_save, atomic_write, atomic_write_text
from eee_ray.metrics import evaluate

log = logging.getLogger(__name__)

EXPERIMENT = "eee-benchmark"
MODEL_STRATEGIES: dict[str, tuple[str, ...]] = {
    "xresnet1d50": ("scratch",), "s4": ("scratch",), "st_mem": ("scratch",),
    "eee": ("finetune", "linear_probe"), "eee_random": ("finetune",),
}
DISPLAY = {"xresnet1d50": "XResNet1D50", "s4": "S4", "st_mem": "ST-MEM", "eee": "EEE", "eee_random": "EEE (random init)"}
LEAD_DISPLAY = {"II": "Single-lead", "all": "All-leads"}
RESULT_COLUMNS = ["model", "leads", "strategy", "macro_auroc", "micro_auroc", "macro_auprc", "macro_auroc_ci_low",
                  "macro_auroc_ci_high", "n_labels", "n_test_records"]
PAPER_TABLE3 = {("xresnet1d50", "II"): (0.893, 0.761), ("xresnet1d50", "all"): (0.909, 0.807),
                ("st_mem", "II"): (0.884, 0.744), ("st_mem", "all"): (0.911, 0.811),
                ("s4", "II"): (0.899, 0.781), ("s4", "all"): (0.917, 0.826), ("eee", "II"): (0.874, 0.712)}


@dataclass
class BenchmarkConfig:
    dataset: str = "synthetic"  # mimic | ptbxl | synthetic
    data: str = ""
    output: str = "benchmark"
    pretrained: str = ""  # ecg_encoder.pt of `eee-ray pretrain`; without it `eee` is skipped
    models: list[str] = field(default_factory=list)  # empty: every model (eee only with a pretrained encoder)
    leads: list[str] = field(default_factory=lambda: ["II", "all"])
    strategies: list[str] = field(default_factory=list)  # empty: every strategy of each model
    preset: str = "paper"  # model size preset: paper | tiny
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    crops_per_record: int = 4  # random training crops drawn from each record per epoch
    label_level: str = "category"  # category | code (MIMIC / synthetic)
    mapping: str = "official"  # official | json | paper-table2 | PATH
    labels_csv: str = ""
    ptbxl_labels: list[str] = field(default_factory=lambda: list(DEFAULT_LABELS))
    ptbxl_sample_rate: int = 100
    max_records: int = 0  # 0: all
    min_positives: int = 1  # labels with fewer positives in the usable records are dropped
    aggregate: str = "mean"  # per-record aggregation of window scores: mean | max
    n_bootstrap: int = 1000
    seed: int = 0
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # > 0: trials train on CUDA and are placed on GPU nodes only
    max_concurrent: int = 2
    num_cpus: int = 0  # local Ray size when none is running; 0: all cores
    mlflow_workdir: str = ""  # default: output
    experiment: str = EXPERIMENT
    signal: SignalSpec = field(default_factory=SignalSpec)


def trial_name(combo: dict[str, str]) -> str:
    return f"{combo['model']}__{combo['leads']}__{combo['strategy']}"


def trial_grid(cfg: BenchmarkConfig) -> tuple[list[dict[str, str]], list[str]]:
    """The (model, leads, strategy) combinations to run, and notes on what was left out and why."""
    notes: list[str] = []
    models = cfg.models or list(MODEL_STRATEGIES)
    unknown = [m for m in models if m not in MODEL_STRATEGIES]
    if unknown:
        raise UserError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODEL_STRATEGIES)}")
    for lead in cfg.leads:
        lead_names(lead)
    known_strategies = {s for ss in MODEL_STRATEGIES.values() for s in ss}
    bad = [s for s in cfg.strategies if s not in known_strategies]
    if bad:
        raise UserError(f"unknown strategy {', '.join(bad)}; known: {', '.join(sorted(known_strategies))}")
    if "eee" in models and not cfg.pretrained:
        if cfg.models:
            raise UserError("model eee needs --pretrained PATH (ecg_encoder.pt from `eee-ray pretrain`)")
        models = [m for m in models if m != "eee"]
        notes.append("eee skipped: no --pretrained encoder given (eee_random, the random-init control, still runs)")
    grid = [{"model": m, "leads": lead, "strategy": s} for m in models for lead in cfg.leads
            for s in MODEL_STRATEGIES[m] if not cfg.strategies or s in cfg.strategies]
    if not grid:
        raise UserError("the model x leads x strategy grid is empty; check --models and --strategies")
    return grid, notes


def read_table(cfg: BenchmarkConfig) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The record table of the chosen source, its notes, and every lead any configuration needs (canonical order).

    Cheap (CSV files only), so a wrong folder or labels file fails before Ray or MLflow start."""
    data = Path(cfg.data)
    if not data.is_dir():
        raise UserError(f"--data folder not found: {data}")
    wanted = {lead for config in cfg.leads for lead in lead_names(config)}
    leads = [lead for lead in CANONICAL_LEADS if lead in wanted]
    if cfg.dataset == "ptbxl":
        table, notes = read_ptbxl(data, cfg.ptbxl_labels, cfg.ptbxl_sample_rate, cfg.max_records)
    elif cfg.dataset in ("mimic", "synthetic"):
        root = find_root(data)
        mapping = load_mapping(cfg.mapping, [root, root.parent, shared_labels_dir()])
        table, notes = read_mimic(data, mapping, cfg.label_level, cfg.labels_csv or None, cfg.max_records)
    else:
        raise UserError(f"--dataset must be mimic, ptbxl or synthetic, not {cfg.dataset!r}")
    return table, notes, leads


# --------------------------------------------------------------------------------------------------- one trial


def _build(combo: dict[str, str], n_leads: int, n_classes: int, cfg: BenchmarkConfig):
    from eee_ray.models.registry import build_model

    kwargs: dict[str, Any] = {}
    if combo["model"] in ("eee", "eee_random"):
        kwargs["strategy"] = combo["strategy"]
        if cfg.pretrained:
            kwargs["pretrained"] = cfg.pretrained
    return build_model(combo["model"], n_leads, n_classes, preset=cfg.preset, **kwargs)


def _bce(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if y.size else float("nan")


def _fit(model, data: ECGDataset, leads: list[str], cfg: BenchmarkConfig,
         on_epoch: Callable[[int, dict[str, float]], None]) -> tuple[int, dict[str, float]]:
    """Train on random crops; keep the weights of the epoch with the best validation macro AUROC."""
    import torch

    from eee_ray.models.registry import param_groups

    x_tr, y_tr, _ = data.part("train", leads)
    x_va, y_va, _ = data.part("val", leads)
    if not len(x_tr):
        raise UserError("the training split is empty")
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.weight_decay))
    crops = cfg.crops_per_record if model.window < x_tr.shape[-1] else 1  # a whole-record window has one crop
    steps = max(1, cfg.epochs * math.ceil(len(x_tr) * crops / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    device = next(model.parameters()).device
    best_epoch, best_score, best_state, best_metrics = -1, -math.inf, None, {}
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(np.repeat(np.arange(len(x_tr)), crops))
        if len(order) % cfg.batch_size == 1 and len(order) > 1:
            order = order[:-1]  # a last batch of one breaks batch norm in training mode
        losses, scores, targets = [], [], []
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            xb = torch.from_numpy(random_crops(x_tr[idx], model.window, rng)).to(device)
            yb = torch.from_numpy(y_tr[idx].astype(np.float32)).to(device)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            scores.append(torch.sigmoid(logits.detach()).cpu().numpy())
            targets.append(y_tr[idx])
        train_ev = evaluate(np.concatenate(targets), np.concatenate(scores), data.label_names, n_boot=0)
        metrics = {"train_loss": float(np.mean(losses)), "train_macro_auroc": train_ev.macro_auroc}
        if len(x_va):
            p_va, _ = predict_records(model, x_va, model.window, cfg.aggregate, cfg.batch_size, device)
            val_ev = evaluate(y_va, p_va, data.label_names, n_boot=0)
            metrics.update(val_loss=_bce(y_va, p_va), val_macro_auroc=val_ev.macro_auroc,
                           val_micro_auroc=val_ev.micro_auroc, val_macro_auprc=val_ev.macro_auprc)
        score = metrics.get("val_macro_auroc", float("nan"))
        score = float(epoch) if not np.isfinite(score) else score  # no usable val split: keep the last epoch
        if score > best_score:
            best_epoch, best_score, best_metrics = epoch, score, metrics
            best_state = copy.deepcopy(model.state_dict())
        on_epoch(epoch, metrics)
    model.load_state_dict(best_state)
    return best_epoch, best_metrics


def _write_outputs(out: Path, model, combo: dict[str, str], leads: list[str], data: ECGDataset, cfg: BenchmarkConfig,
                   run_id: str, ids: np.ndarray, y: np.ndarray, p: np.ndarray, emb: np.ndarray) -> None:
    """The per-trial files the analysis stage reads (layout fixed by the interface)."""
    from eee_ray.models.registry import model_spec

    atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / "model.pt")
    meta = {"model_spec": model_spec(model), "model": combo["model"], "leads": leads, "strategy": combo["strategy"],
            "label_names": data.label_names, "window": int(model.window), "sample_rate": cfg.signal.sample_rate,
            "aggregate": cfg.aggregate, "preprocessing": data.preprocessing, "mlflow_run_id": run_id}
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2, default=str))

    def write_npz(path: Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, record_id=np.asarray(ids, dtype=str), embedding=emb.astype(np.float32),
                     y_true=y.astype(np.uint8), y_score=p.astype(np.float32))

    atomic_write(out / "test_outputs.npz", write_npz)


def run_trial(combo: dict[str, str], data: ECGDataset, cfg: BenchmarkConfig, tracking_uri: str, experiment_id: str,
              benchmark_id: str, report: Callable[[dict[str, float]], None] = lambda m: None) -> dict[str, Any]:
    """Train, select on val, test, write the trial folder; one MLflow run that is always closed."""
    import mlflow
    import torch

    from eee_ray.runtime import use_tracking_uri

    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    name = trial_name(combo)
    out = Path(cfg.output) / "trials" / name
    out.mkdir(parents=True, exist_ok=True)
    leads = lead_names(combo["leads"])
    use_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    run = client.create_run(experiment_id, run_name=name, tags={"benchmark_id": benchmark_id, "kind": "trial",
                                                                 **combo})
    run_id, status = run.info.run_id, "FAILED"
    try:
        model = _build(combo, len(leads), len(data.label_names), cfg)
        if cfg.gpus_per_trial > 0:
            if not torch.cuda.is_available():
                raise UserError("gpus_per_trial > 0 but this trial sees no CUDA device")
            model = model.to("cuda")
        params = {**combo, "preset": cfg.preset, "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr,
                  "weight_decay": cfg.weight_decay, "crops_per_record": cfg.crops_per_record, "window": model.window,
                  "aggregate": cfg.aggregate, "n_labels": len(data.label_names), "dataset": cfg.dataset,
                  "pretrained": cfg.pretrained or "", "seed": cfg.seed,
                  "n_params": sum(p.numel() for p in model.parameters())}
        for k, v in params.items():
            client.log_param(run_id, k, v)

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            for k, v in metrics.items():
                if np.isfinite(v):
                    client.log_metric(run_id, k, float(v), step=epoch)
            report({"epoch": epoch, **metrics})

        best_epoch, _ = _fit(model, data, leads, cfg, on_epoch)
        x_te, y_te, ids = data.part("test", leads)
        if not len(x_te):
            raise UserError("the test split is empty")
        p_te, emb = predict_records(model, x_te, model.window, cfg.aggregate, cfg.batch_size,
                                     next(model.parameters()).device)
        ev = evaluate(y_te, p_te, data.label_names, n_boot=cfg.n_bootstrap, seed=cfg.seed)
        _write_outputs(out, model, combo, leads, data, cfg, run_id, ids, y_te, p_te, emb)
        ev.per_label.to_csv(out / "per_label.csv", index=False)
        result = {**combo, **ev.scalars(), "n_test_records": ev.n_records, "best_epoch": best_epoch}
        atomic_write_text(out / "metrics.json", json.dumps(result, indent=2))
        for k, v in ev.scalars().items():
            if np.isfinite(v):
                client.log_metric(run_id, f"test_{k}", float(v))
        client.log_metric(run_id, "best_epoch", best_epoch)
        client.log_artifacts(run_id, str(out), artifact_path="trial")
        status = "FINISHED"
        return result
    finally:
        client.set_terminated(run_id, status)


def _tune_trainable(config: dict, data: ECGDataset = None, cfg: BenchmarkConfig = None, tracking_uri: str = "",
                    experiment_id: str = "", benchmark_id: str = "") -> None:
    from ray import tune

    result = run_trial(config["combo"], data, cfg, tracking_uri, experiment_id, benchmark_id, report=tune.report)
    tune.report({k: v for k, v in result.items() if isinstance(v, (int, float))} | {"done_test": 1})


# --------------------------------------------------------------------------------------------------- tables


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


def _close_running(tracking_uri: str, experiment_id: str, benchmark_id: str) -> int:
    """Mark runs of this benchmark that a killed trial left RUNNING as KILLED."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([experiment_id], filter_string=f"tags.benchmark_id = '{benchmark_id}' and "
                                                             "attributes.status = 'RUNNING'")
    for r in runs:
        client.set_terminated(r.info.run_id, "KILLED")
    return len(runs)


def _collect(out: Path, grid: list[dict[str, str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
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


def run_benchmark(cfg: BenchmarkConfig) -> pd.DataFrame:
    """Build the data set once, run the Tune grid, write and log the tables; returns results.csv's contents."""
    import mlflow
    from ray import tune

    from eee_ray.runtime import init_ray, setup_mlflow

    if cfg.aggregate not in AGGREGATES:
        raise UserError(f"--aggregate must be one of {', '.join(AGGREGATES)}")
    if cfg.preset not in ("paper", "tiny"):
        raise UserError(f"--preset must be paper or tiny, not {cfg.preset!r}")
    if cfg.epochs < 1:
        raise UserError("--epochs must be >= 1")
    if cfg.pretrained and not Path(cfg.pretrained).is_file():
        raise UserError(f"pretrained encoder not found: {cfg.pretrained}")
    grid, notes = trial_grid(cfg)
    table, data_notes, leads = read_table(cfg)
    out = Path(cfg.output).resolve()
    cfg.output = str(out)
    out.mkdir(parents=True, exist_ok=True)
    save(cfg, out / "config.yaml")
    benchmark_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    uri, exp_id = setup_mlflow(cfg.mlflow_workdir or out, cfg.experiment)
    init_ray(cfg.num_cpus or None)

    data = build_dataset(table, leads, cfg.signal, cfg.min_positives)
    notes = data_notes + data.notes + notes
    data.skipped.to_csv(out / "skipped.csv", index=False)
    for n in notes:
        log.info(n)
    log.info("benchmark %s: %d trials, data %s", benchmark_id, len(grid), data.summary())

    trainable = tune.with_parameters(_tune_trainable, data=data, cfg=cfg, tracking_uri=uri, experiment_id=exp_id,
                                     benchmark_id=benchmark_id)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial}),
        param_space={"combo": tune.grid_search(grid)},
        tune_config=tune.TuneConfig(max_concurrent_trials=cfg.max_concurrent),
        run_config=tune.RunConfig(name=f"benchmark-{benchmark_id}", storage_path=str(out / "tune"),
                                  failure_config=tune.FailureConfig(max_failures=0), verbose=1))
    grid_results = tuner.fit()
    closed = _close_running(uri, exp_id, benchmark_id)
    failed = [f"trial {r.config['combo']} failed: {str(r.error).strip().splitlines()[-1][:200]}"
              for r in grid_results if r.error is not None]
    notes += failed + ([f"{closed} MLflow run(s) left RUNNING were marked KILLED"] if closed else [])

    results, per_label = _collect(out, grid)
    atomic_write(out / "results.csv", lambda p: results.to_csv(p, index=False))
    atomic_write(out / "per_label_auroc.csv", lambda p: per_label.to_csv(p, index=False))
    summary = {"benchmark_id": benchmark_id, "dataset": cfg.dataset, "n_labels": len(data.label_names),
               "label_names": data.label_names, **data.summary(), "trials": len(grid), "completed": len(results),
               "failed": len(failed), "notes": notes, "tracking_uri": uri}
    atomic_write_text(out / "results.md", results_markdown(results, summary))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    with mlflow.start_run(experiment_id=exp_id, run_name=f"summary-{benchmark_id}",
                          tags={"benchmark_id": benchmark_id, "kind": "summary"}):
        mlflow.log_params({"dataset": cfg.dataset, "preset": cfg.preset, "epochs": cfg.epochs,
                           "trials": len(grid), "records": len(data.record_ids), "skipped": len(data.skipped)})
        for name in ("results.csv", "results.md", "per_label_auroc.csv", "skipped.csv", "config.yaml",
                     "summary.json"):
            mlflow.log_artifact(str(out / name))
    if failed and results.empty:
        raise RuntimeError("every benchmark trial failed:\n" + "\n".join(failed))
    return results
