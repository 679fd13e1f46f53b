"""The downstream ECG tree (docs/contract.md, MIMIC-IV-ECG): 10 s 12-lead WFDB records at 500 Hz, MIMIC-IV-ECG layout
and lead order.

The header and format-16 signal file are written directly, byte-identical to ``wfdb.wrsamp`` with the same fields
(the tests compare them), because ``wrsamp`` spends ~0.3 s per record validating its header through pandas.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from eee_ray.io import atomic_write_bytes, atomic_write_text
from eee_ray.synth.physiology import FS, LEAD_NAMES

ADC_GAIN = 200  # adu per mV, format 16, baseline 0, as in MIMIC-IV-ECG


def record_rel_path(subject_id: int, study_id: int) -> str:
    """``files/pNNNN/pSUBJECT/sSTUDY/STUDY`` (no extension), relative to the ECG root."""
    s = str(subject_id)
    return f"files/p{s[:4]}/p{s}/s{study_id}/{study_id}"


def to_digital(signal_mv: np.ndarray) -> np.ndarray:
    return np.clip(np.round(signal_mv * ADC_GAIN), -32767, 32767).astype(np.int16)


def header_text(name: str, digital: np.ndarray, when: dt.datetime, leads=LEAD_NAMES) -> str:
    """The WFDB header ``wfdb.wrsamp`` writes for these fields (checksum = column sum mod 65536)."""
    n, k = digital.shape
    lines = [f"{name} {k} {FS} {n} {when.strftime('%H:%M:%S')} {when.strftime('%d/%m/%Y')}"]
    checks = np.sum(digital.astype(np.int64), axis=0) % 65536
    for j, lead in enumerate(leads):
        lines.append(f"{name}.dat 16 {float(ADC_GAIN)}(0)/mV 16 0 {int(digital[0, j])} {int(checks[j])} 0 {lead}")
    return "\n".join(lines) + "\n"


def write_record(root: Path, rel: str, signal_mv: np.ndarray, when: dt.datetime, leads=LEAD_NAMES) -> None:
    """Write ``signal_mv`` (n x 12, mV, columns in the order of ``leads``) as ``root/rel.hea`` + ``root/rel.dat``."""
    target = root / rel
    digital = to_digital(signal_mv)
    atomic_write_bytes(target.with_suffix(".dat"), digital.astype("<i2").tobytes())
    atomic_write_text(target.with_suffix(".hea"), header_text(target.name, digital, when, leads))
