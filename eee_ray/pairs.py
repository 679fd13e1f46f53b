"""ECG-echo training pairs (paper section 3.2, docs/contract.md, Pairs): ``clips/`` -> tokens, sub-clips, masks, IDs,
shifts.

One sample is one clip. Its ECG (100 Hz, strip pixels) is z-scored per clip and cut into whole tokens of 0.5 s (50
samples); token t covers [t/2, (t+1)/2) s, and its echo sub-clip is the F = 8 frames nearest to F evenly spaced
instants of that span, resized to H = W (112 by default). Samples keep their own length T; ``collate`` pads a batch
to its longest T and builds the padding mask. ``misalign`` draws M_shift per batch, so every epoch sees fresh shifts.
The split is by patient: no patient is in both the training and the held-out set.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from ray.data.collate_fn import NumpyBatchCollateFn

from eee_ray.errors import UserError

# How ECG values are scaled before tokenisation; stored in every pretrained encoder file.
NORMALIZATION: dict[str, Any] = {
    "method": "per_clip_zscore",
    "center": "median",
    "scale": "std",
    "eps": 1e-6,
    "applies_to": "each clip (pretraining) / each window (downstream), per lead, before cutting 50-sample tokens",
}


@dataclass
class PairsConfig:
    """Token and sub-clip geometry (docs/contract.md, Pairs: defaults)."""

    token_len: int = 50          # D_ecg: samples per ECG token (0.5 s at 100 Hz)
    sample_rate: int = 100       # Hz of the ingested ``ecg`` column
    frames_per_token: int = 8    # F: echo frames per sub-clip
    image_size: int = 112        # H = W of the sub-clips (224 allowed)
    max_tokens: int = 16         # T_max: longer clips keep their first T_max tokens


TRAIN_COLUMNS = ["ecg", "echo", "n_tokens", "subject_id", "study_id"]
ECG_ONLY_COLUMNS = ["path", "subject_id", "study_id", "n_frames", "frame_time_ms", "ecg"]   # of clips/


def normalize_ecg(x: np.ndarray) -> np.ndarray:
    """Per-clip z-score around the median: trace pixels and millivolts end up on the same unit-free scale."""
    x = np.asarray(x, dtype=np.float32)
    return ((x - np.median(x)) / max(float(x.std()), NORMALIZATION["eps"])).astype(np.float32)


def _n_tokens(n_samples: int, n_frames: int, dt: float, cfg: PairsConfig) -> int:
    """Whole tokens covered by both the ECG and the cine."""
    return min(n_samples // cfg.token_len, int(n_frames * dt / (cfg.token_len / cfg.sample_rate) + 1e-6),
               cfg.max_tokens)


def clip_to_sample(row: dict[str, Any], cfg: PairsConfig, echo: bool = True) -> list[dict[str, Any]]:
    """One ``clips/`` row -> ``[sample]``, or ``[]`` when the clip is shorter than one token. With ``echo=False`` the
    sample has no sub-clips and the row needs no pixels (``n_frames`` says how long the cine is)."""
    ecg = np.asarray(row["ecg"], dtype=np.float32)
    dt = float(row["frame_time_ms"]) / 1000.0
    n_frames = np.asarray(row["echo"]).shape[0] if echo else int(row["n_frames"])
    n_tokens = _n_tokens(len(ecg), n_frames, dt, cfg)
    if n_tokens < 1:
        return []
    sample = {"ecg": normalize_ecg(ecg)[: n_tokens * cfg.token_len].reshape(n_tokens, cfg.token_len),
              "n_tokens": n_tokens, "subject_id": int(row["subject_id"]), "study_id": int(row["study_id"]),
              "path": str(row["path"])}
    if echo:
        pixels = np.asarray(row["echo"])
        token_s = cfg.token_len / cfg.sample_rate
        instants = (np.arange(n_tokens)[:, None] + (np.arange(cfg.frames_per_token)[None, :] + 0.5)
                    / cfg.frames_per_token) * token_s
        idx = np.clip(np.floor(instants / dt).astype(int), 0, n_frames - 1)
        size = (cfg.image_size, cfg.image_size)
        frames = {int(i): cv2.resize(pixels[i], size, interpolation=cv2.INTER_AREA) for i in np.unique(idx)}
        sample["echo"] = np.stack([[frames[int(i)] for i in r] for r in idx]).astype(np.uint8)
    return [sample]


def build_pairs(clips, cfg: PairsConfig, echo: bool = True):
    """Ray Data: a dataset of ``clips/`` rows -> a dataset of samples (one per clip long enough for a token).

    ``echo=False``: ECG tokens and IDs only, and the pixels are never read (probes and embeddings of the ECG tower).
    """
    if not echo:
        clips = clips.select_columns(ECG_ONLY_COLUMNS)
    return clips.flat_map(functools.partial(clip_to_sample, cfg=cfg, echo=echo))


def split_patients(subject_ids: list[int], heldout_fraction: float, seed: int) -> set[int]:
    """Held-out patients: a seeded share (at least one, never all) of the distinct ``subject_ids``."""
    ids = sorted(set(int(s) for s in subject_ids))
    if len(ids) < 2:
        raise UserError(f"need clips of at least 2 patients to hold some out, found {len(ids)}")
    n = min(len(ids) - 1, max(1, round(heldout_fraction * len(ids))))
    return set(np.random.default_rng(seed).choice(ids, size=n, replace=False).tolist())


ID_COLUMNS = ["path", "subject_id", "study_id", "n_frames", "frame_time_ms", "ecg"]   # what the split reads


def clip_index(clips_dir: str | Path, cfg: PairsConfig) -> pd.DataFrame:
    """``path``, ``subject_id`` and ``n_tokens`` of every clip, from the ID and length columns of ``clips/`` alone.

    The Parquet files are read one record batch at a time on the driver (pixels are never read; the ECG column only
    for its lengths), so the driver holds about 20 bytes a clip plus one batch."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from eee_ray import storage
    from eee_ray.ingest.pipeline import clip_files

    parts = []
    for f in clip_files(clips_dir):
        fs, path = storage.filesystem(f)   # a local file or an object: only the footer and these columns are read
        for batch in pq.ParquetFile(fs.open_input_file(path)).iter_batches(batch_size=8192, columns=ID_COLUMNS):
            n_samples = pc.list_value_length(batch.column("ecg")).to_numpy(zero_copy_only=False)
            n_frames = batch.column("n_frames").to_numpy(zero_copy_only=False).astype(np.float64)
            dt = batch.column("frame_time_ms").to_numpy(zero_copy_only=False).astype(np.float64) / 1000.0
            n_tokens = np.minimum.reduce([n_samples // cfg.token_len,
                                          (n_frames * dt / (cfg.token_len / cfg.sample_rate) + 1e-6).astype(np.int64),
                                          np.full(len(dt), cfg.max_tokens)])
            parts.append(pd.DataFrame({"path": batch.column("path").to_pylist(),
                                       "subject_id": batch.column("subject_id").to_numpy(zero_copy_only=False),
                                       "n_tokens": n_tokens.astype(np.int64)}))
    return pd.concat(parts, ignore_index=True)


