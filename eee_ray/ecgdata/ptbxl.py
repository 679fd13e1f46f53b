"""PTB-XL -> record table, so the benchmark runs on real ECGs without MIMIC access (docs/contract.md, Downstream
benchmark).

Labels: each requested name is either a diagnostic superclass of ``scp_statements.csv`` (NORM, MI, STTC, CD, HYP)
or an SCP code itself (LVH); a record is positive when its ``scp_codes`` hold a diagnostic statement of that class
(any likelihood, as in the PTB-XL benchmark). Splits: the patient-wise ``strat_fold`` (1-8 train, 9 val, 10 test).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from eee_ray.ecgdata.labels import parse_literal
from eee_ray.ecgdata.records import record_table, safe_path
from eee_ray.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_LABELS = ("NORM", "MI", "STTC", "CD", "HYP", "LVH")


def _split(fold: int) -> str:
    return "test" if fold == 10 else "val" if fold == 9 else "train"


def read_ptbxl(data: str | Path, labels: tuple[str, ...] | list[str] = DEFAULT_LABELS, sample_rate: int = 100,
               max_records: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """Record table and notes. ``sample_rate`` picks ``records100`` (100) or ``records500`` (500)."""
    root = Path(data)
    db_path, st_path = root / "ptbxl_database.csv", root / "scp_statements.csv"
    if not db_path.is_file() or not st_path.is_file():
        raise UserError(f"{root} is not a PTB-XL folder (needs ptbxl_database.csv and scp_statements.csv)")
    db = pd.read_csv(db_path)
    st = pd.read_csv(st_path, index_col=0)
    need = {"ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr", "filename_hr"}
    if need - set(db.columns):
        raise UserError(f"{db_path} lacks column(s) {', '.join(sorted(need - set(db.columns)))}")
    diag = st[st["diagnostic"] == 1]
    classes = set(diag["diagnostic_class"].dropna())
    unknown = [n for n in labels if n not in classes and n not in diag.index]
    if unknown:
        raise UserError(f"PTB-XL labels {', '.join(unknown)} are neither diagnostic classes "
                        f"({', '.join(sorted(classes))}) nor diagnostic SCP codes")
    if max_records:
        db = db.iloc[:max_records]
    col = {100: "filename_lr", 500: "filename_hr"}.get(sample_rate)
    if col is None:
        raise UserError(f"PTB-XL sample rate must be 100 or 500, not {sample_rate}")

    rows = []
    for ecg_id, patient, codes_text, fold, rel in zip(db["ecg_id"], db["patient_id"], db["scp_codes"],
                                                      db["strat_fold"], db[col]):
        row = {"record_id": str(ecg_id), "patient_id": str(patient), "path": "", "split": "", "labels": [],
               "reason": ""}
        path = safe_path(root, rel)
        try:
            codes = parse_literal(str(codes_text))
            if not isinstance(codes, dict):
                raise ValueError("scp_codes is not a dict")
            fold = int(fold)
        except (ValueError, TypeError, OverflowError) as e:
            row["reason"] = f"bad scp_codes: {str(e)[:80]}"
        else:
            if path is None:
                row["reason"] = f"path {rel!r} escapes the data root"
            else:
                present = {c for c in codes if c in diag.index}
                found = {diag.at[c, "diagnostic_class"] for c in present} | present
                row.update(path=str(path), split=_split(int(fold)), labels=sorted(set(labels) & found))
        rows.append(row)
    notes = [f"PTB-XL {len(rows)} records at {sample_rate} Hz, labels {', '.join(labels)}, strat_fold 1-8/9/10"]
    return record_table(rows), notes
