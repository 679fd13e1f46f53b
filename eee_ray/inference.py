"""ECG-only inference with a trained benchmark model (docs/contract.md, Analysis and inference): ``embed``
(record-averaged penultimate features) and ``predict`` (per-label probabilities), batched with Ray Data.

A checkpoint is a folder with ``model.pt`` (a plain state_dict, loaded with ``weights_only=True``) and ``meta.json``
(the model spec, leads, label names, window, aggregation and preprocessing), as written by ``eee-ray benchmark``; it
is read from disk, downloaded from an MLflow run's ``checkpoint/`` artifact, or taken out of a logged MLflow model
(``models:/eee-ecg-II/1``, see ``eee_ray.serving``). Inputs are WFDB records (a folder or a
MIMIC ``record_list.csv``) or a Parquet of waveforms. Every input record gives one output row; records that cannot
be used keep a null result and a ``reason``. Preparation and windowing reuse the training code (``ecgdata.records``,
``ecgdata.windows``) so inference sees ECGs exactly as the model did in training.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eee_ray import storage
from eee_ray.config import MlflowConfig
from eee_ray.errors import UserError
from eee_ray.io import read_parquet

log = logging.getLogger(__name__)

MODES = ("embed", "predict")
WAVEFORM_COLUMNS = ("record_id", "signal", "fs", "lead_names")
CHECKPOINT_ARTIFACTS = ("checkpoint", "trial")  # artifact folders of a run that may hold model.pt + meta.json
SUMMARY_NAME = "_inference.json"  # leading underscore: Parquet readers skip it when reading the folder
MODEL_BUDGET_FACTOR = 4  # a model may create this many times the elements its weights file holds while built ...
MODEL_BUDGET_SLACK = 10_000_000  # ... plus this many (init temporaries): more means meta.json lies about the model


@dataclass
class InferenceConfig:
    """Input, model, output and the Ray Data knobs of one ``embed`` / ``predict`` run."""

    input: str = ""  # folder of WFDB records, a MIMIC record_list.csv, or a .parquet of waveforms
    output: str = ""  # output folder of Parquet files
    mode: str = "predict"  # embed | predict
    checkpoint: str = ""  # a checkpoint folder (model.pt + meta.json) ...
    run_id: str = ""  # ... or an MLflow run whose artifact `checkpoint/` holds one ...
    model: str = ""  # ... or a logged MLflow model: models:/NAME/VERSION (the registry) or models:/MODEL_ID
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)  # the store that holds ``run_id`` / ``model``
    aggregate: str = ""  # mean | max over a record's windows; default: what the checkpoint was evaluated with
    batch_size: int = 32  # records per model call
    max_actors: int = 2  # the actor pool autoscales from 1 to this
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0  # 1 on a GPU node

    def validate(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if sum(map(bool, (self.checkpoint, self.run_id, self.model))) != 1:
            raise UserError("give exactly one of --checkpoint DIR, --run-id RUN or --model models:/NAME/VERSION")
        if self.model and ":/" not in self.model:
            raise UserError(f"--model must be an MLflow model URI such as models:/eee-ecg-II/1, not {self.model!r}")
        if not self.output:
            raise UserError("--output is required")
        storage.check_bucket(self.input, "--input")
        storage.check_bucket(self.output, "--output")
        if not storage.exists(self.input):
            raise UserError(f"input not found: {self.input}")
        if storage.is_uri(self.checkpoint):
            storage.check_dir(self.checkpoint, "--checkpoint")
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


def _read_meta(meta_json: Path) -> dict[str, Any]:
    """meta.json as a dict whose fields have the types inference relies on; anything else is a ``UserError``."""
    from eee_ray.ecgdata.records import CANONICAL_LEADS

    try:
        meta = json.loads(meta_json.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise UserError(f"{meta_json} is not readable JSON: {str(e)[:120]}") from None
    if not isinstance(meta, dict):
        raise UserError(f"{meta_json} must hold a JSON object, not a {type(meta).__name__}")
    missing = [k for k in ("model_spec", "leads", "label_names", "window") if k not in meta]
    if missing:
        raise UserError(f"{meta_json} lacks {', '.join(missing)}")
    spec = meta["model_spec"]
    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str)
            and all(isinstance(spec.get(k), int) and not isinstance(spec.get(k), bool)
                    for k in ("n_leads", "n_classes"))):
        raise UserError(f"{meta_json}: model_spec must be an object with name, n_leads and n_classes")
    if "pretrained" in spec:
        raise UserError(f"{meta_json}: model_spec names a file (pretrained); a checkpoint carries all its weights")
    known = {lead.upper() for lead in CANONICAL_LEADS}
    for key, pool in (("leads", known), ("label_names", None)):
        value = meta[key]
        if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
            raise UserError(f"{meta_json}: {key} must be a non-empty list of names")
        if len(set(value)) != len(value):
            raise UserError(f"{meta_json}: {key} repeats a name ({', '.join(value)})")
        if pool is not None and any(v.upper() not in pool for v in value):
            raise UserError(f"{meta_json}: unknown lead(s) {', '.join(v for v in value if v.upper() not in pool)}; "
                            f"known: {', '.join(CANONICAL_LEADS)}")
    if len(meta["leads"]) != spec["n_leads"]:
        raise UserError(f"{meta_json} lists {len(meta['leads'])} lead(s) but its model_spec takes {spec['n_leads']}")
    if len(meta["label_names"]) != spec["n_classes"]:
        raise UserError(f"{meta_json} lists {len(meta['label_names'])} label(s) but its model_spec has "
                        f"{spec['n_classes']} outputs")
    if not (isinstance(meta["window"], int) and not isinstance(meta["window"], bool) and meta["window"] > 0):
        raise UserError(f"{meta_json}: window must be a positive number of samples, not {meta['window']!r}")
    if not isinstance(meta.get("preprocessing", {}), dict):
        raise UserError(f"{meta_json}: preprocessing must be an object")
    return meta


def read_checkpoint(folder: str | Path) -> Checkpoint:
    """A checkpoint folder, checked whole before any record is read: readable meta.json of the right shape, a
    weights-only ``model.pt`` holding a finite state dict that fits the model the meta describes."""
    folder = Path(folder)
    model_pt, meta_json = folder / "model.pt", folder / "meta.json"
    if not (model_pt.is_file() and meta_json.is_file()):
        raise UserError(f"{folder} is not a checkpoint folder (needs model.pt and meta.json)")
    ckpt = Checkpoint(state_bytes=model_pt.read_bytes(), meta=_read_meta(meta_json))
    _signal_spec(ckpt.meta)
    check_fit(ckpt, str(model_pt))
    return ckpt


def check_fit(ckpt: Checkpoint, what: str = "model.pt") -> None:
    """The state dict must be loadable, finite and exactly the shape of the meta's model; the model's window must be
    the meta's. The model is built under an allocation budget sized from the file, so a lying meta.json cannot make
    us allocate a model far larger than the weights it comes with."""
    import torch

    from eee_ray.models.registry import build_model
    from eee_ray.safe_load import (ModelTooLarge, allocation_budget, check_state_dict, fit_mismatch,
                                   load_weights)

    state = check_state_dict(load_weights(ckpt.state_bytes, what), what)
    spec = ckpt.meta["model_spec"]
    held = sum(int(v.numel()) for v in state.values())
    try:
        with torch.no_grad(), allocation_budget(MODEL_BUDGET_FACTOR * held + MODEL_BUDGET_SLACK):
            model = build_model(**spec)
    except UserError as e:
        raise UserError(f"meta.json model_spec: {e}") from None
    except ModelTooLarge:
        raise UserError(f"meta.json describes a {spec['name']} far larger than the {held} weights in {what}"
                        ) from None
    except (TypeError, ValueError) as e:
        raise UserError(f"meta.json model_spec does not describe a buildable model: {str(e)[:160]}") from None
    mismatch = fit_mismatch(model.state_dict(), state)
    if mismatch:
        raise UserError(f"{what} does not fit the {spec['name']} that meta.json describes: {mismatch}")
    if int(model.window) != int(ckpt.meta["window"]):
        raise UserError(f"meta.json says window {ckpt.meta['window']} but its {spec['name']} takes "
                        f"{model.window}-sample windows")
    n = _signal_spec(ckpt.meta).n_samples
    if model.window > n:
        raise UserError(f"the model's {model.window}-sample window is longer than a prepared record ({n} samples)")


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


def download_model_checkpoint(model_uri: str, workdir: str | Path) -> Checkpoint:
    """The checkpoint inside a logged pyfunc model (``eee_ray.serving``): ``models:/NAME/VERSION`` from the Model
    Registry or ``models:/MODEL_ID``, from ``MLFLOW_TRACKING_URI`` or the store in
    ``workdir``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from eee_ray.runtime import tracking_uri, use_tracking_uri
    from eee_ray.serving import CHECKPOINT_ARTIFACT

    use_tracking_uri(tracking_uri(workdir))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        except MlflowException as e:
            raise UserError(f"cannot read MLflow model {model_uri}: {str(e).splitlines()[0]}") from None
        folder = local / "artifacts" / CHECKPOINT_ARTIFACT
        if not folder.is_dir():
            raise UserError(f"MLflow model {model_uri} is not an eee_ray model (no artifacts/{CHECKPOINT_ARTIFACT}/)")
        return read_checkpoint(folder)


