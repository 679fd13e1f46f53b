"""The downstream benchmark: config, label subsets, one trial, the Tune grid, the tables.

Names are imported on first use (PEP 562): a Tune trial process unpickles ``downstream.train`` and should not pay for
the grid's imports (MLflow's model registry, the data readers) that only the driver needs.
"""

import importlib

_WHERE = {
    "BenchmarkConfig": "config", "EXPERIMENT": "config", "MODEL_STRATEGIES": "config", "trial_name": "config",
    "run_benchmark": "grid", "trial_grid": "grid",
    "DISPLAY": "report", "EFFICIENCY_COLUMNS": "report", "LEAD_DISPLAY": "report", "PAPER_TABLE3": "report",
    "RESULT_COLUMNS": "report",
    "choose_patients": "subsets",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
