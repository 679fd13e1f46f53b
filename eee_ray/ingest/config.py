"""The ingest stage's configuration (defaults from docs/contract.md, Ingest); resolved from defaults < ``--config``
YAML < CLI options."""

from __future__ import annotations

from dataclasses import dataclass, field

from eee_ray.config import MlflowConfig
from eee_ray.ingest.trace import TraceConfig

ECHO_STORAGES = ("tensor", "bytes")
EXPERIMENT = "eee-ingest"


@dataclass
class IngestConfig:
    input: str = ""
    output: str = ""
    num_cpus: int | None = None          # Ray CPUs to use (None: every CPU of the cluster)
    limit: int | None = None             # only the first N input files (in path order)
    qa_samples: int = 0                  # PNGs of first frames with the traced waveform and verdict
    trace_color: str = "paper"           # paper | auto (docs/contract.md, Ingest)
    echo_size: int = 224
    echo_storage: str = "tensor"         # tensor (contract default) | bytes: raw uint8, less CPU (schema.py says why)
    ecg_roi_fraction: float = 0.30       # bottom fraction of the frame that holds the ECG strip
    max_frames: int = 120                # more frames: too_many_frames (paper)
    max_pixels: int = 200_000_000        # Rows*Columns*Frames above this is refused from the header
    dct_min_ratio: float = 0.9           # DCT downscaling keeps the echo region >= ratio * echo_size pixels
    batch_files: int = 4                 # files per task call (one manifest/clips part file each)
    cpus_per_worker: float = 1.0
    trace: TraceConfig = field(default_factory=TraceConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)

    def validate(self) -> None:
        from eee_ray.errors import UserError

        from eee_ray import storage

        storage.check_dir(self.input, "--input")
        if not self.output:
            raise UserError("--output is required")
        storage.check_bucket(self.output, "--output")

        if self.trace_color not in ("paper", "auto"):
            raise UserError(f"trace_color must be 'paper' or 'auto', got {self.trace_color!r}")
        if self.echo_storage not in ECHO_STORAGES:
            raise UserError(f"echo_storage must be one of {', '.join(ECHO_STORAGES)}, got {self.echo_storage!r}")
        if not 0.0 < self.ecg_roi_fraction < 1.0:
            raise UserError(f"ecg_roi_fraction must lie in (0, 1), got {self.ecg_roi_fraction}")
        for name in ("echo_size", "max_frames", "max_pixels", "batch_files"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"limit must be >= 1, got {self.limit}")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise UserError(f"num_cpus must be >= 1, got {self.num_cpus}")
