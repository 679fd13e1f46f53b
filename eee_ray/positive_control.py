"""The positive and negative control of the downstream evidence: a synthetic world in which echo pretraining can
help, the pretraining recipe that learns it, and the benchmark that measures it.

World: 1280 patients have one echo study of two cines (pretraining), the ECG tree holds them plus ECG-only patients
(the benchmark) and many more ECG-only patients in the test split (a narrow test interval), and the labels are the
echo-measurement findings of the nearest TTE. The ECG carries the wall
thickness in a way that is real but hard to learn from a few labels: the wall widens the QRS (``WALL_QRS_WIDENING``
per SD), its voltage effect is small (``ecg_latent_strength`` 1) and buried in per-patient QRS and T amplitude
factors and axis rotations (electrode placement, habitus), and there is no strain pattern (no T inversion, which a
convolutional network picks up from one or two positive patients). Pretraining over the paired patients, whose echo
shows the wall directly, can find the QRS width among the nuisance; a few labelled patients can hardly.

Recipe: ``locked-study`` (``eee_ray.recipes``): the locked echo tower with standardised features, study-level [CLS]
positives, [CLS] terms only, plain InfoNCE (the recipe with which the ECG [CLS] learns wall thickness,
docs/pretraining.md). Its echo tower reads the still picture (the ViT [CLS] of the sub-clip's grey levels): the
default tower's motion input (each pixel minus its mean over the sub-clip) drops the walls that stand still, and
its features then show wall thickness at R^2 0.09 against 0.87 (``benchmarks/echo_view_structure.py``). The
negative control is the same run with ``shuffle_pairs``: each clip's ECG comes from another patient. The
benchmark's val and test patients never reach pretraining (``eval_patients``). Benchmark: lead II (the lead
pretraining saw), the pretrained encoder as linear probe and fine-tuned (zero-started head; fine-tuning trains the
encoder at a tenth of the head's learning rate), its random-init control
in both strategies, and XResNet1D50 from scratch, at several label fractions; the headline is ``HEADLINE_LABEL``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


RECIPE = "locked-study"  # its sub-clips are 64 px: the world's clips are stored at that size
IMAGE_SIZE = 64
FRACTIONS = [0.02, 0.05, 0.2, 1.0]
HEADLINE_LABEL = "lv_wall_ge_1.3cm"  # the finding whose latent the echo shows and the ECG carries (docs/downstream.md)
# the control world's ECG model (SynthConfig fields; docs/downstream.md, Positive and negative control)
WALL_QRS_WIDENING = 0.3   # QRS widening per SD of wall thickness: the marker pretraining can learn
NUISANCE = dict(ecg_strain_scale=0.0, ecg_qrs_gain_sd=0.35, ecg_t_gain_sd=0.4, ecg_axis_sd_deg=25.0)


# The benchmark's patients: 1280, the echo patients among them (train 60 %, val 15 %, test 25 %), and 1280 ECG-only
# patients more in the test split. MIMIC has far more patients with an ECG and a TTE report than with an echo cine;
# here they make the headline label's test set larger (narrow bootstrap intervals) without more labelled training
# patients (2 % of the training pool stays a handful) and without changing the rest of the world.
ECG_PATIENTS = 1280
# Every benchmark patient has an echo study. The clips of the val and test patients are left out of pretraining
# (``eval_patients``), which leaves about 890 pretraining patients. Fewer make the gain fragile: with 640 echo
# patients (387 left) the probe beats XResNet1D50 with intervals apart on one world seed of three, with 320 (191
# left) pretraining adds nothing (docs/results.md, positive and negative control).
ECHO_PATIENTS = 1280
EXTRA_TEST_PATIENTS = 1280


def world(seed: int = 0, patients: int = ECHO_PATIENTS, ecg_patients: int = ECG_PATIENTS, strength: float = 1.0,
          cines: int = 2, extra_test_patients: int = EXTRA_TEST_PATIENTS) -> dict[str, Any]:
    """SynthConfig and IngestConfig fields: one study of ``cines`` 2-3.3 s cines per echo patient, clips stored at
    64 px; ``ecg_patients`` with 1-2 ECG records each (the benchmark's patients; the echo patients among them) and
    ``extra_test_patients`` ECG-only patients in the test split."""
    synth = dict(seed=seed, patients=patients, ecg_patients=ecg_patients, extra_test_patients=extra_test_patients,
                 studies_min=1, studies_max=1,
                 cines_min=cines, cines_max=cines, rows=240, cols=320, frames_min=60, frames_max=100, ecg_records_min=1,
                 ecg_records_max=2, defect_fraction=0.0, ecg_latent_strength=strength,
                 ecg_wall_qrs_widening=WALL_QRS_WIDENING, **NUISANCE)
    return {"synth": synth, "ingest": dict(echo_size=IMAGE_SIZE, batch_files=16)}


def recipe(epochs: int = 40, shuffle_pairs: bool = False, **fields: Any):
    """The control's ``PretrainConfig``: the ``locked-study`` recipe with ``fields`` (clips, output, ...) on top."""
    from eee_ray.recipes import pretrain_config

    return pretrain_config(RECIPE, epochs=epochs, shuffle_pairs=shuffle_pairs, **fields)


def eval_patients(synth: str | Path, path: str | Path) -> Path:
    """Write to ``path`` the patients of the benchmark's val and test splits, for pretraining's
    ``exclude_patients``: their echo decides their labels, so pretraining on their echo-ECG pairs would let it see
    the test answers. The splits come from the benchmark's own record table (``read_table`` of the control's
    ``benchmark`` fields), the 60/20/20 fallback of a world too small for the Ext-ICD folds included."""
    from eee_ray.downstream import BenchmarkConfig
    from eee_ray.downstream.grid import read_table

    table, _, _ = read_table(BenchmarkConfig(data=str(synth), **benchmark()))
    held = sorted(set(table.loc[table["split"].isin(["val", "test"]), "patient_id"].astype(str)))
    pd.DataFrame({"subject_id": held}).to_csv(path, index=False)
    return Path(path)


def benchmark(fractions: list[float] | None = None, label_seeds: int = 3, epochs: int = 10,
              **overrides: Any) -> dict[str, Any]:
    """BenchmarkConfig fields (besides data, output, pretrained)."""
    fields = dict(dataset="synthetic", labels="echo-measurements", preset="tiny", leads=["II"],
                  models=["eee", "eee_random", "xresnet1d50"], label_fractions=list(fractions or FRACTIONS),
                  label_seeds=label_seeds, epochs=epochs, min_steps=150, crops_per_record=4, n_bootstrap=500,
                  head_init="zero", encoder_lr_scale=0.1)
    return {**fields, **overrides}


def label_results(bench_dir: str | Path, label: str = HEADLINE_LABEL, n_boot: int = 500) -> pd.DataFrame:
    """One row per trial of a benchmark with the ROC AUC of one label and its 95% bootstrap interval over the test
    records (from the trial's stored test scores), in the ``results.csv`` columns (``macro_auroc`` holds the
    label's AUROC), so that ``label_efficiency`` and ``pretraining_gain_line`` read it like the macro table, and
    the label's positive training patients of the trial's subset (``train_positive_patients``)."""
    from eee_ray.metrics import auroc_per_label, bootstrap_macro_auroc

    rows = []
    for trial in sorted((Path(bench_dir) / "trials").glob("*/test_outputs.npz")):
        meta = json.loads((trial.parent / "meta.json").read_text())
        metrics = json.loads((trial.parent / "metrics.json").read_text())
        if label not in meta["label_names"]:
            continue
        j = meta["label_names"].index(label)
        with np.load(trial) as z:
            y, s = z["y_true"][:, j:j + 1], z["y_score"][:, j:j + 1]
        lo, hi = bootstrap_macro_auroc(y, s, n_boot)
        per_label = pd.read_csv(trial.parent / "per_label.csv").set_index("label")
        train_pos = per_label["train_positive_patients"].get(label) if "train_positive_patients" in per_label else None
        rows.append({"model": meta["model"], "leads": metrics["leads"],
                     "strategy": meta["strategy"], "label_fraction": meta["label_fraction"],
                     "label_seed": meta["label_seed"], "macro_auroc": float(auroc_per_label(y, s)[0]),
                     "macro_auroc_ci_low": lo, "macro_auroc_ci_high": hi, "n_pos": int(y.sum()),
                     "n_train_records": metrics["n_train_records"],
                     "train_positive_patients": None if train_pos is None else int(train_pos)})
    return pd.DataFrame(rows)