def _keep_rows(batch: dict[str, np.ndarray], column: str, values: np.ndarray, keep: bool) -> dict[str, np.ndarray]:
    """Ray Data: the rows of ``batch`` whose ``column`` is (``keep``) or is not in ``values``."""
    mask = np.isin(np.asarray(batch[column]), values) == keep
    return {k: v[mask] for k, v in batch.items()}


@dataclass
class PretrainData:
    """The pretraining samples: training clips as a lazy dataset that Ray Train streams each epoch (pixels are never
    materialised), the held-out retrieval clips materialised (at most ``max_heldout``)."""

    train: Any
    heldout: Any
    heldout_patients: list[int]
    n_train: int
    n_heldout: int
    n_heldout_all: int
    train_bytes: int = 0  # the training samples' echo pixels (uint8), estimated from the index
    n_excluded_clips: int = 0
    n_excluded_patients: int = 0


def read_patient_ids(path: str) -> frozenset[int]:
    """The patient IDs listed in ``path`` (local or a bucket): a CSV with a ``subject_id`` or ``patient_id`` column
    (e.g. the downstream val and test patients), or plain text with one ID a line."""
    import io

    from eee_ray import storage

    if not storage.exists(path):
        raise UserError(f"patient list not found: {path}")
    try:
        text = storage.read_text(path).lstrip("\ufeff")   # a spreadsheet's byte-order mark
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the patient list {path}: {e}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and not lines[0].replace(",", "").strip().isdigit():   # a header: a CSV
        try:
            table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise UserError(f"cannot read the patient list {path}: {e}") from None
        column = next((c for c in ("subject_id", "patient_id") if c in table.columns), None)
        if column is None:
            raise UserError(f"the patient list {path} needs a subject_id or patient_id column "
                            f"(has {', '.join(table.columns)})")
        lines = [v.strip() for v in table[column] if v.strip()]
    bad = [v for v in lines if not v.isdigit()]
    if bad:
        raise UserError(f"the patient list {path} holds {len(bad)} value(s) that are not patient IDs, e.g. {bad[0]!r}")
    if not lines:   # an empty list would silently exclude nobody
        raise UserError(f"the patient list {path} holds no patient IDs")
    return frozenset(int(v) for v in lines)


