"""The on-disk pairs cache: pretraining's training samples built once by one Ray Data pass, read back every epoch.

Why: rebuilding a sample (Parquet read of the cine, frame pick, resize to ``image_size``) costs about 12 times the
tiny preset's CPU training step on it (``benchmarks/pretrain_streaming.py``), and a GPU step is shorter still, so
streaming from ``clips/`` every epoch starves the workers; keeping the samples in the object store is what a small
set does, but MIMIC's 255,576 clips hold about 160 GB of 112 px samples. The cache is Parquet beside the run (or in
any folder or bucket the workers can read), so an epoch costs a Parquet read and no decode or resize.

A cache is reused only when it was built from the same ``clips/`` parts (names and sizes), the same sample settings
(``PairsConfig``) and the same held-out patients; otherwise it is rebuilt, never silently reused. ``pairs_cache.json``
is written last, so a cache whose build was interrupted has no valid marker and is rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from eee_ray import storage
from eee_ray.errors import UserError

log = logging.getLogger(__name__)

MARKER = "pairs_cache.json"
FORMAT = 1   # bumped when the cached columns change


def cache_key(clips_dir: str | Path, pairs: Any, heldout_patients: list[int], exclude=frozenset()) -> str:
    """What the cached samples depend on, hashed: the clips parts (name and size), the sample settings, the
    held-out patients and the excluded ones (the training set is every usable clip of the other patients)."""
    from eee_ray.ingest.pipeline import clip_files

    files = clip_files(clips_dir)
    sizes = {storage.name(rel): size for rel, size in storage.walk(storage.parent(files[0]))}  # one listing
    parts = sorted((storage.name(f), sizes[storage.name(f)]) for f in files)
    fields = {"format": FORMAT, "parts": parts, "pairs": dataclasses.asdict(pairs),
              "heldout": sorted(int(p) for p in heldout_patients)}
    if exclude:   # absent when nothing is excluded: the key of a cache built before the option existed holds
        fields["exclude"] = sorted(int(p) for p in exclude)
    blob = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _valid(folder: str, key: str) -> list[str] | None:
    """The cached part files when ``folder`` holds a complete cache for ``key``, else None."""
    present = {rel for rel, _ in storage.walk(folder)}   # one listing, not a request per part
    if MARKER not in present:
        return None
    try:
        meta = json.loads(storage.read_text(storage.join(folder, MARKER)))
    except ValueError:
        meta = {}
    rel = meta.get("files", [])
    if meta.get("key") != key:
        log.info("the pairs cache in %s was built from other clips, settings or split: rebuilding it", folder)
        return None
    if not rel or not set(rel) <= present:
        log.info("the pairs cache in %s is incomplete: rebuilding it", folder)
        return None
    return [storage.join(folder, f) for f in rel]


def cached_train_set(samples: Any, folder: str, key: str, n_samples: int) -> tuple[Any, str]:
    """The training samples as a dataset read from the cache in ``folder``, and ``"reused"`` or ``"built"``.

    ``samples`` (the lazy dataset that builds them from ``clips/``) runs only when no valid cache for ``key`` exists:
    one Ray Data pass that streams into ``parts-<key>/`` (nothing materialised); the marker follows once every part
    is written."""
    from eee_ray.io import atomic_write_text, read_parquet

    files = _valid(folder, key)
    if files is not None:
        log.info("training samples read from the pairs cache in %s (%d parts)", folder, len(files))
        return read_parquet(files), "reused"
    parts = storage.join(folder, f"parts-{key[:16]}")
    try:
        storage.remove(storage.join(folder, MARKER))
        for old in storage.subfolders(folder, "parts-*"):
            storage.remove_tree(old)
        storage.makedirs(parts)
    except OSError as e:
        raise UserError(f"--pairs-cache: cannot write the pairs cache in {folder}: {e.strerror or e}") from None
    log.info("building the pairs cache in %s (%d training samples, once)", folder, n_samples)
    fs, path = storage.filesystem(parts)
    samples.write_parquet(path, filesystem=fs if storage.is_uri(parts) else None)
    files = storage.files(parts, "*.parquet")
    rel = [f"{storage.name(parts)}/{storage.name(f)}" for f in files]
    atomic_write_text(storage.join(folder, MARKER),
                      json.dumps({"key": key, "format": FORMAT, "samples": n_samples, "files": rel}, indent=2))
    return read_parquet(files), "built"
