"""A benchmark model as an MLflow ``pyfunc`` model: what ``mlflow models serve`` and ``mlflow.pyfunc.load_model``
load, and what the Model Registry versions.

The logged model holds no pickled object: its code is this package (``code_paths``) plus the two-line entry file
``eee_ray/pyfunc_entry.py`` (MLflow's models-from-code), and its only artifact is the checkpoint folder (``model.pt``
state dict + ``meta.json``). Loading rebuilds the architecture from ``meta.json``'s spec and reads the weights with
``weights_only=True``, exactly as ``eee-ray predict`` does, and predicts through the same ``Predictor`` (the same
lead picking, resampling, windowing and aggregation), so a served model and ``eee-ray predict`` give the same
probabilities for the same ECG.

Input: one row per ECG with ``signal`` (leads x samples, physical units, mV), ``fs`` (its sampling rate in Hz; any
rate >= the model's ``min_source_rate`` is resampled to the training rate), ``lead_names`` (one per signal row, any
order, case-insensitive) and an optional ``record_id``. Output: ``record_id``, ``reason`` (empty when the ECG was
usable, else why not) and one probability column per label.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

try:  # the class below is only defined where MLflow is installed (every install of eee_ray has it)
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover
    PythonModel = object

PACKAGE_DIR = Path(__file__).resolve().parent
ENTRY_FILE = PACKAGE_DIR / "pyfunc_entry.py"
CHECKPOINT_ARTIFACT = "checkpoint"  # the artifact key (and folder under artifacts/) of model.pt + meta.json
MODEL_NAME = "model"  # the logged model's name inside its run
REGISTRY_PREFIX = "eee-ecg-"  # registered model names: eee-ecg-<lead configuration>
CHECKPOINT_FILES = ("model.pt", "meta.json")
# What a served model imports: the packages eee_ray's inference path imports, pinned to this install's versions.
REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "scipy", "pyyaml")


class EcgClassifier(PythonModel):
    """Per-label probabilities for a batch of ECGs (the ``predict`` mode of ``eee-ray predict``)."""

    def load_context(self, context) -> None:
        from eee_ray.inference import Predictor, read_checkpoint

        ckpt = read_checkpoint(context.artifacts[CHECKPOINT_ARTIFACT])
        self.label_names = ckpt.label_names
        self.predictor = Predictor(ckpt, "predict", ckpt.meta.get("aggregate", "mean"), batch_size=32)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        df = pd.DataFrame(model_input)
        missing = [c for c in ("signal", "fs", "lead_names") if c not in df.columns]
        if missing:
            raise ValueError(f"input lacks column(s) {', '.join(missing)}")
        ids = df["record_id"].astype(str) if "record_id" in df.columns else pd.Series(map(str, range(len(df))))
        batch = {"record_id": ids.to_numpy(), "signal": list(df["signal"]), "fs": df["fs"].to_numpy(np.float64),
                 "lead_names": list(df["lead_names"])}
        return pd.DataFrame(self.predictor(batch))


def signature(label_names: list[str]):
    """Input: a batch of ECGs; output: one probability per label (plus the record id and the skip reason)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Schema

    inputs = Schema([ColSpec("string", "record_id", required=False),
                     ColSpec(Array(Array("double")), "signal"),
                     ColSpec("double", "fs"),
                     ColSpec(Array("string"), "lead_names")])
    outputs = Schema([ColSpec("string", "record_id"), ColSpec("string", "reason"),
                      *[ColSpec("float", name) for name in label_names]])
    return ModelSignature(inputs=inputs, outputs=outputs)


def pip_requirements() -> list[str]:
    """Pinned requirements, given explicitly (MLflow's own inference of them imports the model: slow)."""
    out = []
    for name in REQUIREMENTS:
        try:
            version = importlib.metadata.version(name).split("+")[0]  # torch's local tag (+cpu) is not on PyPI
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover
            out.append(name)
            continue
        out.append(f"{name}=={version}")
    return out


