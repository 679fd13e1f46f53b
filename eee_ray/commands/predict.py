"""`eee-ray predict`: per-label structural heart disease probabilities from ECGs (Ray Data), one column per label."""

from __future__ import annotations

import argparse

from eee_ray.commands.embed import add_arguments, run_mode

__all__ = ["add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    return run_mode(args, "predict")
