"""MIMIC-IV-ECG v1.0 (and the MIMIC-like synthetic ECG tree) -> record table (docs/contract.md, MIMIC-IV-ECG).

``record_list.csv`` gives ``subject_id, study_id, path`` (read by name); labels come from MIMIC-IV-ECG-Ext-ICD
``records_w_diag_icd10.csv`` (``study_id``, ``all_diag_all``, ``fold``) or a generic CSV (``study_id`` plus a column
of code lists). Splits follow the Ext-ICD folds: train 0-17, val 18, test 19.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from eee_ray.ecgdata.labels import CCSRMapping, parse_code_list, record_labels
from eee_ray.ecgdata.records import record_table, safe_path
from eee_ray.errors import UserError

log = logging.getLogger(__name__)

CODE_COLUMNS = ("all_diag_all", "codes", "icd10", "icd_codes", "diagnoses")


@dataclass(frozen=True)
class FoldScheme:
    """Ext-ICD folds -> splits (docs/contract.md, MIMIC-IV-ECG)."""

    val_folds: tuple[int, ...] = (18,)
    test_folds: tuple[int, ...] = (19,)

    def split(self, fold: int) -> str:
        return "test" if fold in self.test_folds else "val" if fold in self.val_folds else "train"


def _read_csv(path: Path, what: str, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {what} {path}: {e}") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UserError(f"{what} {path} lacks column(s) {', '.join(missing)} (has {', '.join(df.columns)})")
    return df


def find_root(data: Path) -> Path:
    """The folder holding ``record_list.csv``: ``data`` itself or its ``ecg/`` (the ``eee-ray synth`` layout)."""
    for cand in (data, data / "ecg"):
        if (cand / "record_list.csv").is_file():
            return cand
    raise UserError(f"no record_list.csv in {data} or {data / 'ecg'}: is this a MIMIC-IV-ECG folder?")


def _fallback_splits(patients: pd.DataFrame) -> dict[str, str]:
    """Patient-wise 60/20/20 in fold order, for data sets too small to fill the Ext-ICD val/test folds."""
    order = patients.sort_values(["fold", "subject_id"])["subject_id"].tolist()
    n = len(order)
    n_test, n_val = max(1, round(0.2 * n)), max(1, round(0.2 * n))
    return {p: ("test" if i >= n - n_test else "val" if i >= n - n_test - n_val else "train")
            for i, p in enumerate(order)}


def read_mimic(data: str | Path, mapping: CCSRMapping, level: str, labels_csv: str | Path | None = None,
               max_records: int = 0, folds: FoldScheme = FoldScheme()) -> tuple[pd.DataFrame, list[str]]:
    """Record table (see ``records.record_table``) and notes for the summary."""
    root = find_root(Path(data))
    rl = _read_csv(root / "record_list.csv", "record list", ("subject_id", "study_id", "path"))
    lab_path = Path(labels_csv) if labels_csv else root / "records_w_diag_icd10.csv"
    lab = _read_csv(lab_path, "labels CSV", ("study_id",))
    code_col = next((c for c in CODE_COLUMNS if c in lab.columns), None)
    if code_col is None:
        raise UserError(f"labels CSV {lab_path} needs a code-list column ({', '.join(CODE_COLUMNS)})")
    fold_col = next((c for c in ("strat_fold", "fold") if c in lab.columns), None)
    lab["study_id"] = lab["study_id"].str.strip()
    lab = lab.drop_duplicates()  # a row repeated verbatim says nothing new
    conflicting = set(lab.loc[lab["study_id"].duplicated(), "study_id"])
    lab = lab.drop_duplicates("study_id").set_index("study_id")
    notes: list[str] = [f"labels from {lab_path.name} column {code_col}, mapping {mapping.source}, level {level}"]
    if max_records:
        rl = rl.iloc[:max_records]

    rows, unknown, seen = [], {}, set()
    for sub, study, rel in zip(rl["subject_id"].str.strip(), rl["study_id"].str.strip(), rl["path"].str.strip()):
        row = {"record_id": study, "patient_id": sub, "path": "", "split": "", "labels": [], "reason": ""}
        path = safe_path(root, rel) if rel else None
        if not study or not sub:
            row["reason"] = "empty study_id or subject_id in record_list.csv"
        elif study in seen:
            row["reason"] = f"study_id {study} listed again in record_list.csv (the first row is used)"
        elif path is None:
            row["reason"] = "empty path" if not rel else f"path {rel[:80]!r} escapes the data root"
        elif study not in lab.index:
            row["reason"] = "no label row for this study_id"
        elif study in conflicting:
            row["reason"] = f"study_id {study} has label rows that disagree in {lab_path.name}"
        else:
            try:
                codes = parse_code_list(lab.at[study, code_col])
                fold = int(float(lab.at[study, fold_col])) if fold_col else int(sub) % 20
            except (ValueError, OverflowError) as e:
                row["reason"] = f"bad label row: {e}"
            else:
                for c in mapping.unknown(codes):
                    unknown[c] = unknown.get(c, 0) + 1
                row.update(path=str(path), labels=sorted(record_labels(mapping, codes, level)), fold=fold)
        seen.add(study)
        rows.append(row)
    if unknown:
        top = ", ".join(f"{c} ({n})" for c, n in sorted(unknown.items(), key=lambda kv: -kv[1])[:5])
        notes.append(f"{sum(unknown.values())} code(s) unknown to the mapping were ignored: {top}")
    table = record_table(rows)
    table["fold"] = [r.get("fold", -1) for r in rows]
    ok = table["reason"] == ""
    table.loc[ok, "split"] = table.loc[ok, "fold"].map(folds.split)
    used = set(table.loc[ok, "split"])
    if ok.any() and not {"val", "test"} <= used:
        patients = table.loc[ok, ["patient_id", "fold"]].rename(columns={"patient_id": "subject_id"})
        patients = patients.groupby("subject_id", as_index=False)["fold"].min()
        assign = _fallback_splits(patients)
        table.loc[ok, "split"] = table.loc[ok, "patient_id"].map(assign)
        notes.append(f"folds {folds.val_folds}/{folds.test_folds} are empty here; patient-wise 60/20/20 split used")
    log.info("MIMIC record list: %d records, %d rejected before reading", len(table), int((~ok).sum()))
    return table.drop(columns=["fold"]), notes

