"""ECG-only inference with a trained benchmark model (SPEC S8): ``embed`` (record-averaged penultimate features) and
``predict`` (per-label probabilities), batched with Ray Data.

A checkpoint is a folder with ``model.pt`` (a plain state_dict, loaded with ``weights_only=True``) and ``meta.json``
(the model spec, leads, label names, window, aggregation and preprocessing), as written by ``eee-ray benchmark``; it
is read from disk or downloaded from an MLflow run's ``checkpoint/`` artifact. Inputs are WFDB records (a folder or a
MIMIC ``record_list.csv``) or a Parquet of waveforms. Every input record gives one output row; records that cannot
be used keep a null result and a ``reason``. Preparation and windowing reuse the training code (``ecgdata.records``,
``ecgdata.windows``) so inference sees ECGs exactly as the model did in training.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eee_ray.config import MlflowConfig
from eee_ray.errors import UserError
from eee_ray.io import read_parquet

log = logging.getLogger(__name__)

MODES = ("embed", "predict")
WAVEFORM_COLUMNS = ("record_id", "signal", "fs", "lead_names")
CHECKPOINT_ARTIFACTS = ("checkpoint", "trial")  # artifact folders of a run that may hold model.pt + meta.json
SUMMARY_NAME = "_inference.json"  # leading underscore: Parquet readers skip it when reading the folder


@dataclass
class InferenceConfig:
    """Input, model, output and the Ray Data knobs of one ``embed`` / ``predict`` run."""

    input: str = ""  # folder of WFDB records, a MIMIC record_list.csv, or a .parquet of waveforms
    output: str = ""  # output folder of Parquet files
    mode: str = "predict"  # embed | predict
    checkpoint: str = ""  # a checkpoint folder (model.pt + meta.json) ...
    run_id: str = ""  # ... or an MLflow run whose artifact `checkpoint/` holds one
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)  # the store that holds ``run_id``
    aggregate: str = ""  # mean | max over a record's windows; default: what the checkpoint was evaluated with
    batch_size: int = 32  # records per model call
    max_actors: int = 2  # the actor pool autoscales from 1 to this
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0  # 1 on a GPU node

    def validate(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if bool(self.checkpoint) == bool(self.run_id):
            raise UserError("give exactly one of --checkpoint DIR or --run-id RUN")
        if not Path(self.input).exists():
            raise UserError(f"input not found: {self.input}")
        if not self.output:
            raise UserError("--output is required")
        if self.aggregate not in ("", "mean", "max"):
            raise UserError(f"aggregate must be mean or max, not {self.aggregate!r}")
        if self.batch_size < 1 or self.max_actors < 1:
            raise UserError("batch_size and max_actors must be >= 1")


@dataclass
class Checkpoint:
    """What an actor needs to rebuild the model: the serialized state_dict and the metadata."""

    state_bytes: bytes
    meta: dict[str, Any]

    @property
    def label_names(self) -> list[str]:
        return list(self.meta["label_names"])

    @property
    def leads(self) -> list[str]:
        return list(self.meta["leads"])


def read_checkpoint(folder: str | Path) -> Checkpoint:
    folder = Path(folder)
    model_pt, meta_json = folder / "model.pt", folder / "meta.json"
    if not (model_pt.is_file() and meta_json.is_file()):
        raise UserError(f"{folder} is not a checkpoint folder (needs model.pt and meta.json)")
    meta = json.loads(meta_json.read_text())
    missing = [k for k in ("model_spec", "leads", "label_names", "window") if k not in meta]
    if missing:
        raise UserError(f"{meta_json} lacks {', '.join(missing)}")
    return Checkpoint(state_bytes=model_pt.read_bytes(), meta=meta)


def download_checkpoint(run_id: str, workdir: str | Path) -> Checkpoint:
    """The checkpoint artifact (``checkpoint/``, or ``trial/`` as benchmark trials log it) of an MLflow run, from
    ``MLFLOW_TRACKING_URI`` or the store in ``workdir``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from eee_ray.runtime import tracking_uri, use_tracking_uri

    use_tracking_uri(tracking_uri(workdir))
    try:
        present = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}
    except MlflowException as e:
        raise UserError(f"cannot read MLflow run {run_id}: {str(e).splitlines()[0]}") from None
    folder = next((a for a in CHECKPOINT_ARTIFACTS if a in present), None)
    if folder is None:
        raise UserError(f"MLflow run {run_id} has no {' or '.join(CHECKPOINT_ARTIFACTS)} artifact "
                        f"(it has: {', '.join(sorted(present)) or 'nothing'})")
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=folder, dst_path=tmp)
        return read_checkpoint(local)


