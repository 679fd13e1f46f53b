"""The downstream benchmark (paper section 4): one Ray Tune experiment over model x leads x strategy x label
fraction (x label seed).

The records are prepared once by one Ray Data pass into an on-disk prepared-signal store (``prepare.py``; reused
while the inputs and settings are unchanged); every trial opens the store by path and reads its rows from
memory-mapped shards, so neither the driver nor the object store holds the signals. Each trial trains its model
itself (1 CPU, torch threads = 1; ``train.py``) and is one MLflow run. The driver then writes ``results.csv`` / ``results.md`` / ``per_label_auroc.csv`` / ``skipped.csv``
(``report.py``) and logs them to a summary MLflow run.

In MLflow a benchmark is one parent run (``benchmark-<id>``) with the trials, the summary and a later analysis as
its children; the parent carries the headline metrics (best test macro AUROC per lead configuration), and the best
trial of each lead configuration is registered as a new version of the model ``eee-ecg-<leads>``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd

from eee_ray import storage
from eee_ray.config import save
from eee_ray.downstream.config import EXPERIMENT, MODEL_STRATEGIES, BenchmarkConfig
from eee_ray.downstream.report import collect_results, label_efficiency, results_markdown
from eee_ray.downstream.train import log_split_datasets, tune_trainable
from eee_ray.ecgdata.echo_labels import load_measurement_mapping, read_mimic_echo
from eee_ray.ecgdata.labels import load_mapping, shared_labels_dir
from eee_ray.ecgdata.mimic import find_root, read_mimic
from eee_ray.ecgdata.ptbxl import read_ptbxl
from eee_ray.downstream.prepare import PreparedData, prepare_store
from eee_ray.ecgdata.records import CANONICAL_LEADS, lead_names
from eee_ray.errors import UserError
from eee_ray.io import atomic_write, atomic_write_text
from eee_ray.serving import register_best
from eee_ray.tracking import run_tags

log = logging.getLogger(__name__)


def trial_grid(cfg: BenchmarkConfig) -> tuple[list[dict], list[str]]:
    """The (model, leads, strategy, label fraction, label seed) combinations to run, and notes on what was left out
    and why. A fraction below 1 gets ``label_seeds`` subsets; fraction 1 (every training patient) gets one."""
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
    draws = [(float(f), k) for f in sorted(set(cfg.label_fractions))
             for k in range(cfg.label_seeds if f < 1.0 else 1)]
    grid = [{"model": m, "leads": lead, "strategy": s, "label_fraction": f, "label_seed": k}
            for f, k in draws for m in models for lead in cfg.leads
            for s in MODEL_STRATEGIES[m] if not cfg.strategies or s in cfg.strategies]
    if not grid:
        raise UserError("the model x leads x strategy grid is empty; check --models and --strategies")
    return grid, notes


def read_table(cfg: BenchmarkConfig) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The record table of the chosen source, its notes, and every lead any configuration needs (canonical order).

    Cheap (CSV files only), so a wrong folder or labels file fails before Ray or MLflow start."""
    data = Path(cfg.data)
    wanted = {lead for config in cfg.leads for lead in lead_names(config)}
    leads = [lead for lead in CANONICAL_LEADS if lead in wanted]
    if cfg.dataset == "ptbxl":
        table, notes = read_ptbxl(data, cfg.ptbxl_labels, cfg.ptbxl_sample_rate, cfg.max_records)
    elif cfg.labels == "echo-measurements":
        mapping = load_measurement_mapping(cfg.measurement_mapping)
        table, notes = read_mimic_echo(data, mapping, cfg.echo_window_days, cfg.echo_measurements, cfg.max_records)
    elif cfg.dataset in ("mimic", "synthetic"):
        root = find_root(data)
        mapping = load_mapping(cfg.mapping, [root, root.parent, shared_labels_dir()])
        table, notes = read_mimic(data, mapping, cfg.label_level, cfg.labels_csv or None, cfg.max_records)
    else:
        raise UserError(f"--dataset must be mimic, ptbxl or synthetic, not {cfg.dataset!r}")
    return table, notes, leads


