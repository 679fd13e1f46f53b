"""The prepared-signal store: every usable record read, checked and brought to 10 s at 100 Hz once, by one Ray Data
pass, and kept on disk for every trial (and every later benchmark on the same inputs) to read out of core.

Layout of a store folder::

    shards/<first table row>.npy   int16 (records, leads, samples); mV = value * scale
    index.parquet                  record_id, patient_id, split, labels, shard, offset (usable records only)
    skipped.parquet                record_id, reason
    meta.json                      fingerprint, leads, signal spec, scale, counts (written last: a store without it
                                   is incomplete and is rebuilt)

Each Ray Data task reads one block of records and writes its shard itself (atomic rename, named after the block's
first table row, so a retried task rewrites the same file); only the small index rows come back to the driver. The
signals never pass through the driver or the object store. A store is reused only when its fingerprint (the record
table, the size and modification time of every record file, the leads, the signal spec and the storage format)
equals the one asked for; otherwise it is rebuilt, and the rebuild is logged.

Trials open the store by path and read the rows they need from memory-mapped shards (``np.load(mmap_mode='r')``);
no Ray Data runs inside a trial (a Ray Data job inside a Tune trial deadlocks when trials hold every CPU).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from eee_ray.ecgdata.records import SPLITS, SignalSpec, check_patient_wise, read_wfdb
from eee_ray.errors import UserError
from eee_ray.io import atomic_write, atomic_write_text

log = logging.getLogger(__name__)

FORMAT = "eee-prepared-v1"
STORAGE_DTYPE = np.int16  # 2 bytes a sample; the signal is clipped to +-clip_mv so a fixed scale covers it
INT16_MAX = 32767


def storage_scale(spec: SignalSpec) -> float:
    """mV per integer step: the clip range over the int16 range (10 mV / 32767 = 0.3 uV, below any ECG ADC's LSB)."""
    return float(spec.clip_mv) / INT16_MAX


def _file_stats(paths: pd.Series) -> list[tuple[int, int]]:
    """(size, mtime_ns) of each record's .hea and .dat (0, 0 when absent): a changed file changes the fingerprint."""
    out = []
    for p in paths:
        for ext in (".hea", ".dat"):
            try:
                st = os.stat(f"{p}{ext}")
                out.append((st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((0, 0))
    return out


def fingerprint(table: pd.DataFrame, leads: list[str], spec: SignalSpec, shard_records: int) -> str:
    """sha256 of everything the store's contents depend on: inputs (table + file stats) and preparation settings."""
    h = hashlib.sha256()
    settings = {"format": FORMAT, "leads": list(leads), "spec": asdict(spec), "dtype": np.dtype(STORAGE_DTYPE).str,
                "shard_records": int(shard_records)}
    h.update(json.dumps(settings, sort_keys=True).encode())
    cols = table[["record_id", "patient_id", "path", "split", "reason"]].astype(str).copy()
    cols["labels"] = ["|".join(sorted(map(str, labs))) for labs in table["labels"]]
    h.update(pd.util.hash_pandas_object(cols, index=False).to_numpy().tobytes())
    h.update(np.asarray(_file_stats(table["path"]), np.int64).tobytes())
    return h.hexdigest()


def _prepare_block(batch: dict, leads: list[str], spec: SignalSpec, staging: str) -> dict:
    """Ray Data task: read and prepare one block of records, write its shard, return only index rows."""
    rows = np.asarray(batch["row"], np.int64)
    n = len(rows)
    signals = np.zeros((n, len(leads), spec.n_samples), STORAGE_DTYPE)
    reasons, offsets = [], np.full(n, -1, np.int64)
    scale = storage_scale(spec)
    k = 0
    for i, path in enumerate(batch["path"]):
        x, reason = read_wfdb(str(path), leads, spec)
        if x is not None:
            signals[k] = np.clip(np.rint(x / scale), -INT16_MAX, INT16_MAX).astype(STORAGE_DTYPE)
            offsets[i] = k
            k += 1
        reasons.append(reason)
    shard = int(rows.min()) if n else -1
    if k:
        def write(p: Path) -> None:
            with open(p, "wb") as f:  # a file object: np.save would append .npy to the temporary name
                np.save(f, signals[:k])

        atomic_write(Path(staging) / "shards" / f"{shard:09d}.npy", write)
    return {"row": rows, "shard": np.where(offsets >= 0, shard, -1), "offset": offsets,
            "reason": np.asarray(reasons, dtype=object)}


@dataclass(frozen=True)
class StoreInfo:
    """What the driver keeps of a prepared store: its folder and small summaries, never signals."""

    root: str
    fingerprint: str
    reused: bool
    records: int
    skipped: int


def _blocks(n: int, shard_records: int) -> int:
    return max(1, math.ceil(n / max(1, shard_records)))


def prepare_store(table: pd.DataFrame, leads: list[str], spec: SignalSpec, root: str | Path,
                  shard_records: int = 1024) -> StoreInfo:
    """Build (or reuse) the prepared-signal store of ``table`` in ``root``; returns what the driver needs."""
    import ray

    from eee_ray.runtime import init_ray

    root = Path(root).resolve()  # trials open it from their own working directories
    table = table.reset_index(drop=True)
    fp = fingerprint(table, leads, spec, shard_records)
    meta_path = root / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") == fp:
            log.info("prepared store %s reused (fingerprint %s)", root, fp[:12])
            return StoreInfo(str(root), fp, True, int(meta["records"]), int(meta["skipped"]))
        log.warning("prepared store %s was built from other inputs or settings (fingerprint %s, asked %s): "
                    "rebuilding it", root, str(meta.get("fingerprint"))[:12], fp[:12])
    elif root.exists():
        log.warning("prepared store %s is incomplete (no meta.json): rebuilding it", root)

    todo = table[table["reason"] == ""]
    pre_skipped = table.loc[table["reason"] != "", ["record_id", "reason"]]
    if todo.empty:
        raise UserError(f"no readable records ({len(pre_skipped)} rejected before reading, e.g. "
                        f"{pre_skipped['reason'].iloc[0] if len(pre_skipped) else 'empty record list'})")
    staging = root.parent / f".{root.name}.staging-{uuid.uuid4().hex[:8]}"
    (staging / "shards").mkdir(parents=True)
    try:
        init_ray()
        items = pd.DataFrame({"row": todo.index.to_numpy(np.int64), "path": todo["path"].astype(str).to_numpy()})
        n_blocks = _blocks(len(items), shard_records)
        bounds = np.linspace(0, len(items), n_blocks + 1).round().astype(int)
        ds = ray.data.from_pandas([items.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a])  # a block a shard
        ds = ds.map_batches(_prepare_block, fn_kwargs={"leads": list(leads), "spec": spec, "staging": str(staging)},
                            batch_size=None, batch_format="numpy")
        parts = [pd.DataFrame({k: batch[k] for k in ("row", "shard", "offset", "reason")})
                 for batch in ds.iter_batches(batch_size=None, batch_format="numpy")]
        read = pd.concat(parts, ignore_index=True).astype({"reason": str})
        if read["row"].duplicated().any() or len(read) != len(todo):
            raise RuntimeError(f"preparation returned {len(read)} rows for {len(todo)} records")
        read = read.set_index("row").loc[todo.index]  # table order, whatever order the tasks finished in
        ok = read["reason"] == ""
        index = todo.loc[ok[ok].index, ["record_id", "patient_id", "split", "labels"]].copy()
        index["shard"] = read.loc[ok, "shard"].astype(np.int64).to_numpy()
        index["offset"] = read.loc[ok, "offset"].astype(np.int64).to_numpy()
        index["record_id"] = index["record_id"].astype(str)
        index["patient_id"] = index["patient_id"].astype(str)
        index["split"] = index["split"].astype(str)
        index["labels"] = [list(map(str, labs)) for labs in index["labels"]]
        check_patient_wise(index)
        skipped = pd.concat([pre_skipped, pd.DataFrame({"record_id": todo.loc[~ok, "record_id"].to_numpy(),
                                                        "reason": read.loc[~ok, "reason"].to_numpy()})],
                            ignore_index=True).astype(str)
        index.reset_index(drop=True).to_parquet(staging / "index.parquet", index=False)
        skipped.to_parquet(staging / "skipped.parquet", index=False)
        meta = {"format": FORMAT, "fingerprint": fp, "leads": list(leads), "spec": asdict(spec),
                "preprocessing": spec.preprocessing(), "dtype": np.dtype(STORAGE_DTYPE).str,
                "scale": storage_scale(spec), "n_samples": spec.n_samples, "records": int(len(index)),
                "skipped": int(len(skipped)), "shards": sorted(int(s) for s in index["shard"].unique())}
        atomic_write_text(staging / "meta.json", json.dumps(meta, indent=2))
        if root.exists():
            shutil.rmtree(root)
        os.replace(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("prepared store %s built: %d records, %d skipped", root, meta["records"], meta["skipped"])
    return StoreInfo(str(root), fp, False, meta["records"], meta["skipped"])


class SignalView:
    """Rows of a store as a read-only array-like ``(records, leads, samples)`` float32 in mV, read on demand from the
    memory-mapped shards: ``view[i:j]`` and ``view[index_array]`` return numpy arrays of just those rows."""

    def __init__(self, root: Path, shards: np.ndarray, offsets: np.ndarray, lead_idx: list[int], scale: float,
                 n_samples: int):
        self.root, self.shards, self.offsets = root, shards, offsets
        self.lead_idx, self.scale, self.n_samples = list(lead_idx), float(scale), int(n_samples)
        self._maps: dict[int, np.ndarray] = {}

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.shards), len(self.lead_idx), self.n_samples)

    def __len__(self) -> int:
        return len(self.shards)

    def _map(self, shard: int) -> np.ndarray:
        if shard not in self._maps:
            self._maps[shard] = np.load(self.root / "shards" / f"{shard:09d}.npy", mmap_mode="r")
        return self._maps[shard]

    def __getitem__(self, key) -> np.ndarray:
        key = np.flatnonzero(key) if isinstance(key, np.ndarray) and key.dtype == bool else key
        rows = np.arange(len(self))[key] if isinstance(key, slice) else np.asarray(key, np.int64).reshape(-1)
        out = np.empty((len(rows), len(self.lead_idx), self.n_samples), np.float32)
        shards, offsets = self.shards[rows], self.offsets[rows]
        for s in np.unique(shards):
            pos = np.flatnonzero(shards == s)
            order = np.argsort(offsets[pos])  # ascending offsets: sequential reads within a shard
            block = self._map(int(s))[offsets[pos][order]]
            out[pos[order]] = block[:, self.lead_idx].astype(np.float32) * self.scale
        return out

    def __getstate__(self):  # memory maps are reopened where the view is used, never pickled
        return {**self.__dict__, "_maps": {}}


class PreparedData:
    """A prepared store opened for reading: index, labels and splits in memory (small), signals on disk."""

    def __init__(self, root: str | Path, label_names: list[str] | None = None, min_positives: int = 1):
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            raise UserError(f"no prepared store at {self.root} (meta.json missing)")
        self.meta = json.loads(meta_path.read_text())
        self.index = pd.read_parquet(self.root / "index.parquet")
        self.leads: list[str] = list(self.meta["leads"])
        self.preprocessing: dict = dict(self.meta["preprocessing"])
        self.notes: list[str] = []
        if label_names is None:
            counts: dict[str, int] = {}
            for labs in self.index["labels"]:
                for lab in labs:
                    counts[lab] = counts.get(lab, 0) + 1
            label_names = sorted(n for n, c in counts.items() if c >= min_positives)
            self.notes = [f"label {n} dropped: {c} positive(s) < min_positives={min_positives}"
                          for n, c in sorted(counts.items()) if c < min_positives]
            if not label_names:
                raise UserError("no label has a positive among the usable records; check the labels CSV and the "
                                "mapping")
        self.label_names = list(label_names)
        col = {n: j for j, n in enumerate(self.label_names)}
        self.labels = np.zeros((len(self.index), len(self.label_names)), np.uint8)
        for i, labs in enumerate(self.index["labels"]):
            for lab in labs:
                if lab in col:
                    self.labels[i, col[lab]] = 1
        self.record_ids = self.index["record_id"].to_numpy().astype(str)
        self.patient_ids = self.index["patient_id"].to_numpy().astype(str)
        self.split = self.index["split"].to_numpy().astype(str)

    @property
    def skipped(self) -> pd.DataFrame:
        return pd.read_parquet(self.root / "skipped.parquet")

    def lead_index(self, names: list[str]) -> list[int]:
        upper = [n.upper() for n in self.leads]
        return [upper.index(n.upper()) for n in names]

    def part(self, split: str, leads: list[str]) -> tuple[SignalView, np.ndarray, np.ndarray]:
        """(signals of the chosen leads as an on-disk view, labels, record ids) of one split."""
        m = self.split == split
        view = SignalView(self.root, self.index["shard"].to_numpy()[m], self.index["offset"].to_numpy()[m],
                          self.lead_index(leads), self.meta["scale"], self.meta["n_samples"])
        return view, self.labels[m], self.record_ids[m]

    def summary(self) -> dict:
        counts = {s: int((self.split == s).sum()) for s in SPLITS}
        return {"records": int(len(self.record_ids)), **{f"{s}_records": c for s, c in counts.items()},
                "skipped": int(self.meta["skipped"]), "labels": len(self.label_names),
                "positives": {n: int(v) for n, v in zip(self.label_names, self.labels.sum(0))}}
