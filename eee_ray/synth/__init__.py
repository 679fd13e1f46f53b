"""Synthetic MIMIC-like data (docs/contract.md, Synthetic data): echo cines with a burned-in ECG strip, 12-lead ECG
records, labels and the ground truth that links them through per-patient latent structure."""

from eee_ray.synth.config import SynthConfig
from eee_ray.synth.dicom_writer import write_us_multiframe
from eee_ray.synth.generate import generate

__all__ = ["SynthConfig", "generate", "write_us_multiframe"]