def build_model_from(ckpt: Checkpoint):
    """The model of a checkpoint, weights loaded, in eval mode (``weights_only=True``: no pickle execution)."""
    import torch

    from eee_ray.models.registry import build_model

    model = build_model(**ckpt.meta["model_spec"])
    state = torch.load(io.BytesIO(ckpt.state_bytes), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def _signal_spec(meta: dict[str, Any]):
    """The training-time preparation, from the checkpoint's ``preprocessing`` (unknown keys are descriptive)."""
    from eee_ray.ecgdata.records import SignalSpec

    names = {f.name for f in dataclasses.fields(SignalSpec)}
    return SignalSpec(**{k: v for k, v in meta.get("preprocessing", {}).items() if k in names})


class Predictor:
    """Ray Data actor: builds the model once, then turns batches of records into embeddings or probabilities."""

    def __init__(self, ckpt: Checkpoint, mode: str, aggregate: str, batch_size: int):
        import torch

        torch.set_num_threads(1)
        self.model = build_model_from(ckpt)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device)
        self.mode, self.aggregate, self.batch_size = mode, aggregate, batch_size
        self.leads, self.window = ckpt.leads, int(ckpt.meta["window"])
        self.label_names = ckpt.label_names
        self.spec = _signal_spec(ckpt.meta)

    def _prepare(self, batch: dict, i: int) -> tuple[np.ndarray | None, str]:
        from eee_ray.ecgdata.records import prepare_signal, read_wfdb

        if "path" in batch:
            return read_wfdb(str(batch["path"][i]), self.leads, self.spec)
        try:
            sig = np.stack([np.asarray(lead, np.float64) for lead in batch["signal"][i]], axis=1)
        except (TypeError, ValueError) as e:
            return None, f"malformed signal: {e}"
        return prepare_signal(sig, float(batch["fs"][i]), [str(n) for n in batch["lead_names"][i]], self.leads,
                              self.spec)

    def __call__(self, batch: dict) -> dict:
        from eee_ray.ecgdata.windows import predict_records

        n = len(batch["record_id"])
        prepared = [self._prepare(batch, i) for i in range(n)]
        reasons = np.array([r for _, r in prepared], dtype=object)
        good = [i for i, (x, _) in enumerate(prepared) if x is not None]
        width = self.model.feature_dim if self.mode == "embed" else len(self.label_names)
        result = np.full((n, width), np.nan, np.float32)
        if good:
            x = np.stack([prepared[i][0] for i in good])
            scores, feats = predict_records(self.model, x, self.window, self.aggregate, self.batch_size,
                                            device=self.device)
            result[good] = feats if self.mode == "embed" else scores
        out = {"record_id": np.asarray(batch["record_id"]).astype(str), "reason": reasons}
        if self.mode == "embed":
            out["embedding"] = np.array([row if r == "" else None for row, r in zip(result, reasons)], dtype=object)
        else:
            out.update({name: result[:, k] for k, name in enumerate(self.label_names)})
        return out