def close_running_runs(tracking_uri: str, experiment_id: str, benchmark_id: str) -> int:
    """Mark runs of this benchmark that a killed trial left RUNNING as KILLED."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([experiment_id], filter_string=f"tags.benchmark_id = '{benchmark_id}' and "
                                                             "tags.kind = 'trial' and attributes.status = 'RUNNING'")
    for r in runs:
        client.set_terminated(r.info.run_id, "KILLED")
    return len(runs)


def run_benchmark(cfg: BenchmarkConfig) -> pd.DataFrame:
    """Build the data set once, run the Tune grid, write and log the tables; returns results.csv's contents.

    Object storage: ``--data`` in a bucket is mirrored to the local cache (files of a new size only) and read from
    there; ``--pretrained`` is downloaded; an ``--output`` in a bucket is written in a local staging folder and
    uploaded at the end, while the prepared store (memory-mapped by the trials) stays in the local cache
    (``eee_ray.storage.cache_dir``) unless ``--prepared`` names a local or shared folder.
    """
    cfg.validate()
    remote_out = cfg.output if storage.is_uri(cfg.output) else ""
    if storage.is_uri(cfg.data):
        log.info("mirroring %s to the local cache", cfg.data)
        cfg.data = str(storage.mirror(cfg.data, storage.cache_path("data", cfg.data)))
    if storage.is_uri(cfg.pretrained):
        cfg.pretrained = str(storage.download(cfg.pretrained, storage.cache_path("models", cfg.pretrained)))
    if not remote_out:
        return _run_benchmark(cfg)
    cfg.prepared = cfg.prepared or str(storage.cache_path("prepared", remote_out))
    cfg.mlflow.dir = cfg.mlflow.dir or str(storage.cache_dir() / "mlflow")
    (storage.cache_dir() / "outputs").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="benchmark-", dir=storage.cache_dir() / "outputs") as staging:
        cfg.output = staging
        try:
            results = _run_benchmark(cfg)
        finally:  # what a failed run wrote (its summary, the trials' logs) is worth having beside the others
            cfg.output = remote_out
            if (Path(staging) / "config.yaml").is_file():  # the config names the bucket, not the staging folder
                save(cfg, Path(staging) / "config.yaml")
            storage.upload_tree(staging, remote_out)
    return results


def _run_benchmark(cfg: BenchmarkConfig) -> pd.DataFrame:
    import mlflow

    from eee_ray.runtime import init_ray, setup_mlflow

    if cfg.pretrained:  # trials run in Tune's own working directory
        cfg.pretrained = str(Path(cfg.pretrained).resolve())
    cfg.data = str(Path(cfg.data).resolve())
    grid, notes = trial_grid(cfg)
    if cfg.pretrained:  # a bad encoder file is one error line here, not a traceback in every trial
        from eee_ray.models.ecg_encoder import load_pretrained

        load_pretrained(cfg.pretrained)
    table, data_notes, leads = read_table(cfg)
    out = Path(cfg.output).resolve()
    cfg.output = str(out)
    out.mkdir(parents=True, exist_ok=True)
    save(cfg, out / "config.yaml")
    benchmark_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    uri, exp_id = setup_mlflow(cfg.mlflow, out, EXPERIMENT)
    init_ray(cfg.num_cpus or None)

    store = prepare_store(table, leads, cfg.signal, cfg.prepared or out / "prepared", cfg.shard_records)
    del table
    data = PreparedData(store.root, min_positives=cfg.min_positives)
    notes = data_notes + data.notes + notes + [f"prepared store {store.root} "
                                               f"{'reused' if store.reused else 'built'}"]
    data.skipped.to_csv(out / "skipped.csv", index=False)
    for n in notes:
        log.info(n)
    log.info("benchmark %s: %d trials, data %s", benchmark_id, len(grid), data.summary())

    client = mlflow.MlflowClient(uri)
    parent = client.create_run(exp_id, run_name=f"benchmark-{benchmark_id}", tags=run_tags(
        "benchmark", "eee-ray benchmark", benchmark_id=benchmark_id, dataset=cfg.dataset, preset=cfg.preset,
        models=",".join(sorted({c["model"] for c in grid})), leads=",".join(cfg.leads),
        label_fraction=getattr(cfg, "label_fraction", None))).info.run_id
    try:
        return _run_grid(cfg, grid, notes, data, out, uri, exp_id, benchmark_id, parent)
    except BaseException:
        client.set_terminated(parent, "FAILED")
        raise


def _run_grid(cfg: BenchmarkConfig, grid: list[dict[str, str]], notes: list[str], data, out: Path, uri: str,
              exp_id: str, benchmark_id: str, parent: str) -> pd.DataFrame:
    """The Tune grid, the tables and the registry, under the benchmark's parent run ``parent``."""
    import mlflow
    from ray import tune

    client = mlflow.MlflowClient(uri)
    for k, v in {"dataset": cfg.dataset, "data": cfg.data, "preset": cfg.preset, "epochs": cfg.epochs,
                 "trials": len(grid), **{f"{k}": v for k, v in data.summary().items() if k != "positives"}}.items():
        client.log_param(parent, k, v)
    # the splits every trial reads, logged once here first: trials running at once then find them in the store
    log_split_datasets(client, parent, data, cfg)
    trainable = tune.with_parameters(tune_trainable, store=str(data.root), label_names=data.label_names, cfg=cfg,
                                     tracking_uri=uri, experiment_id=exp_id, benchmark_id=benchmark_id,
                                     parent_run_id=parent)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial}),
        param_space={"combo": tune.grid_search(grid)},
        # a trial's process is reused by the next trial: each trial seeds and configures itself (run_trial), and a
        # fresh process per trial would pay torch's and Ray Train's imports again (seconds a trial)
        tune_config=tune.TuneConfig(max_concurrent_trials=cfg.max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(name=f"benchmark-{benchmark_id}", storage_path=str(out / "tune"),
                                  failure_config=tune.FailureConfig(max_failures=0), verbose=1))
    grid_results = tuner.fit()
    closed = close_running_runs(uri, exp_id, benchmark_id)
    failed = [f"trial {r.config['combo']} failed: {str(r.error).strip().splitlines()[-1][:200]}"
              for r in grid_results if r.error is not None]
    notes += failed + ([f"{closed} MLflow run(s) left RUNNING were marked KILLED"] if closed else [])

    results, per_label = collect_results(out, grid)
    registered = register_best(uri, trial_rows(out, grid), benchmark_id) if len(results) else []
    for r in registered:
        log.info("registered %s (%s, %s)", r["uri"], r["model"], r["strategy"])
    efficiency = label_efficiency(results)
    atomic_write(out / "results.csv", lambda p: results.to_csv(p, index=False))
    atomic_write(out / "label_efficiency.csv", lambda p: efficiency.to_csv(p, index=False))
    atomic_write(out / "per_label_auroc.csv", lambda p: per_label.to_csv(p, index=False))
    summary = {"benchmark_id": benchmark_id, "dataset": cfg.dataset, "n_labels": len(data.label_names),
               "label_names": data.label_names, **data.summary(), "label_fractions": sorted(set(cfg.label_fractions)),
               "label_seeds": cfg.label_seeds, "trials": len(grid), "completed": len(results),
               "failed": len(failed), "notes": notes, "tracking_uri": uri, "mlflow_run_id": parent,
               "registered_models": registered}
    atomic_write_text(out / "results.md", results_markdown(results, summary, efficiency))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    summary_run = client.create_run(exp_id, run_name=f"summary-{benchmark_id}", tags=run_tags(
        "summary", "eee-ray benchmark", parent, benchmark_id=benchmark_id)).info.run_id
    for k, v in {"dataset": cfg.dataset, "preset": cfg.preset, "epochs": cfg.epochs, "trials": len(grid),
                 "records": len(data.record_ids), "skipped": len(data.skipped)}.items():
        client.log_param(summary_run, k, v)
    for name in ("results.csv", "results.md", "label_efficiency.csv", "per_label_auroc.csv", "skipped.csv",
                 "config.yaml", "summary.json"):
        client.log_artifact(summary_run, str(out / name))
    client.set_terminated(summary_run, "FINISHED")
    for k, v in headline_metrics(results).items():
        client.log_metric(parent, k, v)
    for k in ("results.md", "results.csv"):
        client.log_artifact(parent, str(out / k))
    client.set_terminated(parent, "FAILED" if failed and results.empty else "FINISHED")
    if failed and results.empty:
        raise RuntimeError("every benchmark trial failed:\n" + "\n".join(failed))
    return results


def headline_metrics(results: pd.DataFrame) -> dict[str, float]:
    """The parent run's sortable figures: the best test macro AUROC overall and per lead configuration."""
    if results.empty:
        return {}
    out = {"test_macro_auroc": float(results["macro_auroc"].max()),
           "test_micro_auroc": float(results["micro_auroc"].max()), "completed_trials": float(len(results))}
    for lead, group in results.groupby("leads"):
        out[f"test_macro_auroc_{lead}"] = float(group["macro_auroc"].max())
    return {k: v for k, v in out.items() if pd.notna(v)}


def trial_rows(out: Path, grid: list[dict[str, str]]) -> pd.DataFrame:
    """Every finished trial's metrics.json (with its run id and logged model URI)."""
    from eee_ray.downstream.config import trial_name

    rows = [json.loads(p.read_text()) for c in grid if (p := out / "trials" / trial_name(c) / "metrics.json").is_file()]
    return pd.DataFrame(rows)
