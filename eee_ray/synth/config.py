"""The synthetic data set's knobs (docs/contract.md, Synthetic data): sizes, cine geometry and defect rate, all fixed by
one seed."""

from __future__ import annotations

from dataclasses import dataclass

from eee_ray.errors import UserError


@dataclass
class SynthConfig:
    """Sizes and geometry of the synthetic MIMIC-like data set; every random choice derives from ``seed``.

    Ranges are inclusive ``(min, max)`` pairs drawn per patient, study or cine. ``ecg_patients`` = 0 means
    ``4 * patients``: the downstream ECG tree holds the echo patients plus ECG-only patients, so that its 20 folds
    have enough records to benchmark on.
    """

    seed: int = 0
    patients: int = 40                 # patients with echo studies (the first ones of the ECG tree too)
    ecg_patients: int = 0              # patients in the ECG tree; 0 -> 4 * patients
    # shares of the ECG tree's patients in the validation (fold 18) and test (fold 19) folds; the rest, spread over
    # folds 0-17, trains. A larger test share narrows the test AUROC's interval without more labelled patients.
    val_share: float = 0.15
    test_share: float = 0.25
    # ECG-only patients added to the test fold (ECG records and echo measurements, no cines), drawn from their own
    # random streams so that the rest of the world stays byte-identical: a large test set for narrow intervals
    # without more labelled training patients or slower pretraining
    extra_test_patients: int = 0
    studies_min: int = 2               # echo studies per patient
    studies_max: int = 3
    cines_min: int = 1                 # cines (DICOM files) per echo study
    cines_max: int = 3
    rows: int = 480                    # cine frame geometry
    cols: int = 640
    frames_min: int = 24               # frames per cine
    frames_max: int = 48
    frame_time_min_ms: float = 30.0    # FrameTime per cine (uniform in this range, rounded to 0.1 ms)
    frame_time_max_ms: float = 42.0
    ecg_records_min: int = 4           # 10 s 12-lead ECG records per patient
    ecg_records_max: int = 8
    defect_fraction: float = 0.05      # share of cine slots turned into defects (at least one of each kind)
    strip_fraction: float = 0.30       # bottom share of the frame that holds the ECG strip
    jpeg_quality: int = 90             # Pillow JPEG quality of the cine frames
    ecg_latent_strength: float = 1.0   # scales the latents' (weak) effect on ECG morphology; 0 = none
    # the positive-control world (eee_ray.positive_control); the defaults leave every ECG as it was
    ecg_strain_scale: float = 1.0      # scales the LVH strain pattern (T flattening/inversion); 0 = none
    ecg_wall_qrs_widening: float = 0.0  # relative QRS widening per SD of wall thickness (x ecg_latent_strength)
    ecg_qrs_gain_sd: float = 0.0       # log-SD of a per-patient QRS amplitude factor (electrode placement, habitus)
    ecg_t_gain_sd: float = 0.0         # log-SD of a per-patient T amplitude factor
    ecg_axis_sd_deg: float = 0.0       # SD of an extra per-patient rotation of the heart vector (axis nuisance)
    nstdb_path: str = ""               # optional MIT-BIH NSTDB noise (HDF5 with bw/em/ma); empty -> modelled noise

    def validate(self) -> None:
        checks = [
            (self.patients >= 1, "patients must be >= 1"),
            (self.ecg_patients == 0 or self.ecg_patients >= self.patients,
             "ecg_patients must be 0 (auto) or >= patients"),
            (0.0 < self.val_share < 1.0 and 0.0 < self.test_share < 1.0
             and self.val_share + self.test_share <= 0.9,
             "val_share and test_share must be in (0, 1) and leave at least 0.1 to train"),
            (self.extra_test_patients >= 0, "extra_test_patients must be >= 0"),
            (1 <= self.studies_min <= self.studies_max, "need 1 <= studies_min <= studies_max"),
            (1 <= self.cines_min <= self.cines_max, "need 1 <= cines_min <= cines_max"),
            (2 <= self.frames_min <= self.frames_max <= 120, "need 2 <= frames_min <= frames_max <= 120"),
            (0 < self.frame_time_min_ms <= self.frame_time_max_ms, "need 0 < frame_time_min_ms <= frame_time_max_ms"),
            (1 <= self.ecg_records_min <= self.ecg_records_max, "need 1 <= ecg_records_min <= ecg_records_max"),
            (0.0 <= self.defect_fraction < 0.5, "defect_fraction must be in [0, 0.5)"),
            (0.1 <= self.strip_fraction <= 0.5, "strip_fraction must be in [0.1, 0.5]"),
            (self.rows >= 120 and self.cols >= 160, "frames must be at least 120 x 160 pixels"),
            (1 <= self.jpeg_quality <= 100, "jpeg_quality must be in 1..100"),
            (0.0 <= self.ecg_latent_strength <= 3.0, "ecg_latent_strength must be in [0, 3]"),
            (0.0 <= self.ecg_strain_scale <= 2.0, "ecg_strain_scale must be in [0, 2]"),
            (0.0 <= self.ecg_wall_qrs_widening <= 0.5, "ecg_wall_qrs_widening must be in [0, 0.5]"),
            (0.0 <= self.ecg_qrs_gain_sd <= 1.0 and 0.0 <= self.ecg_t_gain_sd <= 1.0,
             "ecg_qrs_gain_sd and ecg_t_gain_sd must be in [0, 1]"),
            (0.0 <= self.ecg_axis_sd_deg <= 60.0, "ecg_axis_sd_deg must be in [0, 60]"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UserError(f"SynthConfig: {msg}")

    @property
    def has_control_effects(self) -> bool:
        """Whether any positive-control field differs from its default (the ECG model is then changed)."""
        return (self.ecg_strain_scale != 1.0 or self.ecg_wall_qrs_widening != 0.0 or self.ecg_qrs_gain_sd != 0.0
                or self.ecg_t_gain_sd != 0.0 or self.ecg_axis_sd_deg != 0.0)

    @property
    def fold_shares(self) -> list[float]:
        """Share of the ECG tree's patients in each of the 20 folds (train 0-17, val 18, test 19)."""
        return [(1.0 - self.val_share - self.test_share) / 18] * 18 + [self.val_share, self.test_share]

    @property
    def n_ecg_patients(self) -> int:
        return self.ecg_patients or 4 * self.patients

    @property
    def strip_y0(self) -> int:
        """First row of the ECG strip (docs/contract.md, Ingest: bottom 30% of the frame)."""
        return int(self.rows * (1.0 - self.strip_fraction))
