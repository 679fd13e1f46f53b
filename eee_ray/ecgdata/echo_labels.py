"""Structural labels from echo measurements (EchoNext's definitions) for MIMIC-IV-ECG records.

MIMIC-IV-ECHO's ``structured_measurement`` table holds one row per measurement of an echo examination (long
format). Its TTE rows become one set of findings per examination (``echo_measurements.yaml``: names, severity
vocabulary, thresholds), and every ECG takes the findings of the nearest TTE of the same patient within
``window_days``; an ECG without one is left out with a reason (counted in ``skipped.csv``). Splits follow the
Ext-ICD folds when that file is beside the records, as with the ICD labels.
"""

from __future__ import annotations

import logging
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from eee_ray.ecgdata.mimic import FoldScheme, _fallback_splits, _read_csv, find_root
from eee_ray.ecgdata.records import record_table, safe_path
from eee_ray.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_MAPPING = Path(__file__).with_name("echo_measurements.yaml")
TABLE_NAMES = ("structured_measurement.csv", "structured_measurement.csv.gz")
OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
COLUMN_KEYS = ("subject_id", "study", "time", "test_type", "name", "value")


def _norm(text: Any) -> str:
    return re.sub(r"\s+", " ", str(text).strip().lower())


def _severity_word(text: Any) -> str:
    return re.sub(r"[\s_]+", "-", re.sub(r"\bto\b", " ", _norm(text))).strip("-").replace("--", "-")


@dataclass(frozen=True)
class Finding:
    name: str
    kind: str  # numeric | severity
    measurements: tuple[str, ...]  # normalised names
    op: str = ">="
    threshold: float = 0.0  # numeric: the value compared; severity: the grade of ``at_least``


@dataclass(frozen=True)
class MeasurementMapping:
    """The parsed YAML: column names, kept test types, severity grades, findings and the composite's name."""

    columns: dict[str, str]
    tte_types: frozenset[str]
    severity: dict[str, float]
    findings: tuple[Finding, ...]
    composite: str
    source: str

    @property
    def label_names(self) -> list[str]:
        return [f.name for f in self.findings] + ([self.composite] if self.composite else [])


