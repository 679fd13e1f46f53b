"""Latent structure per patient and the ICD-10 codes it drives (docs/contract.md: ICD-10 to CCSR labels, Synthetic
data), plus patient-level fold splits.

Every code used here exists in the AHRQ default CCSR mapping; the CIR ones are what the benchmark keeps, the others
(diabetes, kidney injury, lipids) are there so label filtering is exercised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ICD-10-CM code -> default CCSR category (AHRQ DXCCSR), hard-coded so the generator never reads ../shared.
CCSR_DEFAULT: dict[str, str] = {
    "I110": "CIR008",   # hypertensive heart disease with heart failure
    "I119": "CIR008",   # hypertensive heart disease without heart failure
    "I10": "CIR007",    # essential hypertension
    "I420": "CIR005",   # dilated cardiomyopathy
    "I5020": "CIR019",  # systolic heart failure, unspecified
    "I5022": "CIR019",  # chronic systolic heart failure
    "I340": "CIR003",   # non-rheumatic mitral insufficiency
    "I350": "CIR003",   # non-rheumatic aortic stenosis
    "I480": "CIR017",   # paroxysmal atrial fibrillation
    "I2510": "CIR011",  # coronary atherosclerosis
    "E119": "END002",   # type 2 diabetes without complications
    "N179": "GEN002",   # acute kidney failure, unspecified
    "E785": "END010",   # hyperlipidemia, unspecified
}
LATENTS = ("wall_thickness", "lv_size", "valve_jet")


def is_cir(code: str) -> bool:
    return CCSR_DEFAULT[code].startswith("CIR")


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


@dataclass
class Patient:
    """One synthetic patient: standardised latent structure, rhythm, and chronic diagnosis codes."""

    subject_id: int
    wall_thickness: float
    lv_size: float
    valve_jet: float
    af: bool
    codes: list[str]
    has_echo: bool

    @property
    def cir_codes(self) -> list[str]:
        return [c for c in self.codes if is_cir(c)]

    @property
    def cir_categories(self) -> list[str]:
        return sorted({CCSR_DEFAULT[c] for c in self.cir_codes})


def patient_codes(rng: np.random.Generator, wt: float, lv: float, vj: float, af: bool) -> list[str]:
    """Diagnosis codes from the latents (logistic links, prevalences ~10-40%) plus latent-free comorbidities."""
    codes: list[str] = []
    if rng.random() < _sigmoid(-1.9 + 1.9 * wt):                  # hypertrophy -> hypertensive heart disease
        codes.append("I110" if lv > 0.3 else "I119")
    elif rng.random() < _sigmoid(-1.0 + 0.7 * wt):
        codes.append("I10")
    if rng.random() < _sigmoid(-3.0 + 2.0 * lv):                  # dilated ventricle -> DCM, systolic HF
        codes.append("I420")
    if rng.random() < _sigmoid(-2.2 + 1.6 * lv + 0.3 * wt):
        codes.append("I5022" if rng.random() < 0.4 else "I5020")
    if rng.random() < _sigmoid(-1.9 + 1.9 * vj):                  # valve jet -> mitral regurgitation
        codes.append("I340")
    if rng.random() < _sigmoid(-2.8 + 1.2 * vj + 0.6 * wt):       # ... and aortic stenosis with hypertrophy
        codes.append("I350")
    if af:
        codes.append("I480")
    for code, p in (("I2510", 0.22), ("E119", 0.2), ("N179", 0.1), ("E785", 0.3)):
        if rng.random() < p:
            codes.append(code)
    return sorted(codes)


def make_patients(rng: np.random.Generator, subject_ids: list[int], n_echo: int) -> list[Patient]:
    """Latents ~ N(0, 1) with mild correlation (hypertrophy and dilation co-occur in heart failure)."""
    cov = np.array([[1.0, 0.2, 0.1], [0.2, 1.0, 0.15], [0.1, 0.15, 1.0]])
    lat = rng.multivariate_normal(np.zeros(3), cov, size=len(subject_ids), method="cholesky")
    out = []
    for i, sid in enumerate(subject_ids):
        wt, lv, vj = (float(v) for v in lat[i])
        af = bool(rng.random() < _sigmoid(-2.2 + 0.4 * lv))
        out.append(Patient(sid, wt, lv, vj, af, patient_codes(rng, wt, lv, vj, af), has_echo=i < n_echo))
    return out


def record_codes(rng: np.random.Generator, patient: Patient) -> list[str]:
    """Per-record codes: the patient's chronic codes, each missed with a small chance (coding noise)."""
    return [c for c in patient.codes if c == "I480" or rng.random() > 0.08]


def assign_folds(rng: np.random.Generator, label_sets: list[set[str]], n_folds: int = 20,
                 guaranteed: tuple[int, ...] = (18, 19), stratify: bool = True,
                 shares: np.ndarray | None = None) -> np.ndarray:
    """Patient-level folds 0..n_folds-1 (so no patient spans two folds), fold f holding about ``shares[f]`` of the
    patients (equal shares by default).

    First, for every label with at least ``len(guaranteed) + 1`` positive patients (rarest first), folds in
    ``guaranteed`` (val 18, test 19) each get one positive patient if they have none yet; the rest is spread by
    iterative stratification (each patient, rarest label first, to the fold that lacks most of its share of the
    patient's rarest label, so that every fold gets each label in proportion to its share), or, with
    ``stratify=False``, at random into the smallest folds (like MIMIC-IV-ECG-Ext-ICD's ``fold`` vs ``strat_fold``).
    """
    n = len(label_sets)
    fold = np.full(n, -1)
    order = rng.permutation(n)
    counts: dict[str, int] = {}
    for s in label_sets:
        for c in s:
            counts[c] = counts.get(c, 0) + 1
    for label in sorted(counts, key=lambda c: (counts[c], c)):
        if counts[label] <= len(guaranteed):
            continue
        for g in guaranteed:
            if any(fold[i] == g and label in label_sets[i] for i in range(n)):
                continue
            free = [i for i in order if fold[i] < 0 and label in label_sets[i]]
            if free:
                fold[free[0]] = g
    size = np.bincount(fold[fold >= 0], minlength=n_folds).astype(float)
    have = {c: np.zeros(n_folds) for c in counts}
    for i in np.flatnonzero(fold >= 0):
        for c in label_sets[i]:
            have[c][fold[i]] += 1
    rest = [i for i in order if fold[i] < 0]
    if stratify:
        rest.sort(key=lambda i: min((counts[c] for c in label_sets[i]), default=n + 1))
    share = np.full(n_folds, 1.0 / n_folds) if shares is None else np.asarray(shares, dtype=float) / np.sum(shares)
    target = n * share
    for i in rest:
        if stratify:
            # each label's positives go where the fold lacks most of its share of them (absolute, so folds get them
            # in proportion to their shares); the fold's size counts relative to its target, so that a fold with a
            # large share does not draw every labelled patient first
            need = (target - size) / target
            if label_sets[i]:
                c = min(label_sets[i], key=lambda c: (counts[c], c))  # the patient's rarest label decides
                need = counts[c] * share - have[c] + 1e-3 * need
        else:
            need = target - size
        need[size >= np.ceil(target)] -= 1e3    # keep folds balanced in size
        f = int(np.argmax(need + rng.uniform(0, 1e-3 if stratify else 0.5, n_folds)))
        fold[i] = f
        size[f] += 1
        for c in label_sets[i]:
            have[c][f] += 1
    return fold