def stream_pairs(clips_dir: str | Path, cfg: PairsConfig, heldout_fraction: float, seed: int, max_heldout: int,
                 prepare=None, exclude: frozenset[int] = frozenset()) -> PretrainData:
    """Split by patient from the ID columns alone, then build the training samples lazily.

    The held-out patients are the same as ``load_pairs`` picks (same seed, same patients with a usable clip); a
    held-out set larger than ``max_heldout`` is cut to a seeded sample of clips chosen from the index, so it is
    bounded before any pixel is read. ``prepare`` (dataset -> dataset, e.g. a locked echo tower's embedding) runs on
    both sets, and its output (features, no pixels) is materialised, since recomputing it every epoch costs more
    than keeping it. The clips of the ``exclude`` patients are in neither set: no sample is built from them.
    """
    from eee_ray.ingest import read_clips

    index = clip_index(clips_dir, cfg)
    usable = index[index["n_tokens"] >= 1]
    excluded = usable["subject_id"].isin(list(exclude))
    n_excluded_clips, n_excluded_patients = int(excluded.sum()), int(usable.loc[excluded, "subject_id"].nunique())
    usable = usable[~excluded]
    if exclude and usable["subject_id"].nunique() < 2:
        raise UserError(f"clips of fewer than 2 patients are left in {clips_dir} once the clips of the "
                        f"{n_excluded_patients} excluded patients are left out")
    heldout = split_patients(usable["subject_id"].tolist(), heldout_fraction, seed)
    held_ids = np.asarray(sorted(heldout), np.int64)
    held_paths = np.sort(usable.loc[usable["subject_id"].isin(held_ids), "path"].to_numpy().astype(str))
    n_held_all = len(held_paths)
    if n_held_all > max_heldout:
        held_paths = np.sort(np.random.default_rng(seed).choice(held_paths, size=max_heldout, replace=False))
    n_train = int((~usable["subject_id"].isin(held_ids)).sum())
    train_tokens = int(usable.loc[~usable["subject_id"].isin(held_ids), "n_tokens"].sum())
    train_bytes = train_tokens * cfg.frames_per_token * cfg.image_size ** 2

    def samples(keep_column: str, values: np.ndarray, keep: bool):
        ds = read_clips(clips_dir).map_batches(_keep_rows, fn_kwargs={"column": keep_column, "values": values,
                                                                      "keep": keep}, batch_format="numpy")
        return build_pairs(ds, cfg).select_columns(TRAIN_COLUMNS)

    train = samples("subject_id", np.union1d(held_ids, np.asarray(sorted(exclude), np.int64)), False)
    held = samples("path", held_paths, True)
    if prepare is not None:
        train = prepare(train).materialize()
    held = (prepare(held) if prepare is not None else held).materialize()
    return PretrainData(train, held, sorted(heldout), n_train, len(held_paths), n_held_all, train_bytes,
                        n_excluded_clips, n_excluded_patients)


def load_pairs(clips_dir: str | Path, cfg: PairsConfig, heldout_fraction: float, seed: int, prepare=None):
    """Read ``clips/`` (the ingest output or its clips folder), build samples, split by patient; both materialised
    (every pixel of the data set in the object store: ``stream_pairs`` is what pretraining uses).

    ``prepare`` (dataset -> dataset) runs on all samples before the split, e.g. a locked echo tower's embedding.
    """
    from eee_ray.ingest import read_clips

    pairs = build_pairs(read_clips(clips_dir), cfg).select_columns(TRAIN_COLUMNS)
    pairs = (prepare(pairs) if prepare else pairs).materialize()
    subjects = [r["subject_id"] for r in pairs.select_columns(["subject_id"]).take_all()]
    heldout = split_patients(subjects, heldout_fraction, seed)
    train = pairs.filter(lambda r: r["subject_id"] not in heldout).materialize()
    held = pairs.filter(lambda r: r["subject_id"] in heldout).materialize()
    return train, held, sorted(heldout)


