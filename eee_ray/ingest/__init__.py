"""DICOM echo cines -> echo clips + traced ECG in Parquet, on Ray Data (docs/contract.md, Ingest, paper section 3.1)."""

from eee_ray.ingest.config import IngestConfig
from eee_ray.ingest.pipeline import IngestSummary, read_clips, read_manifest, run_ingest
from eee_ray.ingest.trace import TraceConfig

__all__ = ["IngestConfig", "IngestSummary", "TraceConfig", "read_clips", "read_manifest", "run_ingest"]
