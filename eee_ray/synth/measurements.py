"""The synthetic ``structured_measurement`` table (MIMIC-IV-ECHO's long format) from each patient's latents.

Every echo study with cines gets a row set, and so do measurement-only examinations placed near a patient's ECGs
(in MIMIC-IV-ECHO, as in a hospital, far more examinations have measurements than have stored cines), so the
echo-measurement labels reach most ECG records while some ECGs have no TTE in the window. The values follow the
latents: LV size -> LVEF (and LVIDd, TR velocity, RV function), wall thickness -> septal and inferolateral wall in
cm (and aortic stenosis), valve jet -> mitral (and aortic) regurgitation grade; pulmonic regurgitation and
pericardial effusion are latent-free. Each measurement is missing with its own probability, and a few
examinations are TEEs (left out by the label builder).

It draws from its own random stream, so adding it changed no byte of the other synthetic outputs.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from eee_ray.synth.labels import Patient

STREAM = 18  # spawn key of this table's random stream under the synth seed
COLUMNS = ["subject_id", "measurement_id", "measurement_datetime", "test_type", "measurement", "result"]
GRADES = ["none", "trace", "mild", "moderate", "severe"]
# chance that a measurement is present in an examination (a report rarely has every field)
PRESENT = {"LVEF": 0.93, "IVSd": 0.85, "LVPWd": 0.82, "LVIDd": 0.85, "Aortic stenosis": 0.85,
           "Aortic regurgitation": 0.85, "Mitral regurgitation": 0.9, "Tricuspid regurgitation": 0.85,
           "Pulmonic regurgitation": 0.55, "RV systolic function": 0.7, "Pericardial effusion": 0.75,
           "TR peak velocity": 0.6}
RV_WORDS = ["normal", "mildly reduced", "moderately reduced", "severely reduced"]
EFFUSION_WORDS = ["none", "trivial", "small", "moderate", "large"]
NEAR_ECG_DAYS = 25.0  # measurement-only TTEs fall within this many days of an ECG
P_NO_NEAR_TTE = 0.1  # share of patients whose ECGs have no TTE nearby (their ECGs are left out)
P_TTE_PER_ECG = 0.8  # otherwise, chance that an ECG gets a TTE nearby
P_TEE = 0.04  # share of examinations that are TEEs


def _grade(x: float, cuts: tuple[float, ...]) -> int:
    return int(np.searchsorted(cuts, x))


def study_values(rng: np.random.Generator, p: Patient) -> dict[str, str]:
    """One examination's measurements of patient ``p`` (latents standardised), as the table's text results."""
    wt, lv, vj = p.wall_thickness, p.lv_size, p.valve_jet
    ef = float(np.clip(57.0 - 9.0 * lv + rng.normal(0, 4.0), 10, 80))
    vals = {
        "LVEF": f"{ef:.0f}",
        "IVSd": f"{max(0.5, 0.98 + 0.22 * wt + rng.normal(0, 0.06)):.2f}",
        "LVPWd": f"{max(0.5, 0.95 + 0.21 * wt + rng.normal(0, 0.06)):.2f}",
        "LVIDd": f"{max(3.0, 4.8 + 0.55 * lv + rng.normal(0, 0.2)):.2f}",
        "Aortic stenosis": GRADES[_grade(0.6 * vj + 0.5 * wt + rng.normal(0, 0.5), (0.4, 0.9, 1.2, 1.7))],
        "Aortic regurgitation": GRADES[_grade(0.4 * vj + rng.normal(0, 0.8), (0.0, 0.8, 1.5, 2.2))],
        "Mitral regurgitation": GRADES[_grade(vj + rng.normal(0, 0.3), (0.0, 0.6, 1.2, 1.8))],
        "Tricuspid regurgitation": GRADES[_grade(0.5 * lv + rng.normal(0, 0.7), (0.0, 0.7, 1.4, 2.1))],
        "Pulmonic regurgitation": GRADES[_grade(rng.normal(0, 1.0), (0.5, 1.2, 2.1, 2.8))],
        "RV systolic function": RV_WORDS[_grade(0.6 * lv + rng.normal(0, 0.6), (0.9, 1.5, 2.2))],
        "Pericardial effusion": EFFUSION_WORDS[_grade(rng.normal(0, 1.0), (0.8, 1.4, 1.9, 2.5))],
        "TR peak velocity": f"{max(1.2, 2.5 + 0.35 * lv + 0.2 * vj + rng.normal(0, 0.3)):.1f}",
    }
    return {k: v for k, v in vals.items() if rng.random() < PRESENT[k]}


def measurement_table(seed: int, patients: list[Patient], ecg_records: pd.DataFrame,
                      echo_studies: pd.DataFrame, stream: int = STREAM, id_lo: int = 70_000_000) -> pd.DataFrame:
    """Long table (``COLUMNS``): the echo studies' examinations and measurement-only ones near the ECGs.

    ``ecg_records``: subject_id, ecg_time (the ECG tree); ``echo_studies``: study_id, subject_id, study_datetime.
    Measurement-only examinations get ids in [id_lo, id_lo + 10**7); ``stream`` is the random stream's spawn key."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))
    by_id = {p.subject_id: p for p in patients}
    exams = [(int(s), int(i), pd.Timestamp(t)) for s, i, t in
             zip(echo_studies["subject_id"], echo_studies["study_id"], echo_studies["study_datetime"])]
    used = {i for _, i, _ in exams}
    for sub, group in ecg_records.groupby("subject_id", sort=True):
        if rng.random() < P_NO_NEAR_TTE:
            continue
        for t in sorted(pd.to_datetime(group["ecg_time"])):
            if rng.random() < P_TTE_PER_ECG:
                when = t + dt.timedelta(days=float(rng.uniform(-NEAR_ECG_DAYS, NEAR_ECG_DAYS)))
                mid = int(rng.integers(id_lo, id_lo + 10_000_000))
                while mid in used:
                    mid += 1
                used.add(mid)
                exams.append((int(sub), mid, when.floor("s")))
    rows = []
    for sub, mid, when in exams:
        kind = "TEE" if rng.random() < P_TEE else "TTE"
        stamp = when.strftime("%Y-%m-%d %H:%M:%S")
        for name, value in study_values(rng, by_id[sub]).items():
            rows.append((sub, mid, stamp, kind, name, value))
    return pd.DataFrame(rows, columns=COLUMNS)
