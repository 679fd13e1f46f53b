"""The benchmark's configuration: which data, which models, how they train (docs/contract.md, downstream)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eee_ray.config import MlflowConfig
from eee_ray.ecgdata.ptbxl import DEFAULT_LABELS
from eee_ray.ecgdata.records import SignalSpec
from eee_ray.ecgdata.windows import AGGREGATES
from eee_ray.errors import UserError

EXPERIMENT = "eee-benchmark"
MODEL_STRATEGIES: dict[str, tuple[str, ...]] = {
    "xresnet1d50": ("scratch",), "s4": ("scratch",), "st_mem": ("scratch",),
    "eee": ("finetune", "linear_probe"), "eee_random": ("finetune",),
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
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    crops_per_record: int = 4  # random training crops drawn from each record per epoch
    label_level: str = "category"  # category | code (MIMIC / synthetic)
    mapping: str = "official"  # official | json | paper-table2 | PATH
    labels_csv: str = ""
    ptbxl_labels: list[str] = field(default_factory=lambda: list(DEFAULT_LABELS))
    ptbxl_sample_rate: int = 100
    max_records: int = 0  # 0: all
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
        if not self.data:
            raise UserError("--data is required (a MIMIC-IV-ECG, PTB-XL or `eee-ray synth` folder)")
        if not Path(self.data).is_dir():
            raise UserError(f"--data folder not found: {self.data}")
        if self.dataset not in ("mimic", "ptbxl", "synthetic"):
            raise UserError(f"--dataset must be mimic, ptbxl or synthetic, not {self.dataset!r}")
        if self.aggregate not in AGGREGATES:
            raise UserError(f"--aggregate must be one of {', '.join(AGGREGATES)}")
        if self.preset not in ("paper", "tiny"):
            raise UserError(f"--preset must be paper or tiny, not {self.preset!r}")
        if self.epochs < 1:
            raise UserError("--epochs must be >= 1")
        if self.shard_records < 1:
            raise UserError("--shard-records must be >= 1")
        if self.pretrained and not Path(self.pretrained).is_file():
            raise UserError(f"pretrained encoder not found: {self.pretrained}")


def trial_name(combo: dict[str, str]) -> str:
    return f"{combo['model']}__{combo['leads']}__{combo['strategy']}"




