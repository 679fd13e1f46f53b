"""The Ray Data ingest: a path list streamed through Ray Data tasks that read, decode and trace each file themselves
(raw bytes never enter the object store) and write their batch's Parquet parts atomically.

Exactly-once: a batch's parts are named by a hash of its paths, so a batch that Ray retries after a worker died
overwrites its own parts; clips are written before the manifest (the manifest part is the commit mark), orphaned
clips parts are dropped on the next run, and any path that still ends up in two parts is kept once (``reconcile``).
Resume: paths already in the manifest are skipped.

``--input`` and ``--output`` may be bucket prefixes (``s3://...``, ``eee_ray.storage``): the tasks read each object
and upload each part as one object, which is the same commit (a part is there whole or not at all).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from eee_ray import storage
from eee_ray.config import save, to_dict
from eee_ray.errors import UserError
from eee_ray.ingest import schema as S
from eee_ray.faults import crash_once
from eee_ray.ingest.config import EXPERIMENT, IngestConfig
from eee_ray.ingest.discover import InputFile, discover
from eee_ray.io import atomic_write, atomic_write_text, read_parquet

log = logging.getLogger(__name__)
PART = "part-{}.parquet"


@dataclass
class IngestSummary:
    output: str
    manifest_dir: str
    clips_dir: str
    discovered: int = 0
    skipped: int = 0                        # already in the manifest (resume)
    processed: int = 0                      # processed in this run
    total: int = 0                          # rows in the manifest after this run
    by_status: dict = field(default_factory=dict)
    by_reason: dict = field(default_factory=dict)
    qa_pngs: list = field(default_factory=list)
    nodes: dict = field(default_factory=dict)    # files processed in this run per Ray node id
    mlflow_tracking_uri: str = ""
    mlflow_run_id: str = ""


def batch_name(paths: list[str]) -> str:
    return PART.format(hashlib.sha1("\n".join(paths).encode()).hexdigest()[:20])


ECHO_PIXELS = "echo.data.list.element"  # the Parquet leaf column of the echo frames' pixels


def write_table(path: str | Path, table: pa.Table) -> None:
    """zstd: as fast as snappy here and several times smaller on echo frames (black outside the sector).

    The echo pixels skip dictionary encoding and statistics, the writer's costliest steps for them (a binary echo
    would also put two 2 MB min/max values in the footer). Stored as a tensor (millions of uint8 values per part,
    Parquet INT32) they go BYTE_STREAM_SPLIT: the three zero high bytes of each value compress to almost nothing.
    With zstd level 2 the part is as small as with the dictionary and written in about two thirds of the CPU time
    (``benchmarks/ingest_profile.py``).
    """
    opts: dict = {"compression": "zstd"}
    if "echo" in table.column_names:
        rest = [c for c in table.column_names if c != "echo"]
        opts.update(use_dictionary=rest, write_statistics=rest, compression_level=2)
        if not pa.types.is_large_binary(table.schema.field("echo").type):
            opts.update(column_encoding={ECHO_PIXELS: "BYTE_STREAM_SPLIT"})
    atomic_write(path, lambda p: pq.write_table(table, p, **opts))


def clips_table(clips: list[dict], echo_storage: str = "tensor") -> pa.Table:
    schema = S.clips_schema(echo_storage)
    cols = {}
    for f in schema:
        vals = [c[f.name] for c in clips]
        if f.name == "echo":
            cols[f.name] = S.echo_column(vals, echo_storage)
        elif f.name in ("ecg_px", "ecg"):
            cols[f.name] = pa.array([np.asarray(v, np.float32) for v in vals], type=f.type)
        else:
            cols[f.name] = pa.array(vals, type=f.type)
    return pa.table(cols, schema=schema)


def ingest_batch(batch: dict, cfg: dict, plan: dict, filesystems: dict) -> dict:
    """One Ray Data task: processes a batch of paths and writes that batch's manifest/clips parts.

    A task, not an actor: Ray runs tasks in its pooled worker processes, which keep the decoder stack imported from
    one batch (and one run) to the next, where every actor is a new process that imports it again. The config, the
    fault plan and the driver's file systems travel as arguments.
    """
    import cv2

    from eee_ray.config import from_dict
    from eee_ray.ingest.process import process_file

    cv2.setNumThreads(1)
    storage.adopt(filesystems)
    logging.getLogger("pydicom").setLevel(logging.ERROR)  # charset complaints of odd files, once per file
    config = from_dict(IngestConfig, cfg)
    items = [InputFile(str(p), bytes(fs), _opt_int(sub), _opt_int(stu), str(pr) if pr else None)
             for p, fs, sub, stu, pr in zip(batch["path"], batch["fs"], batch["subject_id"], batch["study_id"],
                                            batch["problem"])]
    outcomes = [process_file(it, config) for it in items]
    name = batch_name([it.path for it in items])
    clips = [o.clip for o in outcomes if o.clip is not None]
    if clips:
        write_table(storage.join(config.output, "clips", name), clips_table(clips, config.echo_storage))
    crash_once(plan)  # between the clips and the manifest write: the worst moment to die
    rows = [o.manifest for o in outcomes]
    write_table(storage.join(config.output, "manifest", name), pa.Table.from_pylist(rows, schema=S.MANIFEST_SCHEMA))
    return {"status": np.array([r["status"] for r in rows]),
            "reason": np.array([r["reason"] or "" for r in rows]),
            "node": np.array([_node_id()] * len(rows))}


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _id(v: int | None) -> int:
    return NO_ID if v is None else v


NO_ID = -1  # how an unknown ID travels through Ray Data (a null would turn the column into floats)


def _opt_int(v) -> int | None:
    return None if int(v) == NO_ID else int(v)


def _read_table(path: str, columns: list[str] | None = None) -> pa.Table:
    fs, p = storage.filesystem(path)
    return pq.read_table(p, columns=columns, filesystem=fs)


def read_manifest_table(out: str | Path, columns: list[str] | None = None) -> pa.Table:
    """All manifest parts (with a ``_part`` column naming the file each row came from)."""
    tables = []
    for p in storage.files(storage.join(out, "manifest"), "part-*.parquet"):
        t = _read_table(p, columns)
        tables.append(t.append_column("_part", pa.array([storage.name(p)] * t.num_rows)))
    if not tables:
        schema = S.MANIFEST_SCHEMA if columns is None else pa.schema([S.MANIFEST_SCHEMA.field(c) for c in columns])
        return schema.empty_table().append_column("_part", pa.array([], pa.string()))
    return pa.concat_tables(tables)


def tidy(out: str | Path) -> None:
    """Drop temp files of interrupted writes (local folders; an object store never shows one) and clips parts whose
    manifest part never got written."""
    if not storage.is_uri(out):
        for sub in ("manifest", "clips"):
            for tmp in (Path(out) / sub).glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
    committed = {storage.name(p) for p in storage.files(storage.join(out, "manifest"), "part-*.parquet")}
    for clip in storage.files(storage.join(out, "clips"), "part-*.parquet"):
        if storage.name(clip) not in committed:
            storage.remove(clip)


def reconcile(out: str | Path) -> int:
    """Keep each path once across parts (the first part by name wins); returns how many rows were dropped."""
    t = read_manifest_table(out, ["path"])
    if t.num_rows == 0:
        return 0
    df = t.to_pandas().sort_values(["path", "_part"])
    dup = df[df.duplicated("path", keep="first")]
    for part, grp in dup.groupby("_part"):
        drop = set(grp["path"])
        for sub in ("clips", "manifest"):  # manifest last: it is the commit mark
            p = storage.join(out, sub, part)
            if storage.exists(p):
                tab = _read_table(p)
                keep = [x not in drop for x in tab.column("path").to_pylist()]
                write_table(p, tab.filter(pa.array(keep)))
    return len(dup)


# Nodes meant for ingest advertise this custom resource (cluster.yaml's CPU group); where the cluster has it, every
# ingest task asks for one unit, so ingest never lands on the GPU nodes.
INGEST_RESOURCE = "ingest"


def _task_pool(cfg: IngestConfig, res: dict, batches: int):
    """At most one task per CPU (or ``ingest`` unit) at a time, and never more than there are batches of files."""
    from ray.data import TaskPoolStrategy

    total = int(res.get(INGEST_RESOURCE) or res.get("CPU", 1))
    workers = max(1, min(cfg.num_cpus or total, total, batches))
    return TaskPoolStrategy(size=workers), workers


def run_pipeline(todo: list[InputFile], cfg: IngestConfig) -> tuple[Counter, Counter]:
    """Process ``todo``; returns the files per (status, reason) and per Ray node that processed them."""
    import ray

    from eee_ray import faults
    from eee_ray.runtime import init_ray

    init_ray(cfg.num_cpus)
    res = ray.cluster_resources()
    batches = -(-len(todo) // cfg.batch_files)
    compute, workers = _task_pool(cfg, res, batches)
    cpus = min(cfg.cpus_per_worker, max(int(res.get("CPU", 1)) / workers, 0.01))
    items = [{"path": f.path, "fs": f.fs, "subject_id": _id(f.subject_id), "study_id": _id(f.study_id),
              "problem": f.problem or ""} for f in todo]
    # one task per block, one Parquet part per batch of `batch_files` inside it; cap the block count for big trees
    blocks = max(1, min(batches, 64 * workers))
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    # Ray Data retries a task whose worker died (max_retries=-1): the batch rewrites its own parts.
    routing = {"resources": {INGEST_RESOURCE: 1}} if res.get(INGEST_RESOURCE) else {}
    ds = ds.map_batches(ingest_batch, batch_size=cfg.batch_files, compute=compute, num_cpus=cpus,
                        batch_format="numpy", fn_kwargs={"cfg": to_dict(cfg), "plan": faults.plan(),
                                                         "filesystems": storage.carry()}, **routing)
    counts: Counter = Counter()
    nodes: Counter = Counter()
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        counts.update(zip(batch["status"].tolist(), batch["reason"].tolist()))
        nodes.update(batch["node"].tolist())
    return counts, nodes


def run_ingest(cfg: IngestConfig) -> IngestSummary:
    """docs/contract.md, Ingest: every input file becomes one manifest row; accepted ones also a clips row.
    Resumable."""
    cfg.validate()
    inp, out = storage.absolute(cfg.input), storage.absolute(cfg.output)
    if out == inp:
        raise UserError("--output must differ from --input")
    for sub in ("manifest", "clips"):
        storage.makedirs(storage.join(out, sub))
    tidy(out)
    stored = stored_echo_storage(storage.join(out, "clips"))
    if stored is not None and stored != cfg.echo_storage:
        raise UserError(f"{storage.join(out, 'clips')} already holds echo stored as {stored!r}; resume with "
                        f"--echo-storage {stored} or write to a new --output")
    reconcile(out)
    files = discover(inp, out, cfg.limit)
    done = set(read_manifest_table(out, ["path"]).column("path").to_pylist())
    todo = [f for f in files if f.path not in done]
    save(cfg, storage.join(out, "config.yaml"))
    summary = IngestSummary(out, storage.join(out, "manifest"), storage.join(out, "clips"), discovered=len(files),
                            skipped=len(files) - len(todo), processed=len(todo))
    log.info("ingest: %d files found, %d already in the manifest, %d to process", len(files),
             summary.skipped, len(todo))
    if todo:
        counts, nodes = run_pipeline(todo, dataclasses.replace(cfg, input=inp, output=out))
        summary.nodes = dict(nodes)
        log.info("ingest: this run %s", ", ".join(f"{r or s}: {n}" for (s, r), n in counts.most_common()))
    reconcile(out)
    manifest = read_manifest_table(out, ["path", "status", "reason"])
    summary.total = manifest.num_rows
    summary.by_status = dict(Counter(manifest.column("status").to_pylist()))
    summary.by_reason = dict(Counter(r for r in manifest.column("reason").to_pylist() if r))
    if cfg.qa_samples > 0:
        from eee_ray.ingest.qa import write_qa

        summary.qa_pngs = write_qa(cfg, inp, out, files)
    atomic_write_text(storage.join(out, "summary.json"), json.dumps(dataclasses.asdict(summary), indent=2))
    _log_mlflow(cfg, out, summary)
    return summary


def _log_mlflow(cfg: IngestConfig, out: str, summary: IngestSummary) -> None:
    """One MLflow run per ingest invocation: the resolved config, the counts per reason, the QA pictures."""
    import mlflow

    from eee_ray.config import flat_params
    from eee_ray.runtime import setup_mlflow
    from eee_ray.tracking import log_dataset, run_tags

    uri, exp_id = setup_mlflow(cfg.mlflow, out, EXPERIMENT)
    client = mlflow.MlflowClient(uri)
    run_id = client.create_run(exp_id, run_name=f"ingest-{storage.name(out)}",
                               tags=run_tags("ingest", "eee-ray ingest", input=cfg.input)).info.run_id
    status = "FAILED"
    try:
        # what this ingest read: the manifest's listing of DICOM files and their outcome
        listing = read_manifest(out)[["path", "status", "reason"]].astype(str)
        log_dataset(client, run_id, listing, "echo-dicoms", cfg.input, "training",
                    {"files": summary.total, **{f"files_{k}": v for k, v in summary.by_status.items()}})
        for k, v in flat_params(cfg).items():
            client.log_param(run_id, k, str(v)[:500])
        metrics = {"files_total": summary.total, "files_this_run": summary.processed,
                   **{f"files_{k}": v for k, v in summary.by_status.items()},
                   **{f"rejected_{k}": v for k, v in summary.by_reason.items()}}
        for k, v in metrics.items():
            client.log_metric(run_id, k, float(v))
        for name in ("summary.json", "config.yaml"):
            with storage.local_copy(storage.join(out, name)) as local:
                client.log_artifact(run_id, str(local))
        for png in summary.qa_pngs or []:
            with storage.local_copy(png) as local:
                client.log_artifact(run_id, str(local), artifact_path="qa")
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status)
    summary.mlflow_tracking_uri, summary.mlflow_run_id = uri, run_id
    atomic_write_text(storage.join(out, "summary.json"), json.dumps(dataclasses.asdict(summary), indent=2))


def read_manifest(output: str | Path):
    """The manifest as a pandas DataFrame, each path once."""
    t = read_manifest_table(output)
    df = t.drop_columns(["_part"]).to_pandas().drop_duplicates("path")
    return df.sort_values("path").reset_index(drop=True)


def stored_echo_storage(clips_dir: str | Path) -> str | None:
    """How an existing ``clips/`` stores ``echo`` (from one part's footer; ingest never mixes), None when empty."""
    part = next(iter(storage.files(clips_dir, "part-*.parquet")), None)
    if part is None:
        return None
    fs, p = storage.filesystem(part)
    return "bytes" if pa.types.is_large_binary(pq.read_schema(p, filesystem=fs).field("echo").type) else "tensor"


def clip_files(output_or_clips: str | Path) -> list[str]:
    """The Parquet parts of ``clips/``; accepts the ingest output folder or its ``clips/`` folder (or prefix)."""
    clips = clips_folder(output_or_clips)
    files = storage.files(clips, "part-*.parquet")
    if not files:
        raise UserError(f"no clips found in {clips} (run `eee-ray ingest` first)")
    return files


def clips_folder(output_or_clips: str | Path) -> str:
    """The ``clips/`` folder (or prefix) of an ingest output, or the folder itself when it is one."""
    sub = storage.join(output_or_clips, "clips")
    return sub if storage.is_dir(sub) else storage.absolute(output_or_clips)


def read_clips(output_or_clips: str | Path):
    """The accepted clips as a Ray Dataset; ``echo`` comes back as a numpy uint8 array (F, 224, 224) per row,
    whichever ``echo_storage`` wrote them.

    Accepts the ingest output folder or its ``clips/`` folder.
    """
    files = clip_files(output_or_clips)
    clips = storage.parent(files[0])
    ds = read_parquet(files)
    if stored_echo_storage(clips) == "bytes":
        ds = ds.map_batches(S.echo_batch_to_tensors, batch_format="numpy")
    return ds
