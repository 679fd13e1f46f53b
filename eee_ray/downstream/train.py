"""One benchmark trial: train on random crops, keep the best validation epoch, test with sliding windows, write
the trial folder, and record it all as one MLflow run that is always closed."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from eee_ray.downstream.config import BenchmarkConfig, trial_name
from eee_ray.downstream.prepare import PreparedData
from eee_ray.downstream.subsets import training_mask
from eee_ray.ecgdata.records import ECGDataset, lead_names
from eee_ray.ecgdata.windows import predict_records, random_crops
from eee_ray.errors import UserError
from eee_ray.io import atomic_torch_save, atomic_write, atomic_write_text
from eee_ray.metrics import evaluate

def _build(combo: dict[str, str], n_leads: int, n_classes: int, cfg: BenchmarkConfig):
    from eee_ray.models.registry import build_model

    kwargs: dict[str, Any] = {}
    if combo["model"] in ("eee", "eee_random"):
        kwargs["strategy"] = combo["strategy"]
        if cfg.pretrained:
            kwargs["pretrained"] = cfg.pretrained
    return build_model(combo["model"], n_leads, n_classes, preset=cfg.preset, **kwargs)


def _neutral_head(model, y_tr: np.ndarray) -> None:
    """Zero weights and each bias at the log-odds of its label's training prevalence: the first steps then move the
    weights along the difference of the class means of the features (a nearest-centroid direction), not along the
    features' common offset, which is where a zero-bias head's first gradient points with rare labels."""
    import torch

    prev = np.clip(y_tr.mean(0) if len(y_tr) else np.full(y_tr.shape[1], 0.5), 1e-3, 1 - 1e-3)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.as_tensor(np.log(prev / (1 - prev)), dtype=model.head.bias.dtype))


def _bce(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if y.size else float("nan")


def training_records(data: ECGDataset | PreparedData, fraction: float, seed: int) -> np.ndarray:
    """(training records,) bool: the records of the training patients kept at this label fraction (``subsets``)."""
    train = data.split == "train"
    return training_mask(data.patient_ids[train], data.labels[train], fraction, seed)


def training_positives(data: ECGDataset | PreparedData, keep: np.ndarray) -> pd.DataFrame:
    """Per label, the positive records and positive patients among the training records ``keep`` (a trial's
    subset): at a small fraction one or two positive patients may carry a label, and a reader of its AUROC needs
    to know that."""
    train = data.split == "train"
    pid, y = data.patient_ids[train][keep], np.asarray(data.labels[train][keep], dtype=bool)
    return pd.DataFrame({"label": list(data.label_names), "train_positives": y.sum(0).astype(int),
                         "train_positive_patients": [len(np.unique(pid[y[:, j]])) for j in range(y.shape[1])]})


def _fit(model, data: ECGDataset | PreparedData, leads: list[str], cfg: BenchmarkConfig,
         on_epoch: Callable[[int, dict[str, float]], None], fraction: float = 1.0,
         label_seed: int = 0) -> tuple[int, dict[str, float]]:
    """Train on random crops of the training patients kept at ``fraction`` (validation stays whole); keep the
    weights of the epoch with the best validation macro AUROC."""
    import torch

    from eee_ray.models.eee_classifier import EEEClassifier
    from eee_ray.models.registry import param_groups

    x_tr, y_tr, _ = data.part("train", leads)
    if fraction < 1.0:
        keep = training_records(data, fraction, label_seed)
        x_tr, y_tr = x_tr[np.flatnonzero(keep)], y_tr[keep]
    x_va, y_va, _ = data.part("val", leads)
    if not len(x_tr):
        raise UserError("the training split is empty")
    eee = isinstance(model, EEEClassifier)
    if eee and cfg.head_init == "zero":
        _neutral_head(model, y_tr)
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.weight_decay,
                                         encoder_lr_scale=cfg.encoder_lr_scale if eee else 1.0))
    crops = cfg.crops_per_record if model.window < x_tr.shape[-1] else 1  # a whole-record window has one crop
    per_epoch = math.ceil(len(x_tr) * crops / cfg.batch_size)
    epochs = max(cfg.epochs, math.ceil(cfg.min_steps / per_epoch))  # a small subset still gets min_steps updates
    steps = max(1, epochs * per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    device = next(model.parameters()).device
    # a subset stretched to more epochs by min_steps validates (and may keep its weights) about cfg.epochs times,
    # each time after a block of epochs, instead of after each epoch of a few steps
    val_every = max(1, epochs // cfg.epochs)
    best_epoch, best_score, best_state, best_metrics = -1, -math.inf, None, {}
    losses, scores, targets = [], [], []
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(np.repeat(np.arange(len(x_tr)), crops))
        if len(order) % cfg.batch_size == 1 and len(order) > 1:
            order = order[:-1]  # a last batch of one breaks batch norm in training mode
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
        if (epoch + 1) % val_every and epoch + 1 < epochs:
            continue
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
        losses, scores, targets = [], [], []
    model.load_state_dict(best_state)
    return best_epoch, best_metrics


def _write_outputs(out: Path, model, combo: dict[str, str], leads: list[str], data: ECGDataset | PreparedData, cfg: BenchmarkConfig,
                   run_id: str, ids: np.ndarray, y: np.ndarray, p: np.ndarray, emb: np.ndarray) -> None:
    """The per-trial files the analysis stage reads (layout fixed by the interface)."""
    from eee_ray.models.registry import model_spec

    atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / "model.pt")
    meta = {"model_spec": model_spec(model), "model": combo["model"], "leads": leads, "strategy": combo["strategy"],
            "label_fraction": float(combo.get("label_fraction", 1.0)), "label_seed": int(combo.get("label_seed", 0)),
            "label_names": data.label_names, "window": int(model.window), "sample_rate": cfg.signal.sample_rate,
            "aggregate": cfg.aggregate, "preprocessing": data.preprocessing, "mlflow_run_id": run_id}
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2, default=str))

    def write_npz(path: Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, record_id=np.asarray(ids, dtype=str), embedding=emb.astype(np.float32),
                     y_true=y.astype(np.uint8), y_score=p.astype(np.float32))

    atomic_write(out / "test_outputs.npz", write_npz)


def trial_tags(combo: dict, cfg: BenchmarkConfig, benchmark_id: str, parent_run_id: str) -> dict[str, str]:
    """What the runs table filters and groups a trial by: its benchmark (parent run), model, leads, strategy, label
    fraction and label seed (the grid's axes)."""
    from eee_ray.tracking import run_tags

    return run_tags("trial", "eee-ray benchmark", parent_run_id, benchmark_id=benchmark_id,
                    **{k: str(v) for k, v in combo.items()}, dataset=cfg.dataset, preset=cfg.preset)


def log_split_datasets(client, run_id: str, data: ECGDataset | PreparedData, cfg: BenchmarkConfig) -> dict[str, tuple[str, str]]:
    """The trial's train / val / test record listings as MLflow dataset inputs; returns split -> (name, digest)."""
    import pandas as pd

    from eee_ray.tracking import log_dataset

    contexts = {"train": "training", "val": "validation", "test": "testing"}
    out = {}
    for split, context in contexts.items():
        m = data.split == split
        listing = pd.DataFrame({"record_id": data.record_ids[m].astype(str),
                                "patient_id": data.patient_ids[m].astype(str)})
        name = f"{cfg.dataset}-{split}"
        counts = {"records": int(m.sum()), "patients": int(listing["patient_id"].nunique()),
                  "labels": len(data.label_names), "positives": int(data.labels[m].sum())}
        out[split] = (name, log_dataset(client, run_id, listing, name, cfg.data, context, counts))
    return out


def run_trial(combo: dict, data: ECGDataset | PreparedData, cfg: BenchmarkConfig, tracking_uri: str, experiment_id: str,
              benchmark_id: str, report: Callable[[dict[str, float]], None] = lambda m: None,
              parent_run_id: str = "") -> dict[str, Any]:
    """Train, select on val, test, write the trial folder, log it as a pyfunc model; one MLflow run (a child of the
    benchmark's run) that is always closed."""
    import mlflow
    import torch

    from eee_ray import serving
    from eee_ray.runtime import use_tracking_uri

    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    name = trial_name(combo)
    out = Path(cfg.output) / "trials" / name
    out.mkdir(parents=True, exist_ok=True)
    leads = lead_names(combo["leads"])
    use_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    run = client.create_run(experiment_id, run_name=name, tags=trial_tags(combo, cfg, benchmark_id, parent_run_id))
    run_id, status = run.info.run_id, "FAILED"
    try:
        datasets = log_split_datasets(client, run_id, data, cfg)
        model = _build(combo, len(leads), len(data.label_names), cfg)
        if cfg.gpus_per_trial > 0:
            if not torch.cuda.is_available():
                raise UserError("gpus_per_trial > 0 but this trial sees no CUDA device")
            model = model.to("cuda")
        params = {**combo, "preset": cfg.preset, "epochs": cfg.epochs, "min_steps": cfg.min_steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
                  "weight_decay": cfg.weight_decay, "crops_per_record": cfg.crops_per_record, "window": model.window,
                  "aggregate": cfg.aggregate, "n_labels": len(data.label_names), "dataset": cfg.dataset,
                  "pretrained": cfg.pretrained or "", "seed": cfg.seed, "head_init": cfg.head_init,
                  "encoder_lr_scale": cfg.encoder_lr_scale,
                  "n_params": sum(p.numel() for p in model.parameters())}
        for k, v in params.items():
            client.log_param(run_id, k, v)

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            for k, v in metrics.items():
                if np.isfinite(v):
                    client.log_metric(run_id, k, float(v), step=epoch)
            report({"epoch": epoch, **metrics})

        fraction, label_seed = float(combo.get("label_fraction", 1.0)), int(combo.get("label_seed", 0))
        keep = training_records(data, fraction, label_seed)
        n_train = int(keep.sum())
        client.log_param(run_id, "n_train_records", n_train)
        best_epoch, best_metrics = _fit(model, data, leads, cfg, on_epoch, fraction, label_seed)
        x_te, y_te, ids = data.part("test", leads)
        if not len(x_te):
            raise UserError("the test split is empty")
        p_te, emb = predict_records(model, x_te, model.window, cfg.aggregate, cfg.batch_size,
                                     next(model.parameters()).device)
        ev = evaluate(y_te, p_te, data.label_names, n_boot=cfg.n_bootstrap, seed=cfg.seed)
        _write_outputs(out, model, combo, leads, data, cfg, run_id, ids, y_te, p_te, emb)
        per_label = ev.per_label.merge(training_positives(data, keep), on="label", how="left")
        per_label.to_csv(out / "per_label.csv", index=False)
        meta = json.loads((out / "meta.json").read_text())
        mlflow.start_run(run_id=run_id)
        try:
            info = serving.log_model(out, meta)
        finally:
            mlflow.end_run("RUNNING")  # the run stays open; the finally below closes it
        result = {**combo, **ev.scalars(), "n_train_records": n_train, "n_test_records": ev.n_records,
                  "best_epoch": best_epoch,
                  "val_macro_auroc": best_metrics.get("val_macro_auroc", float("nan")), "run_id": run_id,
                  "model_uri": info.model_uri}
        atomic_write_text(out / "metrics.json", json.dumps(result, indent=2))
        test_name, test_digest = datasets["test"]
        for k, v in ev.scalars().items():  # the headline metrics, linked to the logged model and the test set
            if np.isfinite(v):
                client.log_metric(run_id, f"test_{k}", float(v), model_id=info.model_id, dataset_name=test_name,
                                  dataset_digest=test_digest)
        client.log_metric(run_id, "best_epoch", best_epoch)
        client.log_artifacts(run_id, str(out), artifact_path="trial")
        status = "FINISHED"
        return result
    finally:
        client.set_terminated(run_id, status)


def tune_trainable(config: dict, store: str = "", label_names: list[str] | None = None, cfg: BenchmarkConfig = None,
                   tracking_uri: str = "", experiment_id: str = "", benchmark_id: str = "",
                   parent_run_id: str = "") -> None:
    """A Tune trial: opens the prepared store by path (signals stay on disk, read as each batch needs them)."""
    from ray import tune

    data = PreparedData(store, label_names=label_names)
    result = run_trial(config["combo"], data, cfg, tracking_uri, experiment_id, benchmark_id, report=tune.report,
                       parent_run_id=parent_run_id)
    tune.report({k: v for k, v in result.items() if isinstance(v, (int, float))} | {"done_test": 1})


