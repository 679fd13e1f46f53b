"""The downstream benchmark: config, label subsets, one trial, the Tune grid, the tables."""

from eee_ray.downstream.config import EXPERIMENT, MODEL_STRATEGIES, BenchmarkConfig, trial_name
from eee_ray.downstream.grid import run_benchmark, trial_grid
from eee_ray.downstream.report import DISPLAY, EFFICIENCY_COLUMNS, LEAD_DISPLAY, PAPER_TABLE3, RESULT_COLUMNS
from eee_ray.downstream.subsets import choose_patients

__all__ = ["BenchmarkConfig", "DISPLAY", "EFFICIENCY_COLUMNS", "choose_patients", "EXPERIMENT", "LEAD_DISPLAY", "MODEL_STRATEGIES", "PAPER_TABLE3",
           "RESULT_COLUMNS", "run_benchmark", "trial_grid", "trial_name"]
