"""eee_ray: Echo-Enhanced ECG (EEE) on Ray.

Data flow, one package per step: synth -> ingest -> pairs -> pretrain -> benchmark -> analyze.
"""

__version__ = "0.1.0"
