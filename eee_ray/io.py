"""File I/O shared by the stages: atomic writes (a later stage never reads a half-written result, checkpoint or
manifest) and the Parquet reader of Ray Data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> str | Path:
    """Call ``write(tmp_path)`` on a temporary name in the same folder, then rename it onto ``path``; for an
    object-storage URI, upload the temporary file as one object (``eee_ray.storage``)."""
    from eee_ray import storage

    if storage.is_uri(path):
        return storage.atomic_upload(str(path), write)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o644)  # mkstemp makes 0600 files; results are read by others on a shared cluster disk
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> str | Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> str | Path:
    return atomic_write(path, lambda p: p.write_text(text))


def atomic_torch_save(obj, path: str | Path) -> str | Path:
    import torch

    return atomic_write(path, lambda p: torch.save(obj, p))


def read_parquet(files: Sequence[str | Path], columns: list[str] | None = None):
    """``ray.data.read_parquet`` through Ray Data's V1 datasource.

    Ray 2.60's default (DataSourceV2) lists and samples files in separate tasks, and Ray's default task count (up to
    200, one per small file) spends more on task start-up than on reading, so read tasks are capped at 4 per cluster
    CPU (at least 8). On the ingest output of 640 cines (256 files, 2 CPUs) one column took 0.8 s this way, 3.4 s
    through V1 with Ray's task count and 21 s through V2; all columns 16, 23 and 42 s (``benchmarks/read_clips.py``).
    """
    import ray

    from eee_ray import storage
    from eee_ray.ray_internals import use_datasource_v1

    cpus = int(ray.cluster_resources().get("CPU", 2)) if ray.is_initialized() else 2
    tasks = min(len(files), max(8, 4 * cpus))
    fs = storage.filesystem(files[0])[0] if files and storage.is_uri(files[0]) else None
    paths = [storage.filesystem(f)[1] for f in files] if fs is not None else [str(f) for f in files]
    with use_datasource_v1():  # read when the plan is built, i.e. inside this call
        # a bucket's file system goes with the read tasks, keys included: the workers need no S3 settings
        ds = ray.data.read_parquet(paths, override_num_blocks=tasks, filesystem=fs)
    return ds.select_columns(columns) if columns else ds
