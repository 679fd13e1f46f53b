"""Generate the synthetic MIMIC-like data set (docs/contract.md, Synthetic data): echo tree, ECG tree, label CSVs and
ground truth.

Everything derives from ``cfg.seed`` through independent random streams (patients, echo, ECG), so the output is
byte-identical for the same config and no wall clock is read. Each cine's random draws happen in order in this
process; rendering its frames and writing the DICOM (no random draws left, most of the run time) happen in worker
processes.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import shutil
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from eee_ray.config import save, to_dict
from eee_ray.errors import UserError
from eee_ray.io import atomic_write, atomic_write_bytes, atomic_write_text
from eee_ray.synth.config import SynthConfig
from eee_ray.synth.dicom_writer import write_us_multiframe
from eee_ray.synth.echo import Anatomy, CineRenderer, contraction
from eee_ray.synth.ecg_records import record_rel_path, write_record
from eee_ray.synth.measurements import measurement_table
from eee_ray.synth.labels import CCSR_DEFAULT, LATENTS, Patient, assign_folds, is_cir, make_patients, record_codes
from eee_ray.synth.physiology import FS, LEAD_NAMES, RECORD_SECONDS, Morphology, NoiseBank, ecg_leads, \
    ControlEffects, heart_rate_bpm, patient_morphology, random_rotation
from eee_ray.synth.strip import column_signal, draw_strip

MARKER = "synth.json"
DEFECTS = ("clipped", "gap", "no_trace", "too_many_frames", "not_dicom")
EXPECTED_REASON = {"none": None, "clipped": "ecg_amplitude_clipped", "gap": "ecg_discontinuous",
                   "no_trace": "no_ecg_trace", "too_many_frames": "too_many_frames", "not_dicom": "not_dicom"}
TINY_ROWS, TINY_COLS = 120, 160   # geometry of the (never fully decoded) too_many_frames cines
EPOCH = dt.datetime(2110, 1, 1)   # MIMIC shifts dates into the 22nd century
LEAD_II = LEAD_NAMES.index("II")


@dataclass
class CineSlot:
    subject_id: int
    study_id: int
    index: int
    when: dt.datetime
    defect: str = "none"

    @property
    def rel_path(self) -> str:
        s = str(self.subject_id)
        return f"files/p{s[:2]}/p{s}/s{self.study_id}/{self.study_id}_{self.index:04d}.dcm"


def _unique_ids(rng: np.random.Generator, n: int, lo: int) -> list[int]:
    """``n`` distinct 8-digit ids in [lo, lo + 10**7)."""
    return [int(v) + lo for v in rng.choice(10_000_000, size=n, replace=False)]


def _fmt(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder unless it is a previous synth output (or ``overwrite``); clear our subtrees."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file() and not overwrite:
        raise UserError(f"--out {out} is not empty and not a previous synth output; choose another folder or "
                        "pass --overwrite")
    for sub in ("echo", "ecg", "truth"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    out.mkdir(parents=True, exist_ok=True)


def _plan_cines(rng: np.random.Generator, cfg: SynthConfig, patients: list[Patient]) -> tuple[list, list]:
    """Echo studies and cine slots per echo patient, with the defect kinds assigned to a few slots."""
    studies, slots = [], []
    n_studies = [int(rng.integers(cfg.studies_min, cfg.studies_max + 1)) for _ in range(cfg.patients)]
    study_ids = iter(_unique_ids(rng, sum(n_studies), 90_000_000))
    for p, ns in zip(patients[:cfg.patients], n_studies):
        when = EPOCH + dt.timedelta(days=int(rng.integers(0, 365 * 70)))
        for k in range(ns):
            when = when + dt.timedelta(days=int(rng.integers(20, 900)), seconds=int(rng.integers(0, 86400)))
            sid = next(study_ids)
            studies.append({"study_id": sid, "subject_id": p.subject_id, "study_datetime": _fmt(when),
                            "note_id": f"{p.subject_id}-EC-{k + 1}"})
            for i in range(int(rng.integers(cfg.cines_min, cfg.cines_max + 1))):
                slots.append(CineSlot(p.subject_id, sid, i + 1, when + dt.timedelta(seconds=75 * i + 30)))
    per_kind = max(1, int(round(cfg.defect_fraction * len(slots) / len(DEFECTS))))
    chosen = rng.permutation(len(slots))[:per_kind * len(DEFECTS)]
    for j, idx in enumerate(chosen):
        slots[idx].defect = DEFECTS[j % len(DEFECTS)]
    return studies, slots


def _render_cine(target: Path, renderer: CineRenderer, phase: np.ndarray, frame_time: float, jpeg_quality: int,
                 tags: dict[str, str]) -> None:
    """Frames of one cine from its drawn parameters (no randomness), written as DICOM."""
    frames = np.stack([renderer.frame(float(c), k) for k, c in enumerate(phase)])
    write_us_multiframe(target, frames, frame_time, jpeg_quality=jpeg_quality, **tags)


def _cine(cfg: SynthConfig, rng: np.random.Generator, slot: CineSlot, patient: Patient, morph: Morphology,
          noise: NoiseBank, echo_root: Path, render) -> dict:
    """Draw one cine (or defect file) and hand its rendering to ``render(fn, *args)``; return its truth row."""
    row = {"path": slot.rel_path, "subject_id": slot.subject_id, "study_id": slot.study_id, "defect": slot.defect,
           "expected_reason": EXPECTED_REASON[slot.defect], "n_frames": None, "frame_time_ms": None, "rows": None,
           "cols": None, "strip_y0": None, "trace_x0": None, "trace_x1": None, "trace_y": None, "ecg_100hz": None,
           "heart_rate_bpm": None, "r_peaks_ms": None}
    target = echo_root / slot.rel_path
    if slot.defect == "not_dicom":
        atomic_write_bytes(target, b"synthetic defect: this .dcm file is not DICOM\n" + rng.bytes(512))
        return row
    tiny = slot.defect == "too_many_frames"
    rows, cols = (TINY_ROWS, TINY_COLS) if tiny else (cfg.rows, cfg.cols)
    n_frames = int(rng.integers(121, 131)) if tiny else int(rng.integers(cfg.frames_min, cfg.frames_max + 1))
    frame_time = round(float(rng.uniform(cfg.frame_time_min_ms, cfg.frame_time_max_ms)), 1)
    duration = n_frames * frame_time / 1000.0
    n_100 = int(np.floor(n_frames * frame_time / 10.0 + 1e-6))   # 100 Hz samples at 0, 10, ... ms inside the clip
    strip_y0 = int(rows * (1.0 - cfg.strip_fraction))
    hr = float(np.clip(morph.heart_rate + rng.normal(0.0, 4.0), 45.0, 120.0))
    leads, peaks = ecg_leads(rng, morph, hr, duration, noise=noise)
    lead_ii = leads[:, LEAD_II]
    x0 = int(cols * rng.uniform(0.05, 0.09))
    x1 = int(cols * rng.uniform(0.92, 0.97))
    strip, truth = draw_strip(rows - strip_y0, cols, column_signal(lead_ii, FS, duration, x1 - x0 + 1), x0, rng,
                              slot.defect)
    anatomy = Anatomy.from_latents(patient.wall_thickness, patient.lv_size, patient.valve_jet)
    depth_cm = int(rng.integers(14, 19))
    texts = [f"SYN-US {int(rng.integers(1, 4))}  A4C", f"P4-2  {depth_cm} cm",
             f"FR {round(1000 / frame_time)} Hz", "MI 1.1  TIS 0.4"]
    renderer = CineRenderer(strip, strip_y0, anatomy, rng, texts)
    phase = contraction(np.arange(n_frames) * frame_time / 1000.0, peaks)
    s = str(slot.subject_id)
    render(_render_cine, target, renderer, phase, frame_time, cfg.jpeg_quality, dict(
        PatientName=f"SYNTHETIC^PATIENT{s[-4:]}", PatientID=s, PatientBirthDate=f"2{s[-3:]}0101",
        AccessionNumber=f"SA{slot.study_id}", StudyID=str(slot.study_id), InstanceNumber=str(slot.index),
        StudyDate=slot.when.strftime("%Y%m%d"), StudyTime=slot.when.strftime("%H%M%S"),
        ContentDate=slot.when.strftime("%Y%m%d"), ContentTime=slot.when.strftime("%H%M%S"),
        StudyInstanceUID=f"2.25.{slot.study_id}{cfg.seed % 1000:03d}1",
        SOPInstanceUID=f"2.25.{slot.study_id}{cfg.seed % 1000:03d}2{slot.index:04d}",
        SeriesInstanceUID=f"2.25.{slot.study_id}{cfg.seed % 1000:03d}3{slot.index:04d}",
    ))
    row.update(n_frames=n_frames, frame_time_ms=frame_time, rows=rows, cols=cols, strip_y0=strip_y0,
               trace_x0=truth.x0, trace_x1=truth.x1,
               trace_y=truth.trace_y if truth.x0 is not None else None,
               ecg_100hz=column_signal(lead_ii, FS, n_100 / 100.0, n_100).astype(np.float32),
               heart_rate_bpm=heart_rate_bpm(peaks), r_peaks_ms=(peaks * 1000.0).astype(np.float32))
    return row


CINE_SCHEMA = pa.schema([
    ("path", pa.string()), ("subject_id", pa.int64()), ("study_id", pa.int64()), ("defect", pa.string()),
    ("expected_reason", pa.string()), ("n_frames", pa.int32()), ("frame_time_ms", pa.float64()),
    ("rows", pa.int32()), ("cols", pa.int32()), ("strip_y0", pa.int32()), ("trace_x0", pa.int32()),
    ("trace_x1", pa.int32()), ("trace_y", pa.list_(pa.float32())), ("ecg_100hz", pa.list_(pa.float32())),
    ("heart_rate_bpm", pa.float32()), ("r_peaks_ms", pa.list_(pa.float32())),
])


def _write_parquet(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda p: pq.write_table(table, p, compression="zstd"))


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def _ecg_tree(cfg: SynthConfig, rng: np.random.Generator, patients: list[Patient], morphs: list[Morphology],
              noise: NoiseBank, ecg_root: Path, study_lo: int = 40_000_000) -> pd.DataFrame:
    """Write the 10 s records of every patient; return one row per record (ids, time, path, codes, truth)."""
    n_rec = [int(rng.integers(cfg.ecg_records_min, cfg.ecg_records_max + 1)) for _ in patients]
    study_ids = iter(_unique_ids(rng, sum(n_rec), study_lo))
    rows = []
    for p, m, nr in tqdm(list(zip(patients, morphs, n_rec)), desc="synth ECG records", unit="patient",
                         leave=False):
        when = EPOCH + dt.timedelta(days=int(rng.integers(0, 365 * 70)))
        for _ in range(nr):
            when = when + dt.timedelta(days=int(rng.integers(1, 400)), seconds=int(rng.integers(0, 86400)))
            sid = next(study_ids)
            hr = float(np.clip(m.heart_rate + rng.normal(0.0, 5.0), 45.0, 125.0))
            sig, peaks = ecg_leads(rng, m, hr, RECORD_SECONDS, noise=noise)
            rel = record_rel_path(p.subject_id, sid)
            write_record(ecg_root, rel, sig, when)
            inside = peaks[(peaks >= 0) & (peaks < RECORD_SECONDS)]
            rows.append({"subject_id": p.subject_id, "study_id": sid, "file_name": sid, "ecg_time": _fmt(when),
                         "path": rel, "codes": record_codes(rng, p), "heart_rate_bpm": heart_rate_bpm(inside),
                         "af": m.af})
    return pd.DataFrame(rows)


class _Renderers:
    """Runs the cines' rendering in worker processes (spawned: the caller may hold Ray's or torch's threads), with
    a bounded number in flight so that memory stays flat, and a progress bar over the finished cines."""

    def __init__(self, total: int, workers: int | None) -> None:
        self.workers = max(1, workers or min(os.cpu_count() or 1, 8))
        self.pool: ProcessPoolExecutor | None = None
        self.pending: list[Future] = []
        self.bar = tqdm(total=total, desc="synth echo cines", unit="cine", leave=False)

    def __enter__(self):
        if self.workers > 1:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self

    def __call__(self, fn, *args) -> None:
        if self.pool is None:
            fn(*args)
            self.bar.update()
            return
        self.pending.append(self.pool.submit(fn, *args))
        while len(self.pending) > 2 * self.workers:
            self._finish_one()

    def _finish_one(self) -> None:
        self.pending.pop(0).result()   # a worker's error surfaces here
        self.bar.update()

    def __exit__(self, *exc) -> None:
        try:
            while self.pending and exc[0] is None:
                self._finish_one()
        finally:
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)
            self.bar.close()


def _echo_tree(cfg: SynthConfig, rng: np.random.Generator, patients: list[Patient], morphs: list[Morphology],
               noise: NoiseBank, echo_root: Path, workers: int | None) -> list[dict]:
    """Write the cines and the two echo CSVs; return one truth row per file."""
    by_id = {p.subject_id: (p, m) for p, m in zip(patients, morphs)}
    studies, slots = _plan_cines(rng, cfg, patients)
    with _Renderers(sum(slot.defect != "not_dicom" for slot in slots), workers) as render:
        rows = [_cine(cfg, rng, slot, *by_id[slot.subject_id], noise, echo_root, render) for slot in slots]
    _write_csv(echo_root / "echo-record-list.csv", pd.DataFrame(
        [{"subject_id": s.subject_id, "study_id": s.study_id, "acquisition_datetime": _fmt(s.when),
          "dicom_filepath": s.rel_path} for s in slots]))
    _write_csv(echo_root / "echo-study-list.csv", pd.DataFrame(studies))
    return rows


# Ext-ICD's fold semantics (train 0-17, val 18, test 19) with a larger val and test share than MIMIC's 5% each
# (SynthConfig.val_share, test_share): a synthetic data set has a few hundred patients, and 5% of them would make
# the test AUROCs noise.


CONTROL_STREAM = 19  # spawn key of the positive-control nuisance draws under the synth seed
# spawn keys of the extra test patients (SynthConfig.extra_test_patients): their patients and ECGs, their control
# effects, their measurement table
EXTRA_STREAM, EXTRA_CONTROL_STREAM, EXTRA_MEASUREMENT_STREAM = 20, 21, 22


def control_effects(cfg: SynthConfig, n: int, stream: int = CONTROL_STREAM) -> list[ControlEffects | None]:
    """Per-patient ECG changes of the positive-control fields, drawn from their own random stream (so the other
    draws, and every world with the default fields, stay as they were); ``None`` each when no field is set."""
    if not cfg.has_control_effects:
        return [None] * n
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(stream,)))
    out = []
    for _ in range(n):
        qrs, t = np.exp(rng.normal(0.0, [cfg.ecg_qrs_gain_sd, cfg.ecg_t_gain_sd]))
        rotation = random_rotation(rng, cfg.ecg_axis_sd_deg)
        out.append(ControlEffects(strain=cfg.ecg_strain_scale, wall_qrs_widening=cfg.ecg_wall_qrs_widening,
                                  qrs_gain=float(qrs), t_gain=float(t), rotation=rotation))
    return out


def patient_morphologies(cfg: SynthConfig, rng: np.random.Generator, patients: list[Patient],
                         stream: int = CONTROL_STREAM) -> list[Morphology]:
    """Each patient's beat template: the latents scaled by ``ecg_latent_strength``, plus the control effects."""
    strength = cfg.ecg_latent_strength
    return [patient_morphology(rng, strength * p.wall_thickness, strength * p.lv_size, strength * p.valve_jet, p.af,
                               c) for p, c in zip(patients, control_effects(cfg, len(patients), stream))]


