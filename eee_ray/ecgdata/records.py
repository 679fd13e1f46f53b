"""The shared downstream data set: every record as 10 s at 100 Hz, a label matrix, patient-wise splits, and a reason
for every record that could not be used (docs/contract.md, Downstream benchmark).

Readers (``mimic.py``, ``ptbxl.py``) produce a record table; ``build_dataset`` reads the WFDB files once with Ray Data
on the driver (never inside a Tune trial: docs/contract.md, Ray and MLflow facts) and materialises the result to numpy,
which the trials share.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from eee_ray.errors import UserError

log = logging.getLogger(__name__)

CANONICAL_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
LEAD_CONFIGS = {"II": ("II",), "all": CANONICAL_LEADS}
SPLITS = ("train", "val", "test")
TABLE_COLUMNS = ["record_id", "patient_id", "path", "split", "labels", "reason"]


@dataclass(frozen=True)
class SignalSpec:
    """How every record is brought to the common form, with the thresholds that reject a record."""

    sample_rate: int = 100
    duration_s: float = 10.0
    min_source_rate: float = 100.0  # below this a record cannot be brought to 100 Hz honestly
    max_nan_fraction: float = 0.05  # per lead; fewer NaNs are interpolated, more reject the record
    flat_ptp_mv: float = 0.01  # a lead whose peak-to-peak is below this (after resampling) is a flat line
    clip_mv: float = 10.0  # amplitudes beyond +-clip_mv are artefacts and are clipped

    @property
    def n_samples(self) -> int:
        return int(round(self.sample_rate * self.duration_s))

    def preprocessing(self) -> dict:
        """What a checkpoint must carry so inference prepares ECGs exactly like training did."""
        return {"sample_rate": self.sample_rate, "duration_s": self.duration_s, "units": "mV",
                "resample": "scipy.signal.resample_poly", "baseline": "per-lead median subtracted",
                "clip_mv": self.clip_mv, "max_nan_fraction": self.max_nan_fraction, "nan_fill": "linear"}


def lead_names(config: str) -> list[str]:
    if config not in LEAD_CONFIGS:
        raise UserError(f"lead config must be one of {', '.join(LEAD_CONFIGS)}, not {config!r}")
    return list(LEAD_CONFIGS[config])


def record_table(rows: list[dict]) -> pd.DataFrame:
    """The readers' common output: one row per record, ``reason`` non-empty when the record is already rejected."""
    df = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    df["reason"] = df["reason"].fillna("").astype(str)
    return df


def safe_path(root: Path, rel: str) -> Path | None:
    """``root / rel`` resolved, or None when it would leave ``root`` (``..``, absolute paths, symlinks out)."""
    root = root.resolve()
    try:
        p = (root / str(rel)).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    return p if p.is_relative_to(root) else None


def prepare_signal(sig: np.ndarray, fs: float, names: list[str], leads: list[str],
                   spec: SignalSpec) -> tuple[np.ndarray | None, str]:
    """(samples, channels) physical signal -> (len(leads), n_samples) float32 in mV at ``spec.sample_rate``,
    leads picked by name (case-insensitive: MIMIC 'aVR', PTB-XL 'AVR'); or (None, reason)."""
    from scipy.signal import resample_poly

    index = {str(n).strip().upper(): i for i, n in enumerate(names)}
    missing = [lead for lead in leads if lead.upper() not in index]
    if missing:
        return None, f"missing lead(s) {','.join(missing)}"
    if not fs or fs < spec.min_source_rate:
        return None, f"sampling rate {fs:g} Hz below {spec.min_source_rate:g} Hz"
    if sig.ndim != 2 or sig.shape[0] / fs < spec.duration_s - 1e-6:
        return None, f"record is {sig.shape[0] / fs:.2f} s, need {spec.duration_s:g} s"
    x = np.asarray(sig[: int(round(spec.duration_s * fs)), [index[lead.upper()] for lead in leads]], np.float64).T
    for lead, row in zip(leads, x):
        bad = ~np.isfinite(row)
        if bad.mean() > spec.max_nan_fraction:
            return None, f"lead {lead} has {bad.mean():.0%} NaN/inf samples"
        if bad.any():
            good = np.flatnonzero(~bad)
            row[bad] = np.interp(np.flatnonzero(bad), good, row[good])
    if fs != spec.sample_rate:
        ratio = Fraction(spec.sample_rate / fs).limit_denominator(1000)
        x = resample_poly(x, ratio.numerator, ratio.denominator, axis=1)
    if x.shape[1] < spec.n_samples:
        x = np.pad(x, ((0, 0), (0, spec.n_samples - x.shape[1])), mode="edge")
    x = x[:, : spec.n_samples]
    ptp = np.ptp(x, axis=1)
    flat = [lead for lead, p in zip(leads, ptp) if p < spec.flat_ptp_mv]
    if flat:
        return None, f"flat line in lead(s) {','.join(flat)}"
    x = np.clip(x - np.median(x, axis=1, keepdims=True), -spec.clip_mv, spec.clip_mv)
    return x.astype(np.float32), ""


