"""Downstream ECG data: MIMIC-IV-ECG / synthetic / PTB-XL readers, ICD-10 -> CCSR labels, the shared 10 s @ 100 Hz
data set, and the crop / sliding-window logic the benchmark trains and evaluates with."""

from eee_ray.ecgdata.records import CANONICAL_LEADS, LEAD_CONFIGS, ECGDataset, SignalSpec, build_dataset, lead_names

__all__ = ["CANONICAL_LEADS", "LEAD_CONFIGS", "ECGDataset", "SignalSpec", "build_dataset", "lead_names"]
