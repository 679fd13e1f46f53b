"""``eee-ray demo``: the whole chain on the embedded default, reusing every stage that is already done."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from eee_ray.errors import UserError

STAGES = ("synth", "ingest", "pretrain", "benchmark", "analyze")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", default="eee_workdir", help="where every stage writes (and MLflow's sqlite store)")
    p.add_argument("--patients", type=int, default=None, help="synthetic patients (default: the synth default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data set")
    p.add_argument("--pretrain-epochs", type=int, default=None, help="pretraining epochs (default: demo preset)")
    p.add_argument("--benchmark-epochs", type=int, default=None, help="benchmark epochs per trial")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for the local Ray (default: all)")
    p.add_argument("--redo", choices=STAGES, nargs="*", default=[],
                   help="stages to run again even when their output exists (their old output is moved aside)")


def run(args) -> int:
    from eee_ray.demo import DemoConfig, run_demo

    if args.patients is not None and args.patients < 4:
        raise UserError("--patients must be at least 4 (train, validation and test need different patients)")
    cfg = DemoConfig(workdir=str(Path(args.workdir).resolve()), patients=args.patients, seed=args.seed,
                     pretrain_epochs=args.pretrain_epochs, benchmark_epochs=args.benchmark_epochs,
                     num_cpus=args.num_cpus, redo=list(args.redo))
    t0 = time.time()
    run_demo(cfg)
    print(f"demo finished in {time.time() - t0:.0f} s")
    return 0
