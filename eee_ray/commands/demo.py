"""``eee-ray demo``: the whole chain on the embedded default, reusing every stage that is already done."""

from __future__ import annotations

import argparse
import time

from eee_ray.config import DeprecatedAlias
from eee_ray.demo import STAGES

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.argument_default = argparse.SUPPRESS  # an option not given leaves the dataclass value
    p.add_argument("--output", help="the work folder: every stage writes a sub-folder, and MLflow's sqlite store "
                                    "lives here (default eee_workdir)")
    p.add_argument("--workdir", dest="output", action=DeprecatedAlias, replacement="--output", help=argparse.SUPPRESS)
    p.add_argument("--world", choices=["control", "smoke"],
                   help="control (default): the positive-control world, where echo pretraining can help, with a "
                        "label-efficiency table and plot (docs/downstream.md); smoke: the small world that only "
                        "checks every stage runs")
    p.add_argument("--patients", type=int,
                   help="synthetic patients with echo (default: 640 on the control world, the smoke world's own)")
    p.add_argument("--seed", type=int, help="seed of the synthetic data set (default 0)")
    p.add_argument("--pretrain-epochs", dest="pretrain_epochs", type=int,
                   help="pretraining epochs (default: demo preset)")
    p.add_argument("--benchmark-epochs", dest="benchmark_epochs", type=int, help="benchmark epochs per trial")
    p.add_argument("--num-cpus", dest="num_cpus", type=int, help="CPUs for the local Ray (default: all)")
    p.add_argument("--redo", choices=STAGES, nargs="*",
                   help="stages to run again even when their output exists (their old output is moved aside)")
    p.add_argument("--config", metavar="FILE", help="YAML file with DemoConfig fields")


def run(args) -> int:
    from eee_ray.config import resolve_cli
    from eee_ray.demo import DemoConfig, run_demo

    cfg = resolve_cli(DemoConfig, args)
    t0 = time.time()
    run_demo(cfg)
    print(f"demo finished in {time.time() - t0:.0f} s")
    return 0