def generate(out: str | Path, cfg: SynthConfig, overwrite: bool = False, workers: int | None = None) -> Path:
    """Write the synthetic data set under ``out`` (echo/, ecg/, truth/) and return ``out``.

    ``workers``: processes that render the cines (default: the CPUs, at most 8; 1 renders in this process). The
    workers are spawned, so a script that calls this at import time needs Python's ``if __name__ == "__main__":``
    guard, or ``workers=1``. The output does not depend on ``workers``.
    """
    cfg.validate()
    out = Path(out)
    _prepare_out(out, overwrite)
    seeds = np.random.SeedSequence(cfg.seed).spawn(4)
    rng_pat, rng_echo, rng_ecg, rng_fold = (np.random.default_rng(s) for s in seeds)
    noise = NoiseBank(cfg.nstdb_path)

    subject_ids = _unique_ids(rng_pat, cfg.n_ecg_patients, 10_000_000)
    patients = make_patients(rng_pat, subject_ids, cfg.patients)
    morphs = patient_morphologies(cfg, rng_pat, patients)
    cine_rows = _echo_tree(cfg, rng_echo, patients, morphs, noise, out / "echo", workers)

    ecg_root = out / "ecg"
    records = _ecg_tree(cfg, rng_ecg, patients, morphs, noise, ecg_root)
    cir = [set(p.cir_codes) for p in patients]
    shares = np.array(cfg.fold_shares)
    fold_of = dict(zip(subject_ids, assign_folds(rng_fold, cir, stratify=False, shares=shares)))
    strat_of = dict(zip(subject_ids, assign_folds(rng_fold, cir, stratify=True, shares=shares)))
    records["fold"] = records["subject_id"].map(fold_of).astype(int)
    records["strat_fold"] = records["subject_id"].map(strat_of).astype(int)
    if cfg.extra_test_patients:  # ECG-only patients in the test fold, from their own streams (the rest unchanged)
        rng_x = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(EXTRA_STREAM,)))
        extra = make_patients(rng_x, _unique_ids(rng_x, cfg.extra_test_patients, 20_000_000), 0)
        extra_morphs = patient_morphologies(cfg, rng_x, extra, EXTRA_CONTROL_STREAM)
        extra_records = _ecg_tree(cfg, rng_x, extra, extra_morphs, noise, ecg_root, study_lo=50_000_000)
        extra_records["fold"] = extra_records["strat_fold"] = 19
        records = pd.concat([records, extra_records], ignore_index=True)
    records["all_diag_all"] = records["codes"].map(lambda cs: str(list(cs)))
    _write_csv(ecg_root / "record_list.csv", records[["subject_id", "study_id", "file_name", "ecg_time", "path"]])
    _write_csv(ecg_root / "records_w_diag_icd10.csv",
               records[["subject_id", "study_id", "file_name", "ecg_time", "all_diag_all", "fold", "strat_fold"]])
    # the AHRQ default categories of the codes used, in DXCCSR layout: `--mapping official` finds it beside the data,
    # so the synthetic benchmark needs nothing from outside the installed package
    _write_csv(ecg_root / "DXCCSR_synthetic.csv", pd.DataFrame(
        {"'ICD-10-CM CODE'": [f"'{c}'" for c in CCSR_DEFAULT],
         "'Default CCSR CATEGORY IP'": [f"'{v}'" for v in CCSR_DEFAULT.values()],
         "'CCSR CATEGORY 1'": [f"'{v}'" for v in CCSR_DEFAULT.values()]}))

    studies = pd.read_csv(out / "echo" / "echo-study-list.csv", dtype={"study_datetime": str})
    is_extra = records["subject_id"].isin({p.subject_id for p in extra} if cfg.extra_test_patients else set())
    measurements = measurement_table(cfg.seed, patients, records.loc[~is_extra, ["subject_id", "ecg_time"]], studies)
    if cfg.extra_test_patients:
        measurements = pd.concat([measurements, measurement_table(
            cfg.seed, extra, records.loc[is_extra, ["subject_id", "ecg_time"]], studies.iloc[:0],
            stream=EXTRA_MEASUREMENT_STREAM, id_lo=80_000_000)], ignore_index=True)
        patients, morphs = patients + extra, morphs + extra_morphs
    _write_csv(out / "structured_measurement.csv",  # beside echo/, where the ingest does not read it
               measurements)

    truth = out / "truth"
    _write_parquet(truth / "cines.parquet", pa.Table.from_pylist(cine_rows, schema=CINE_SCHEMA))
    _write_parquet(truth / "patients.parquet", pa.Table.from_pylist([
        {"subject_id": p.subject_id, **{k: getattr(p, k) for k in LATENTS}, "af": p.af, "has_echo": p.has_echo,
         "heart_rate_bpm": m.heart_rate, "codes": p.codes, "cir_codes": p.cir_codes,
         "cir_categories": p.cir_categories} for p, m in zip(patients, morphs)]))
    rec = records.drop(columns=["all_diag_all"]).copy()
    rec["cir_codes"] = rec["codes"].map(lambda cs: [c for c in cs if is_cir(c)])
    rec["cir_categories"] = rec["cir_codes"].map(lambda cs: sorted({CCSR_DEFAULT[c] for c in cs}))
    _write_parquet(truth / "ecg_records.parquet", pa.Table.from_pandas(rec, preserve_index=False))
    atomic_write_text(out / MARKER, json.dumps({"generator": "eee_ray.synth", "config": to_dict(cfg),
                                                "cines": len(cine_rows), "ecg_records": len(records)}, indent=1))
    save(cfg, out / "config.yaml")
    return out