def _pad(arrays: list, length: int, dtype) -> np.ndarray:
    """Stack arrays of shape (n_i, ...) into (B, length, ...), zero-padded after each one's n_i rows."""
    first = np.asarray(arrays[0])
    out = np.zeros((len(arrays), length, *first.shape[1:]), dtype=dtype)
    for i, a in enumerate(arrays):
        a = np.asarray(a)[:length]
        out[i, : len(a)] = a
    return out


def collate(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A numpy batch of samples of varying T -> tensors padded to the batch's longest T, plus ``pad_mask``.

    Samples carry either echo pixels (``echo``) or a locked echo tower's features (``echo_cls``, ``echo_tok`` and,
    for study-level positives, ``echo_mates``: the echo [CLS] of other clips of the same study, with ``n_mates``).
    """
    lengths = np.asarray(batch["n_tokens"], dtype=np.int64)
    t = int(lengths.max())
    out = {"ecg": torch.from_numpy(_pad(list(batch["ecg"]), t, np.float32)),
           "pad_mask": torch.from_numpy(np.arange(t)[None, :] >= lengths[:, None]),
           "subject_id": torch.from_numpy(np.array(batch["subject_id"], dtype=np.int64)),
           "study_id": torch.from_numpy(np.array(batch["study_id"], dtype=np.int64))}
    if "echo" in batch:
        out["echo"] = torch.from_numpy(_pad(list(batch["echo"]), t, np.uint8))
    if "echo_cls" in batch:
        out["echo_cls"] = torch.from_numpy(np.stack(list(batch["echo_cls"])).astype(np.float32))
        out["echo_tok"] = torch.from_numpy(_pad(list(batch["echo_tok"]), t, np.float32))
    if "echo_mates" in batch:
        mates = list(batch["echo_mates"])
        out["n_mates"] = torch.tensor([len(m) for m in mates], dtype=torch.int64)
        out["echo_mates"] = torch.from_numpy(_pad(mates, int(out["n_mates"].max()), np.float32))
    return out


def echo_input(batch: dict[str, torch.Tensor], device) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """What ``EEEModel`` takes as its echo argument from a collated batch: pixels, or a locked tower's features."""
    if "echo_cls" in batch:
        return batch["echo_cls"].to(device), batch["echo_tok"].to(device)
    return batch["echo"].to(device)


class Collate(NumpyBatchCollateFn):
    """``collate`` as the callable class that ``iter_torch_batches(collate_fn=...)`` expects in Ray >= 2.47."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return collate(batch)


def misalign(ecg: torch.Tensor, pad_mask: torch.Tensor, p_shift: float,
             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shift the ECG of a ``p_shift`` share of samples by k = 1..T-1 tokens against the echo (M_shift = 1).

    A shifted sample pairs ECG tokens k..T-1 with echo sub-clips 0..T-1-k and pads the rest, so both streams stay
    continuous signals and the shift can only be told by comparing the two (a cyclic roll would leave a seam in the
    ECG that gives the answer away). Returns ECG tokens, the new padding mask and ``M_shift``. Samples of a single
    token cannot be shifted.
    """
    b, t = pad_mask.shape
    n = (~pad_mask).sum(1)
    m_shift = (torch.rand(b, generator=generator) < p_shift) & (n >= 2)
    k = (torch.rand(b, generator=generator) * (n - 1).clamp(min=1)).long() + 1
    k = torch.where(m_shift, k, torch.zeros_like(k))
    pos = torch.arange(t).unsqueeze(0)
    src = (pos + k.unsqueeze(1)).clamp(max=t - 1)
    new_pad = pos >= (n - k).unsqueeze(1)
    out = torch.gather(ecg, 1, src.unsqueeze(-1).expand_as(ecg)).masked_fill(new_pad.unsqueeze(-1), 0.0)
    return out, new_pad, m_shift.long()