def load_checkpoint(cfg: InferenceConfig) -> Checkpoint:
    """The checkpoint ``cfg`` names: a folder, an MLflow run's artifact or a logged (registered) MLflow model."""
    from eee_ray.runtime import mlflow_dir

    if cfg.checkpoint:
        return read_checkpoint(cfg.checkpoint)
    if cfg.model:
        return download_model_checkpoint(cfg.model, mlflow_dir(cfg.mlflow, cfg.output))
    return download_checkpoint(cfg.run_id, mlflow_dir(cfg.mlflow, cfg.output))


def build_model_from(ckpt: Checkpoint):
    """The model of a checkpoint, weights loaded, in eval mode (``weights_only=True``: no pickle execution)."""
    from eee_ray.models.registry import build_model

    from eee_ray.safe_load import load_weights

    model = build_model(**ckpt.meta["model_spec"])
    model.load_state_dict(load_weights(ckpt.state_bytes, "model.pt"))
    return model.eval()


def _signal_spec(meta: dict[str, Any]):
    """The training-time preparation, from the checkpoint's ``preprocessing`` (unknown keys are descriptive)."""
    from eee_ray.ecgdata.records import SignalSpec

    from eee_ray.config import from_dict

    names = {f.name for f in dataclasses.fields(SignalSpec)}
    try:
        spec = from_dict(SignalSpec, {k: v for k, v in meta.get("preprocessing", {}).items() if k in names})
    except UserError as e:
        raise UserError(f"meta.json preprocessing: {e}") from None
    if not (spec.sample_rate > 0 and spec.duration_s > 0 and spec.min_source_rate > 0):
        raise UserError("meta.json preprocessing: sample_rate, duration_s and min_source_rate must be positive")
    return spec


