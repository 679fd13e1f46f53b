"""The positive and negative control of the downstream evidence: a synthetic world in which echo pretraining can
help, the pretraining recipe that learns it, and the benchmark that measures it.

World: 160 patients have one echo study of four cines (pretraining), the ECG tree holds them plus ECG-only patients
(the benchmark), and the labels are the echo-measurement findings of the nearest TTE. The ECG carries the wall
thickness in a way that is real but hard to learn from a few labels: the wall widens the QRS (``WALL_QRS_WIDENING``
per SD), its voltage effect is small (``ecg_latent_strength`` 1) and buried in per-patient QRS and T amplitude
factors and axis rotations (electrode placement, habitus), and there is no strain pattern (no T inversion, which a
convolutional network picks up from one or two positive patients). Pretraining over the paired patients, whose echo
shows the wall directly, can find the QRS width among the nuisance; a few labelled patients cannot. Recipe: the locked echo tower with standardised features,
study-level [CLS] positives, [CLS] terms only, plain InfoNCE (the recipe with which the ECG [CLS] learns wall
thickness, docs/pretraining.md). The negative control is the same run with ``shuffle_pairs``: each clip's ECG comes
from another patient. Benchmark: lead II (the lead pretraining saw), the pretrained encoder as linear probe and
fine-tuned, its random-init control in both strategies, and XResNet1D50 from scratch, at several label fractions.
"""

from __future__ import annotations

from typing import Any

from eee_ray.losses import LossConfig
from eee_ray.pairs import PairsConfig

PAIRS = PairsConfig(image_size=64)
FRACTIONS = [0.02, 0.2, 1.0]
HEADLINE_LABEL = "lv_wall_ge_1.3cm"  # the finding whose latent the echo shows and the ECG carries (docs/downstream.md)
# the control world's ECG model (SynthConfig fields; docs/downstream.md, Positive and negative control)
WALL_QRS_WIDENING = 0.2   # QRS widening per SD of wall thickness: the marker pretraining can learn
NUISANCE = dict(ecg_strain_scale=0.0, ecg_qrs_gain_sd=0.35, ecg_t_gain_sd=0.4, ecg_axis_sd_deg=25.0)


def world(seed: int = 0, patients: int = 160, ecg_patients: int = 960, strength: float = 1.0) -> dict[str, Any]:
    """SynthConfig and IngestConfig fields: one study of four 2-3.3 s cines per echo patient, clips stored at 64 px;
    ``ecg_patients`` with 1-2 ECG records each (the benchmark's patients)."""
    synth = dict(seed=seed, patients=patients, ecg_patients=ecg_patients, studies_min=1, studies_max=1,
                 cines_min=4, cines_max=4, rows=240, cols=320, frames_min=60, frames_max=100, ecg_records_min=1,
                 ecg_records_max=2, defect_fraction=0.0, ecg_latent_strength=strength,
                 ecg_wall_qrs_widening=WALL_QRS_WIDENING, **NUISANCE)
    return {"synth": synth, "ingest": dict(echo_size=PAIRS.image_size, batch_files=16)}


def recipe(epochs: int = 40, shuffle_pairs: bool = False, **overrides: Any) -> dict[str, Any]:
    """PretrainConfig fields: locked tower, standardised features, study-level positives, [CLS] terms only."""
    return dict(epochs=epochs, batch_size=64, pairs=PAIRS, echo_tower="locked", cls_positive="study", p_shift=0.0,
                loss=LossConfig(w_token=0.0, w_align=0.0, warmup_epochs=epochs), shuffle_pairs=shuffle_pairs,
                **overrides)


def benchmark(fractions: list[float] | None = None, label_seeds: int = 3, epochs: int = 10,
              **overrides: Any) -> dict[str, Any]:
    """BenchmarkConfig fields (besides data, output, pretrained)."""
    return dict(dataset="synthetic", labels="echo-measurements", preset="tiny", leads=["II"],
                models=["eee", "eee_random", "xresnet1d50"], label_fractions=list(fractions or FRACTIONS),
                label_seeds=label_seeds, epochs=epochs, min_steps=150, crops_per_record=4, n_bootstrap=500,
                **overrides)
