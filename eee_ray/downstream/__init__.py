"""The downstream benchmark: config, one trial, the Tune grid, the tables."""

from eee_ray.downstream.config import EXPERIMENT, MODEL_STRATEGIES, BenchmarkConfig, trial_name
from eee_ray.downstream.grid import run_benchmark, trial_grid
from eee_ray.downstream.report import DISPLAY, LEAD_DISPLAY, PAPER_TABLE3, RESULT_COLUMNS

__all__ = ["BenchmarkConfig", "DISPLAY", "EXPERIMENT", "LEAD_DISPLAY", "MODEL_STRATEGIES", "PAPER_TABLE3",
           "RESULT_COLUMNS", "run_benchmark", "trial_grid", "trial_name"]