def model_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """What a user reads off the model page: which ECGs it takes and what it returns."""
    pre = meta.get("preprocessing", {})
    return {"model": meta.get("model"), "strategy": meta.get("strategy"), "leads": list(meta["leads"]),
            "label_names": list(meta["label_names"]), "sample_rate_hz": meta.get("sample_rate"),
            "duration_s": pre.get("duration_s"), "min_source_rate_hz": pre.get("min_source_rate"),
            "window_samples": meta.get("window"), "aggregate": meta.get("aggregate"),
            "signal_units": "mV", "signal_layout": "leads x samples"}


def log_model(checkpoint_dir: str | Path, meta: dict[str, Any]):
    """Log the checkpoint in ``checkpoint_dir`` as the active run's pyfunc model; returns MLflow's ``ModelInfo``."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / CHECKPOINT_ARTIFACT
        ckpt.mkdir()
        for name in CHECKPOINT_FILES:
            shutil.copy2(Path(checkpoint_dir) / name, ckpt / name)
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME, python_model=str(ENTRY_FILE), artifacts={CHECKPOINT_ARTIFACT: str(ckpt)},
            code_paths=[str(PACKAGE_DIR)], pip_requirements=pip_requirements(),
            signature=signature(list(meta["label_names"])), metadata=model_metadata(meta),
            tags={k: str(meta[k]) for k in ("model", "strategy") if meta.get(k)})


def registry_name(lead_config: str) -> str:
    return f"{REGISTRY_PREFIX}{lead_config}"


def best_trial(group: pd.DataFrame) -> pd.Series:
    """The highest validation macro AUROC (a trial without one last); on a tie, the trial that learned from more
    labels, then the first in ``group``'s order (the grid's). Tiny validation sets tie often."""
    none = pd.Series(np.zeros(len(group)), group.index)
    key = group["val_macro_auroc"].fillna(-np.inf) if "val_macro_auroc" in group else none
    labels = group["label_fraction"] if "label_fraction" in group else none
    order = pd.DataFrame({"key": key, "labels": labels}).sort_values(["key", "labels"], ascending=False, kind="stable")
    return group.loc[order.index[0]]


def register_best(tracking_uri: str, results: pd.DataFrame, benchmark_id: str) -> list[dict[str, Any]]:
    """Register the best finished trial of each lead configuration (``best_trial``: highest validation macro AUROC
    of its selected epoch; the test set plays no part in the choice) as a new version of ``eee-ecg-<leads>``, tagged
    with its metrics. ``results`` holds one row per trial with ``model_uri``. Returns what was registered."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
    done = []
    usable = results[results["model_uri"].fillna("").astype(str) != ""]
    for lead_config, group in usable.groupby("leads", sort=True):
        best = best_trial(group)
        name = registry_name(str(lead_config))
        try:
            client.get_registered_model(name)
        except mlflow.exceptions.MlflowException:
            client.create_registered_model(
                name, description=f"Structural heart disease probabilities from {lead_config} ECG lead(s): the best "
                                  "trial of each eee-ray benchmark, chosen by validation macro AUROC.")
        metrics = {k: float(best[k]) for k in ("val_macro_auroc", "macro_auroc", "micro_auroc", "macro_auprc")
                   if k in best and pd.notna(best[k])}
        tags = {"model": best["model"], "leads": lead_config, "strategy": best["strategy"],
                "benchmark_id": benchmark_id, "run_id": best.get("run_id", ""),
                **{("test_" + k if not k.startswith("val_") else k): f"{v:.4f}" for k, v in metrics.items()}}
        mv = client.create_model_version(name, str(best["model_uri"]), run_id=best.get("run_id") or None,
                                         tags={k: str(v) for k, v in tags.items()},
                                         description=f"{best['model']} ({best['strategy']}) of benchmark "
                                                     f"{benchmark_id}: test macro AUROC "
                                                     f"{metrics.get('macro_auroc', float('nan')):.3f}")
        done.append({"name": name, "version": mv.version, "uri": f"models:/{name}/{mv.version}", **tags})
    return done