def load_measurement_mapping(path: str | Path = "") -> MeasurementMapping:
    """The package's ``echo_measurements.yaml``, or the user's file of the same shape; a malformed one is a
    one-line error naming what is wrong."""
    p = Path(path) if path else DEFAULT_MAPPING
    if not p.is_file():
        raise UserError(f"measurement mapping not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
        cols = {k: str(raw["columns"][k]) for k in COLUMN_KEYS}
        severity = {_severity_word(k): float(v) for k, v in raw["severity"].items()}
        findings = []
        for name, f in raw["findings"].items():
            kind = f["kind"]
            names = tuple(_norm(m) for m in f["measurements"])
            if kind == "numeric":
                if f["op"] not in OPS:
                    raise ValueError(f"finding {name}: op must be one of {', '.join(OPS)}")
                findings.append(Finding(str(name), kind, names, f["op"], float(f["threshold"])))
            elif kind == "severity":
                word = _severity_word(f["at_least"])
                if word not in severity:
                    raise ValueError(f"finding {name}: at_least {f['at_least']!r} is not in the severity vocabulary")
                findings.append(Finding(str(name), kind, names, ">=", severity[word]))
            else:
                raise ValueError(f"finding {name}: kind must be numeric or severity, not {kind!r}")
        tte = frozenset(_norm(t) for t in raw.get("tte_test_types", ["TTE"]))
        composite = str(raw.get("composite") or "")
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise UserError(f"measurement mapping {p} is malformed: {type(e).__name__}: {e}") from None
    if not findings:
        raise UserError(f"measurement mapping {p} defines no findings")
    return MeasurementMapping(cols, tte, severity, tuple(findings), composite, str(p))


def find_measurement_table(data: Path, given: str = "") -> Path:
    """``given``, else ``structured_measurement.csv(.gz)`` in the data folder, its parent, or its ``echo/`` (the
    ``eee-ray synth`` layout)."""
    if given:
        if not Path(given).is_file():
            raise UserError(f"echo measurement table not found: {given}")
        return Path(given)
    for d in (data, data / "echo", data.parent, data.parent / "echo"):
        for name in TABLE_NAMES:
            if (d / name).is_file():
                return d / name
    raise UserError(f"no {TABLE_NAMES[0]} in {data}, {data / 'echo'} or {data.parent}; pass --echo-measurements PATH "
                    "(MIMIC-IV-ECHO's structured_measurement table)")


def study_findings(table: pd.DataFrame, mapping: MeasurementMapping) -> tuple[pd.DataFrame, list[str]]:
    """Long measurement table -> one row per TTE examination: subject_id, time, and 0/1 per label; plus notes."""
    c = mapping.columns
    df = pd.DataFrame({k: table[c[k]] for k in COLUMN_KEYS})
    n_all = len(df)
    df = df[df["test_type"].map(_norm).isin(mapping.tte_types)]
    notes = [f"echo measurements: {len(df)} of {n_all} rows are TTE ({', '.join(sorted(mapping.tte_types))})"]
    df = df.assign(key=df["name"].map(_norm), time=pd.to_datetime(df["time"], errors="coerce"))
    numeric = pd.to_numeric(df["value"], errors="coerce")
    grade = df["value"].map(lambda v: mapping.severity.get(_severity_word(v), np.nan))
    studies = df.groupby("study", sort=True).agg(subject_id=("subject_id", "first"), time=("time", "min"))
    unread: dict[str, int] = {}
    for f in mapping.findings:
        rows = df["key"].isin(f.measurements)
        value = numeric if f.kind == "numeric" else grade
        bad = rows & value.isna()
        for v in df.loc[bad, "value"].astype(str):
            unread[f"{f.name}: {v[:30]!r}"] = unread.get(f"{f.name}: {v[:30]!r}", 0) + 1
        hit = rows & value.notna() & OPS[f.op](value.fillna(-np.inf if f.op.startswith(">") else np.inf),
                                               f.threshold)
        studies[f.name] = df.loc[hit, "study"].groupby(df.loc[hit, "study"]).size().reindex(studies.index) \
            .fillna(0).gt(0).astype(np.uint8)
    if mapping.composite:
        studies[mapping.composite] = studies[[f.name for f in mapping.findings]].max(axis=1).astype(np.uint8)
    if unread:
        top = ", ".join(f"{k} ({n})" for k, n in sorted(unread.items(), key=lambda kv: -kv[1])[:5])
        notes.append(f"{sum(unread.values())} measurement value(s) could not be read and were ignored: {top}")
    missing_time = int(studies["time"].isna().sum())
    if missing_time:
        notes.append(f"{missing_time} TTE(s) without a readable time were left out")
    return studies.dropna(subset=["time"]).reset_index(), notes


def nearest_study(ecg: pd.DataFrame, studies: pd.DataFrame, window_days: float) -> pd.Series:
    """For every ECG (subject_id, ecg_time), the index into ``studies`` of the nearest TTE of the same patient
    within ``window_days`` either side; -1 where there is none."""
    out = np.full(len(ecg), -1)
    window = pd.Timedelta(days=window_days)
    by_subject = {s: g for s, g in studies.groupby(studies["subject_id"].astype(str))}
    for i, (sub, t) in enumerate(zip(ecg["subject_id"].astype(str), ecg["ecg_time"])):
        g = by_subject.get(sub)
        if g is None or pd.isna(t):
            continue
        gap = (g["time"] - t).abs()
        j = gap.idxmin()
        if gap[j] <= window:
            out[i] = j
    return pd.Series(out, index=ecg.index)


def read_mimic_echo(data: str | Path, mapping: MeasurementMapping, window_days: float, table_path: str = "",
                    max_records: int = 0, folds: FoldScheme = FoldScheme()) -> tuple[pd.DataFrame, list[str]]:
    """Record table (``records.record_table``) of MIMIC-IV-ECG records labelled from the echo measurements."""
    root = find_root(Path(data))
    rl = _read_csv(root / "record_list.csv", "record list", ("subject_id", "study_id", "path", "ecg_time"))
    if max_records:
        rl = rl.iloc[:max_records]
    path = find_measurement_table(Path(data), table_path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read echo measurement table {path}: {e}") from None
    missing = [c for c in mapping.columns.values() if c not in raw.columns]
    if missing:
        raise UserError(f"echo measurement table {path} lacks column(s) {', '.join(missing)} (has "
                        f"{', '.join(raw.columns)}); set the names under `columns:` of the measurement mapping")
    studies, notes = study_findings(raw, mapping)
    ext = root / "records_w_diag_icd10.csv"
    fold_of: dict[str, int] = {}  # per patient, so that a patient never spans two splits
    if ext.is_file():
        lab = _read_csv(ext, "labels CSV", ("study_id",))
        col = next((c for c in ("strat_fold", "fold") if c in lab.columns), None)
        if col:
            sub_of = dict(zip(rl["study_id"].astype(str), rl["subject_id"].astype(str)))
            for s, f in zip(lab["study_id"].astype(str), lab[col]):
                if f != "" and s in sub_of:
                    fold_of[sub_of[s]] = min(fold_of.get(sub_of[s], 99), int(float(f)))
    ecg = rl.assign(ecg_time=pd.to_datetime(rl["ecg_time"], errors="coerce"))
    match = nearest_study(ecg, studies, window_days)
    names = mapping.label_names
    rows = []
    for (sub, study, rel, j) in zip(rl["subject_id"], rl["study_id"], rl["path"], match):
        row = {"record_id": str(study), "patient_id": str(sub), "path": "", "split": "", "labels": [], "reason": "",
               "fold": fold_of.get(str(sub), int(sub) % 20)}
        p = safe_path(root, rel)
        if p is None:
            row["reason"] = f"path {rel!r} escapes the data root"
        elif j < 0:
            row["reason"] = f"no TTE of this patient within {window_days:g} days"
        else:
            s = studies.loc[j]
            row.update(path=str(p), labels=[n for n in names if s[n]])
        rows.append(row)
    table = record_table(rows)
    table["fold"] = [r["fold"] for r in rows]
    ok = table["reason"] == ""
    n_far = int(table["reason"].str.startswith("no TTE").sum())
    notes += [f"labels from {len(studies)} TTE(s) of {path.name}, mapping {mapping.source}",
              f"{n_far} of {len(table)} ECG record(s) have no TTE of the same patient within {window_days:g} days "
              "and are left out"]
    table.loc[ok, "split"] = table.loc[ok, "fold"].map(folds.split)
    if ok.any() and not {"val", "test"} <= set(table.loc[ok, "split"]):
        patients = table.loc[ok, ["patient_id", "fold"]].rename(columns={"patient_id": "subject_id"})
        assign = _fallback_splits(patients.groupby("subject_id", as_index=False)["fold"].min())
        table.loc[ok, "split"] = table.loc[ok, "patient_id"].map(assign)
        notes.append(f"folds {folds.val_folds}/{folds.test_folds} are empty here; patient-wise 60/20/20 split used")
    log.info("echo-measurement labels: %d records, %d without a TTE in the window", len(table), n_far)
    return table.drop(columns=["fold"]), notes
