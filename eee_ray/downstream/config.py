"""The benchmark's configuration: which data, which models, how they train (docs/contract.md, downstream)."""

from __future__ import annotations

from dataclasses import dataclass, field

from eee_ray.config import MlflowConfig
from eee_ray.ecgdata.ptbxl import DEFAULT_LABELS
from eee_ray.ecgdata.records import SignalSpec
from eee_ray.ecgdata.windows import AGGREGATES
from eee_ray.errors import UserError

EXPERIMENT = "eee-benchmark"
MODEL_STRATEGIES: dict[str, tuple[str, ...]] = {
    "xresnet1d50": ("scratch",), "s4": ("scratch",), "st_mem": ("scratch",),
    "eee": ("finetune", "linear_probe"), "eee_random": ("finetune", "linear_probe"),
}
@dataclass
class BenchmarkConfig:
    dataset: str = "synthetic"  # mimic | ptbxl | synthetic
    data: str = ""
    output: str = "benchmark"
    prepared: str = ""  # prepared-signal store folder (default <output>/prepared); reused when inputs match
    shard_records: int = 1024  # records per store shard: one Ray Data task's memory (12 leads: 24 MB int16)
    pretrained: str = ""  # ecg_encoder.pt of `eee-ray pretrain`; without it `eee` is skipped
    models: list[str] = field(default_factory=list)  # empty: every model (eee only with a pretrained encoder)
    leads: list[str] = field(default_factory=lambda: ["II", "all"])
    strategies: list[str] = field(default_factory=list)  # empty: every strategy of each model
    preset: str = "paper"  # model size preset: paper | tiny
    epochs: int = 10
    min_steps: int = 0  # a trial makes at least this many optimiser steps (more epochs on a small label subset)
    batch_size: int = 64
    lr: float = 1e-3
    # EEE's linear head at the start (linear probe and fine-tuning): "default" (PyTorch's random init) or "zero"
    # (zero weights, biases at the labels' training log-odds). A random head on frozen features is a random
    # projection that ~150 steps at lr 1e-3 barely move, so its AUROC hardly depends on the labels; a zero head
    # points where the labels pull it, and sends no gradient into a fine-tuned encoder until it has learned a
    # direction.
    head_init: str = "zero"
    # Fine-tuning EEE: the encoder trains at lr x this, the head at lr (1: one rate, as in the paper). Protects
    # pretrained features from being overwritten by the gradients of a few labelled records through a head that has
    # not learned anything yet.
    encoder_lr_scale: float = 1.0
    weight_decay: float = 1e-2
    crops_per_record: int = 4  # random training crops drawn from each record per epoch
    labels: str = "icd"  # icd (diagnosis codes -> CCSR) | echo-measurements (MIMIC / synthetic)
    echo_measurements: str = ""  # structured_measurement table; empty: found beside the data
    measurement_mapping: str = ""  # YAML of names, severity words, thresholds; empty: the package's own
    # An ECG takes the findings of the nearest TTE of the same patient at most this many days away. LVEF and valve
    # disease change over months (treatment, decompensation); a month keeps the label describing the heart that
    # produced the ECG while still pairing the ECGs taken in the same episode of care as the echo.
    echo_window_days: float = 30.0
    label_level: str = "category"  # category | code (MIMIC / synthetic)
    mapping: str = "official"  # official | json | paper-table2 | PATH
    labels_csv: str = ""
    ptbxl_labels: list[str] = field(default_factory=lambda: list(DEFAULT_LABELS))
    ptbxl_sample_rate: int = 100
    max_records: int = 0  # 0: all
    label_fractions: list[float] = field(default_factory=lambda: [1.0])  # shares of the training patients (axis)
    label_seeds: int = 1  # subsets drawn per fraction below 1 (the spread over draws is reported)
    min_positives: int = 1  # labels with fewer positives in the usable records are dropped
    aggregate: str = "mean"  # per-record aggregation of window scores: mean | max
    n_bootstrap: int = 1000
    seed: int = 0
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # > 0: trials train on CUDA and are placed on GPU nodes only
    max_concurrent: int = 2
    num_cpus: int = 0  # local Ray size when none is running; 0: all cores
    signal: SignalSpec = field(default_factory=SignalSpec)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)

    def validate(self) -> None:
        """Checks that need no data read: a wrong option fails before Ray or MLflow start."""
        from eee_ray import storage

        if not self.data:
            raise UserError("--data is required (a MIMIC-IV-ECG, PTB-XL or `eee-ray synth` folder)")
        storage.check_dir(self.data, "--data")
        storage.check_bucket(self.output, "--output")
        storage.check_local(self.prepared, "--prepared", "the trials memory-map its shards")
        if self.head_init not in ("default", "zero"):
            raise UserError(f"--head-init must be default or zero, not {self.head_init!r}")
        if not 0.0 < self.encoder_lr_scale <= 1.0:
            raise UserError(f"--encoder-lr-scale must be in (0, 1], not {self.encoder_lr_scale}")
        if self.dataset not in ("mimic", "ptbxl", "synthetic"):
            raise UserError(f"--dataset must be mimic, ptbxl or synthetic, not {self.dataset!r}")
        if self.labels not in ("icd", "echo-measurements"):
            raise UserError(f"--labels must be icd or echo-measurements, not {self.labels!r}")
        if self.labels == "echo-measurements" and self.dataset == "ptbxl":
            raise UserError("--labels echo-measurements needs MIMIC-IV-ECG records (--dataset mimic or synthetic)")
        if self.echo_window_days <= 0:
            raise UserError("--echo-window-days must be > 0")
        if self.aggregate not in AGGREGATES:
            raise UserError(f"--aggregate must be one of {', '.join(AGGREGATES)}")
        if self.preset not in ("paper", "tiny"):
            raise UserError(f"--preset must be paper or tiny, not {self.preset!r}")
        if self.epochs < 1:
            raise UserError("--epochs must be >= 1")
        if self.shard_records < 1:
            raise UserError("--shard-records must be >= 1")
        if self.min_steps < 0:
            raise UserError("--min-steps must be >= 0")
        if not self.label_fractions or any(not 0.0 < f <= 1.0 for f in self.label_fractions):
            raise UserError(f"--label-fractions must be shares in (0, 1], not {self.label_fractions}")
        if self.label_seeds < 1:
            raise UserError("--label-seeds must be >= 1")
        if self.pretrained:
            storage.check_bucket(self.pretrained, "--pretrained")
            if not storage.is_file(self.pretrained):
                raise UserError(f"pretrained encoder not found: {self.pretrained}")


def trial_name(combo: dict) -> str:
    """``model__leads__strategy__lf<fraction>__s<label seed>`` (the trial folder and MLflow run name)."""
    return (f"{combo['model']}__{combo['leads']}__{combo['strategy']}"
            f"__lf{float(combo.get('label_fraction', 1.0)):g}__s{int(combo.get('label_seed', 0))}")