def _input_dataset(path: Path):
    """Ray dataset of ``record_id`` + ``path`` (WFDB) or ``record_id, signal, fs, lead_names`` (Parquet), and its
    number of records."""
    import ray

    if path.suffix == ".parquet" or (path.is_dir() and any(path.glob("*.parquet"))):
        import pyarrow.parquet as pq

        files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        missing = [c for c in WAVEFORM_COLUMNS if c not in pq.read_schema(files[0]).names]
        if missing:
            raise UserError(f"waveform Parquet {path} lacks column(s) {', '.join(missing)} "
                            f"(needs {', '.join(WAVEFORM_COLUMNS)})")
        n = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        return read_parquet(files, columns=list(WAVEFORM_COLUMNS)), n
    items = wfdb_table(path).to_dict("records")
    return ray.data.from_items(items, override_num_blocks=max(1, min(64, len(items) // 16))), len(items)


def wfdb_table(path: Path) -> pd.DataFrame:
    """Record ids and paths (without extension) of a WFDB folder or a MIMIC ``record_list.csv``."""
    from eee_ray.ecgdata.mimic import _read_csv
    from eee_ray.ecgdata.records import safe_path

    if path.is_file() and path.suffix == ".csv":
        rl = _read_csv(path, "record list", ("path",))
        ids = rl["study_id"] if "study_id" in rl.columns else rl["path"]
        paths = [safe_path(path.parent, rel) for rel in rl["path"]]
        bad = [rel for rel, p in zip(rl["path"], paths) if p is None]
        if bad:
            raise UserError(f"{len(bad)} path(s) in {path} leave its folder, e.g. {bad[0]!r}")
        return pd.DataFrame({"record_id": ids.astype(str), "path": [str(p) for p in paths]})
    if path.is_dir():
        heads = sorted(path.rglob("*.hea"))
        if not heads:
            raise UserError(f"no WFDB records (*.hea) under {path}")
        return pd.DataFrame({"record_id": [str(h.relative_to(path).with_suffix("")) for h in heads],
                             "path": [str(h.with_suffix("")) for h in heads]})
    raise UserError(f"input must be a WFDB folder, a record_list.csv or a waveform .parquet, not {path}")


def run_inference(cfg: InferenceConfig) -> dict[str, Any]:
    """Embed or predict every record of ``cfg.input`` into Parquet under ``cfg.output``; returns a summary."""
    import ray

    from eee_ray.io import atomic_write_text
    from eee_ray.runtime import init_ray, mlflow_dir

    cfg.validate()
    inp = Path(cfg.input)
    ckpt = (read_checkpoint(cfg.checkpoint) if cfg.checkpoint
            else download_checkpoint(cfg.run_id, mlflow_dir(cfg.mlflow, cfg.output)))
    aggregate = cfg.aggregate or ckpt.meta.get("aggregate", "mean")
    if aggregate not in ("mean", "max"):
        raise UserError(f"aggregate must be mean or max, not {aggregate!r}")
    build_model_from(ckpt)  # fail here, once, on a checkpoint that does not match its spec

    init_ray()
    ds, n = _input_dataset(inp)
    actors = max(1, min(cfg.max_actors, -(-n // cfg.batch_size)))  # no idle actor (each loads torch and the model)
    log.info("%s with %s (%s, leads %s) on %d records from %s", cfg.mode, ckpt.meta.get("model"),
             ckpt.meta.get("strategy", ""), ",".join(ckpt.leads), n, inp)
    resources = {"num_cpus": cfg.cpus_per_actor, **({"num_gpus": cfg.gpus_per_actor} if cfg.gpus_per_actor else {})}
    init = {"ckpt": ckpt, "mode": cfg.mode, "aggregate": aggregate, "batch_size": cfg.batch_size}
    out = ds.map_batches(Predictor, fn_constructor_kwargs=init,
                         batch_size=cfg.batch_size, batch_format="numpy",
                         compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
                         **resources)
    out_dir = Path(cfg.output)
    out.write_parquet(str(out_dir), mode="overwrite")

    reasons = pd.read_parquet(out_dir, columns=["reason"])["reason"]
    summary = {"mode": cfg.mode, "records": int(len(reasons)), "used": int((reasons == "").sum()),
               "skipped": {str(k): int(v) for k, v in reasons[reasons != ""].value_counts().items()},
               "model": ckpt.meta.get("model"), "strategy": ckpt.meta.get("strategy"), "leads": ckpt.leads,
               "label_names": ckpt.label_names, "aggregate": aggregate,
               "source": cfg.run_id and f"mlflow run {cfg.run_id}" or str(Path(cfg.checkpoint).resolve())}
    atomic_write_text(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2))
    return summary
