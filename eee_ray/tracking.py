"""How runs look in the MLflow UI: nesting under a parent run, the tags users filter by, and dataset inputs.

A stage's run is a top-level ("parent") run; a benchmark's trials, summary and analysis are its children
(``mlflow.parentRunId``), so the runs table groups one sweep under one expandable row. Every run records what it read
as an MLflow dataset input whose digest is computed from the record listing (ids and splits, or the manifest), so two
runs on different data show different datasets in the UI's Datasets column.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

PARENT_TAG = "mlflow.parentRunId"  # the tag the MLflow UI nests a run under
SOURCE_TAG = "mlflow.source.name"  # the UI's "Source" column
DATA_CONTEXT_TAG = "mlflow.data.context"  # training / validation / testing, as the UI labels a dataset input
DATASET_INSERT_TRIES = 3  # a sqlite store refuses the second of two simultaneous inserts of one new dataset


def listing_digest(listing: pd.DataFrame) -> str:
    """A short content digest of a record listing (column names and every value, row order included)."""
    h = hashlib.sha256(",".join(map(str, listing.columns)).encode())
    for col in listing.columns:
        h.update(b"\0" + "\x1f".join(map(str, listing[col].tolist())).encode())
    return h.hexdigest()[:16]


def run_tags(kind: str, source: str, parent_run_id: str = "", **tags: Any) -> dict[str, str]:
    """The tags every eee_ray run carries: what it is (``kind``), where it came from, its parent, and the rest
    (model, leads, strategy, label_fraction, ...; empty values are left out)."""
    out = {"kind": kind, SOURCE_TAG: source, **{k: str(v) for k, v in tags.items() if v not in (None, "")}}
    if parent_run_id:
        out[PARENT_TAG] = parent_run_id
    return out


def log_dataset(client, run_id: str, listing: pd.DataFrame, name: str, source: str, context: str,
                counts: Mapping[str, int] | None = None) -> str:
    """Record ``listing`` (one row per record: ids, split, labels...; never the signals) as a dataset input of the
    run, named ``name``, from ``source`` (a path or URI), used for ``context`` (training, validation, testing).

    ``counts`` go into the dataset's profile beside its row count. Returns the digest."""
    import json

    import time
    import warnings

    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.exceptions import MlflowException
    from mlflow.types.utils import _infer_schema

    digest = listing_digest(listing)
    uri = source if "://" in source else Path(source).resolve().as_uri()
    with warnings.catch_warnings():  # MLflow's hint about integer columns concerns model inputs, not a listing
        warnings.simplefilter("ignore", UserWarning)
        schema = json.dumps({"mlflow_colspec": _infer_schema(listing).to_dict()})
    profile = json.dumps({"num_rows": int(len(listing)), **{k: int(v) for k, v in (counts or {}).items()}})
    entity = Dataset(name=name, digest=digest, source_type="local", source=json.dumps({"uri": uri}), schema=schema,
                     profile=profile)
    inputs = [DatasetInput(entity, tags=[InputTag(DATA_CONTEXT_TAG, context)])]
    for attempt in range(DATASET_INSERT_TRIES):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return digest
        except MlflowException as e:
            # two runs inserting the same new dataset at once: one wins, the other finds it on the next try
            if "UNIQUE constraint" not in str(e) or attempt == DATASET_INSERT_TRIES - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    return digest


def parquet_listing(folder: str | Path) -> pd.DataFrame:
    """A Parquet folder as a listing (file name, rows, bytes): its digest changes when any file's content does,
    without reading the data."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from eee_ray import storage

    fs, root = storage.filesystem(folder)
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    files = sorted((i for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")),
                   key=lambda i: i.base_name)
    return pd.DataFrame({"file": [f.base_name for f in files],
                         "rows": [pq.ParquetFile(fs.open_input_file(f.path)).metadata.num_rows for f in files],
                         "bytes": [f.size for f in files]})