def waveform_row(signal: Any, fs: Any, names: Any, leads: list[str], spec) -> tuple[np.ndarray | None, str]:
    """One row of a waveform Parquet (``signal`` leads x samples, ``fs``, ``lead_names``) -> prepared signal or a
    reason naming what is wrong with the row; never raises for bad values."""
    from eee_ray.ecgdata.records import prepare_signal

    if signal is None or names is None or fs is None:
        return None, "signal, fs or lead_names is null"
    try:
        rate = float(fs)
    except (TypeError, ValueError):
        return None, f"fs is not a number: {str(fs)[:40]!r}"
    if np.isnan(rate):
        return None, "fs is missing (null or NaN)"
    if not (np.isfinite(rate) and rate > 0):
        return None, f"fs {rate:g} Hz is not a positive number"
    names = [str(n) for n in names]
    try:
        lead_rows = [np.asarray(lead, np.float64) for lead in signal]
    except (TypeError, ValueError):
        return None, "signal holds values that are not numbers"
    if not lead_rows or any(r.ndim != 1 for r in lead_rows):
        return None, "signal must be a list of leads, each a list of samples"
    if len({len(r) for r in lead_rows}) != 1:
        return None, f"signal leads differ in length ({', '.join(str(len(r)) for r in lead_rows[:4])}, ...)"
    if len(lead_rows) != len(names):
        return None, f"signal has {len(lead_rows)} lead(s) but lead_names names {len(names)}"
    return prepare_signal(np.stack(lead_rows, axis=1), rate, names, leads, spec)


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
        from eee_ray.ecgdata.records import read_wfdb

        if "path" in batch:
            if batch["reason"][i]:
                return None, str(batch["reason"][i])
            return read_wfdb(os.fsdecode(batch["path"][i]), self.leads, self.spec)
        return waveform_row(batch["signal"][i], batch["fs"][i], batch["lead_names"][i], self.leads, self.spec)

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