def read_wfdb(path: str, leads: list[str], spec: SignalSpec) -> tuple[np.ndarray | None, str]:
    """One WFDB record -> prepared signal or a reason; never raises for a bad file. The header is checked against
    its signal files first (``wfdb_header``), so no array is ever sized from a count the files contradict."""
    import wfdb

    from eee_ray.ecgdata.wfdb_header import header_problem

    problem = header_problem(path)
    if problem:
        return None, problem
    try:
        rec = wfdb.rdrecord(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a per-record reason, not a crash
        return None, f"unreadable WFDB record: {type(e).__name__}: {str(e)[:120]}"
    if rec.p_signal is None:
        return None, "WFDB record has no physical signal"
    return prepare_signal(rec.p_signal, float(rec.fs or 0), list(rec.sig_name or []), leads, spec)


def _read_batch(batch: dict, leads: list[str], spec: SignalSpec) -> dict:
    """Ray Data map_batches function: read and prepare every record of a batch, errors as reasons."""
    n = len(batch["record_id"])
    signals = np.zeros((n, len(leads), spec.n_samples), np.float32)
    reasons = []
    for i, path in enumerate(batch["path"]):
        x, reason = read_wfdb(str(path), leads, spec)
        if x is not None:
            signals[i] = x
        reasons.append(reason)
    return {"record_id": batch["record_id"], "signal": signals, "reason": np.array(reasons, dtype=object)}


@dataclass
class ECGDataset:
    """All usable records, 10 s at 100 Hz, with labels and patient-wise splits; shared read-only by all trials."""

    record_ids: np.ndarray  # (N,) str
    patient_ids: np.ndarray  # (N,) str
    signals: np.ndarray  # (N, n_leads, n_samples) float32, mV
    leads: list[str]
    labels: np.ndarray  # (N, L) uint8
    label_names: list[str]
    split: np.ndarray  # (N,) 'train' | 'val' | 'test'
    skipped: pd.DataFrame  # record_id, reason
    preprocessing: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def lead_index(self, names: list[str]) -> list[int]:
        upper = [n.upper() for n in self.leads]
        return [upper.index(n.upper()) for n in names]

    def part(self, split: str, leads: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(signals of the chosen leads, labels, record ids) of one split."""
        m = self.split == split
        return self.signals[m][:, self.lead_index(leads)], self.labels[m], self.record_ids[m]

    def summary(self) -> dict:
        counts = {s: int((self.split == s).sum()) for s in SPLITS}
        return {"records": int(len(self.record_ids)), **{f"{s}_records": c for s, c in counts.items()},
                "skipped": int(len(self.skipped)), "labels": len(self.label_names),
                "positives": {n: int(v) for n, v in zip(self.label_names, self.labels.sum(0))}}


def check_patient_wise(table: pd.DataFrame) -> None:
    """No patient may sit in two splits (a leak would inflate every number)."""
    per_patient = table.groupby("patient_id")["split"].nunique()
    leaked = per_patient[per_patient > 1]
    if len(leaked):
        raise UserError(f"{len(leaked)} patient(s) appear in more than one split (e.g. {leaked.index[0]}); "
                        "folds must be patient-wise")


def build_dataset(table: pd.DataFrame, leads: list[str], spec: SignalSpec, min_positives: int = 1,
                  batch_size: int = 32) -> ECGDataset:
    """Read every record of ``table`` with Ray Data, keep the good ones, build the label matrix.

    Labels with fewer than ``min_positives`` positives among the usable records are dropped (noted).
    """
    import ray

    from eee_ray.runtime import init_ray

    todo = table[table["reason"] == ""]
    pre_skipped = table.loc[table["reason"] != "", ["record_id", "reason"]]
    if todo.empty:
        raise UserError(f"no readable records ({len(pre_skipped)} rejected before reading, e.g. "
                        f"{pre_skipped['reason'].iloc[0] if len(pre_skipped) else 'empty record list'})")
    init_ray()
    items = [{"record_id": str(r), "path": str(p)} for r, p in zip(todo["record_id"], todo["path"])]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(64, len(items) // batch_size)))
    ds = ds.map_batches(_read_batch, fn_kwargs={"leads": list(leads), "spec": spec}, batch_size=batch_size,
                        batch_format="numpy")
    ids, sigs, reasons = [], [], []
    for batch in ds.iter_batches(batch_size=256, batch_format="numpy"):
        ids.extend(str(i) for i in batch["record_id"])
        sigs.append(batch["signal"])
        reasons.extend(str(r) for r in batch["reason"])
    read = pd.DataFrame({"record_id": ids, "reason": reasons})
    read["row"] = np.arange(len(read))
    signals_all = np.concatenate(sigs) if sigs else np.zeros((0, len(leads), spec.n_samples), np.float32)
    ok = read[read["reason"] == ""].merge(todo, on="record_id", how="inner", suffixes=("", "_t"))
    skipped = pd.concat([pre_skipped, read.loc[read["reason"] != "", ["record_id", "reason"]]], ignore_index=True)

    counts: dict[str, int] = {}
    for labs in ok["labels"]:
        for lab in labs:
            counts[lab] = counts.get(lab, 0) + 1
    names = sorted(n for n, c in counts.items() if c >= min_positives)
    notes = [f"label {n} dropped: {c} positive(s) < min_positives={min_positives}"
             for n, c in sorted(counts.items()) if c < min_positives]
    if not names:
        raise UserError("no label has a positive among the usable records; check the labels CSV and the mapping")
    y = np.zeros((len(ok), len(names)), np.uint8)
    col = {n: j for j, n in enumerate(names)}
    for i, labs in enumerate(ok["labels"]):
        for lab in labs:
            if lab in col:
                y[i, col[lab]] = 1
    check_patient_wise(ok)
    log.info("dataset: %d usable records, %d skipped, %d labels", len(ok), len(skipped), len(names))
    return ECGDataset(record_ids=ok["record_id"].astype(str).to_numpy(),
                      patient_ids=ok["patient_id"].astype(str).to_numpy(),
                      signals=signals_all[ok["row"].to_numpy()], leads=list(leads), labels=y, label_names=names,
                      split=ok["split"].astype(str).to_numpy(), skipped=skipped.reset_index(drop=True),
                      preprocessing=spec.preprocessing(), notes=notes)