def _list_like(t, inner) -> bool:
    import pyarrow as pa

    return (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and inner(t.value_type)


def _numeric(t) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _string(t) -> bool:
    import pyarrow as pa

    return pa.types.is_string(t) or pa.types.is_large_string(t)


WAVEFORM_TYPES = {  # column -> (type check, what the user must provide)
    "record_id": (lambda t: _string(t) or _numeric(t), "strings or integers"),
    "signal": (lambda t: _list_like(t, lambda u: _list_like(u, _numeric)), "lists of leads, each a list of numbers"),
    "fs": (_numeric, "numbers (Hz)"),
    "lead_names": (lambda t: _list_like(t, _string), "lists of strings"),
}


def waveform_files(path: Path) -> tuple[list[Path], int]:
    """The Parquet files of a waveform input and their row count, every file's schema checked from its footer
    (cheap, before Ray starts): the four columns must exist with the types inference reads."""
    import pyarrow.parquet as pq

    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    n = 0
    for f in files:
        try:
            meta = pq.ParquetFile(f).metadata
            schema = meta.schema.to_arrow_schema()
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a file that is not Parquet
            raise UserError(f"{f} is not a readable Parquet file: {str(e).splitlines()[0][:120]}") from None
        missing = [c for c in WAVEFORM_COLUMNS if c not in schema.names]
        if missing:
            raise UserError(f"waveform Parquet {f} lacks column(s) {', '.join(missing)} "
                            f"(needs {', '.join(WAVEFORM_COLUMNS)})")
        for col, (ok, want) in WAVEFORM_TYPES.items():
            if not ok(schema.field(col).type):
                raise UserError(f"waveform Parquet {f}: column {col} must hold {want}, not {schema.field(col).type}")
        n += meta.num_rows
    if n == 0:
        raise UserError(f"waveform Parquet {path} has no rows")
    return files, n


def _is_parquet_input(path: Path) -> bool:
    return path.suffix == ".parquet" or (path.is_dir() and any(path.glob("*.parquet")))


def _display(text: str) -> str:
    """A path or name as valid UTF-8 (bytes that are not become backslash escapes), safe to write to Parquet."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def wfdb_table(path: Path) -> pd.DataFrame:
    """``record_id, path, reason`` of a WFDB folder or a MIMIC ``record_list.csv``: one row per record, ``reason``
    set for a record refused before reading (a path leaving the input's folder, a record id listed twice). Paths are
    bytes, exactly as the OS spells them (a file name need not be UTF-8; Arrow strings must be)."""
    from eee_ray.ecgdata.mimic import _read_csv
    from eee_ray.ecgdata.records import safe_path

    if path.is_file() and path.suffix == ".csv":
        rl = _read_csv(path, "record list", ("path",))
        ids = rl["study_id"] if "study_id" in rl.columns else rl["path"]
        rows, seen = [], set()
        for rid, rel in zip(ids.astype(str).str.strip(), rl["path"]):
            target = safe_path(path.parent, rel) if str(rel).strip() else None
            reason = ("empty record id" if not rid else f"record id {rid} listed again" if rid in seen
                      else "empty path" if not str(rel).strip()
                      else f"path {str(rel)[:80]!r} leaves the folder of {path.name}" if target is None else "")
            seen.add(rid)
            rows.append({"record_id": _display(rid) or f"<line {len(rows) + 2}>",
                         "path": os.fsencode(target) if target is not None else b"", "reason": reason})
        if not rows:
            raise UserError(f"record list {path} lists no records")
        return pd.DataFrame(rows, columns=["record_id", "path", "reason"])
    if path.is_dir():
        heads = sorted(path.rglob("*.hea"))
        if not heads:
            raise UserError(f"no WFDB records (*.hea) under {path}")
        root = path.resolve()
        return pd.DataFrame({
            "record_id": [_display(str(h.relative_to(path).with_suffix(""))) for h in heads],
            "path": [os.fsencode(h.with_suffix("")) for h in heads],
            "reason": ["" if h.resolve().is_relative_to(root) else f"header {h.name} is a link out of {path}"
                       for h in heads]})
    raise UserError(f"input must be a WFDB folder, a record_list.csv or a waveform .parquet, not {path}")


def _local_inputs(cfg: InferenceConfig) -> str:
    """Inputs in a bucket are read from the local cache (``eee_ray.storage.cache_dir``): a waveform .parquet is
    downloaded; a record_list.csv brings the tree beside it (its records' relative paths), a folder its whole tree;
    files already there at the same size are kept. A checkpoint folder is mirrored too. Returns where the checkpoint
    came from (the summary's ``source``)."""
    source = cfg.checkpoint if storage.is_uri(cfg.checkpoint) else str(Path(cfg.checkpoint).resolve())
    if storage.is_uri(cfg.input):
        if storage.is_dir(cfg.input):
            cfg.input = str(storage.mirror(cfg.input, storage.cache_path("data", cfg.input)))
        elif cfg.input.endswith(".csv"):
            folder = storage.parent(cfg.input)
            cfg.input = str(storage.mirror(folder, storage.cache_path("data", folder)) / storage.name(cfg.input))
        else:
            cfg.input = str(storage.download(cfg.input, storage.cache_path("data", cfg.input)))
    if storage.is_uri(cfg.checkpoint):
        cfg.checkpoint = str(storage.mirror(cfg.checkpoint, storage.cache_path("models", cfg.checkpoint)))
    return source


def run_inference(cfg: InferenceConfig) -> dict[str, Any]:
    """Embed or predict every record of ``cfg.input`` into Parquet under ``cfg.output`` (a local folder or a bucket
    prefix, written by the Ray Data workers directly); returns a summary."""
    import pyarrow.parquet as pq
    import ray

    from eee_ray.io import atomic_write_text
    from eee_ray.runtime import init_ray

    cfg.validate()
    source = _local_inputs(cfg)
    inp = Path(cfg.input)
    ckpt = load_checkpoint(cfg)
    aggregate = cfg.aggregate or ckpt.meta.get("aggregate", "mean")
    if aggregate not in ("mean", "max"):
        raise UserError(f"aggregate must be mean or max, not {aggregate!r}")
    if _is_parquet_input(inp):  # every input problem that stops the whole run is found before Ray starts
        files, n = waveform_files(inp)
        init_ray()
        ds = read_parquet(files, columns=list(WAVEFORM_COLUMNS))
    else:
        items = wfdb_table(inp).to_dict("records")
        n = len(items)
        init_ray()
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(64, n // 16)))
    actors = max(1, min(cfg.max_actors, -(-n // cfg.batch_size)))  # no idle actor (each loads torch and the model)
    log.info("%s with %s (%s, leads %s) on %d records from %s", cfg.mode, ckpt.meta.get("model"),
             ckpt.meta.get("strategy", ""), ",".join(ckpt.leads), n, inp)
    resources = {"num_cpus": cfg.cpus_per_actor, **({"num_gpus": cfg.gpus_per_actor} if cfg.gpus_per_actor else {})}
    init = {"ckpt": ckpt, "mode": cfg.mode, "aggregate": aggregate, "batch_size": cfg.batch_size}
    out = ds.map_batches(Predictor, fn_constructor_kwargs=init,
                         batch_size=cfg.batch_size, batch_format="numpy",
                         compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
                         **resources)
    fs, out_path = storage.filesystem(cfg.output) if storage.is_uri(cfg.output) else (None, str(Path(cfg.output)))
    out.write_parquet(out_path, filesystem=fs, mode="overwrite")

    reasons = pq.read_table(out_path, filesystem=fs, columns=["reason"]).column("reason").to_pandas()
    summary = {"mode": cfg.mode, "records": int(len(reasons)), "used": int((reasons == "").sum()),
               "skipped": {str(k): int(v) for k, v in reasons[reasons != ""].value_counts().items()},
               "model": ckpt.meta.get("model"), "strategy": ckpt.meta.get("strategy"), "leads": ckpt.leads,
               "label_names": ckpt.label_names, "aggregate": aggregate,
               "source": (cfg.model and f"mlflow model {cfg.model}" or cfg.run_id and f"mlflow run {cfg.run_id}"
                          or source)}
    atomic_write_text(storage.join(cfg.output, SUMMARY_NAME), json.dumps(summary, indent=2))
    return summary
