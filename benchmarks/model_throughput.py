"""Training throughput of the downstream models: forward + backward samples/s and parameter counts per preset.

Each model sees its own window (2.5 s for XResNet1D50 / S4 / EEE, 10 s for ST-MEM), so the table also gives seconds
of ECG per second; ratios are against XResNet1D50 of the same preset, measured in the same run. The models are timed
round-robin for ``--rounds`` rounds and the best round counts, so a burst of load from other processes on a shared
machine hits all of them alike instead of one.

    python benchmarks/model_throughput.py --presets tiny --batch 16 --iters 5 --rounds 3
    python benchmarks/model_throughput.py --presets paper --batch 4 --iters 1 --rounds 2
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from eee_ray.models.registry import build_model, param_groups

FS = 100
ROWS = [  # (label, registry name, kwargs)
    ("xresnet1d50", "xresnet1d50", {}),
    ("s4", "s4", {}),
    ("st_mem", "st_mem", {}),
    ("eee finetune", "eee", {"strategy": "finetune"}),
    ("eee linear_probe", "eee", {"strategy": "linear_probe"}),
]


def train_step(model: nn.Module, n_leads: int, batch: int, device: str) -> Callable[[], None]:
    """One training step (forward, BCE, backward, AdamW step) on a fixed random batch, warmed up once."""
    model.to(device).train()
    opt = torch.optim.AdamW(param_groups(model, lr=1e-4, weight_decay=1e-4))
    x = torch.randn(batch, n_leads, model.window, device=device)
    y = torch.randint(0, 2, (batch, 20), device=device).float()

    def step() -> None:
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    return step


def timed(step: Callable[[], None], iters: int, device: str) -> float:
    """Seconds for ``iters`` steps."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "paper"])
    parser.add_argument("--leads", type=int, default=12)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = []
    for preset in args.presets:
        models = [build_model(name, args.leads, 20, preset, **kwargs) for _, name, kwargs in ROWS]
        steps = [train_step(m, args.leads, args.batch, args.device) for m in models]
        best = [float("inf")] * len(ROWS)
        for _ in tqdm(range(args.rounds), desc=f"preset {preset}"):
            for i, step in enumerate(steps):
                best[i] = min(best[i], timed(step, args.iters, args.device))
        for (label, _, _), model, seconds in zip(ROWS, models, best):
            n_params = sum(p.numel() for p in model.parameters())
            n_trainable = sum(p.numel() for p in model.trainable_parameters())
            results.append((preset, label, n_params, n_trainable, model.window, args.batch * args.iters / seconds))
    base = {preset: rate for preset, label, *_, rate in results if label == "xresnet1d50"}
    print(f"\n{args.device}, {args.threads} threads, {args.leads} leads, batch {args.batch}, best of {args.rounds} rounds "
          f"of {args.iters} steps\n")
    print("| preset | model | params | trainable | window | train samples/s | ECG s/s | vs XResNet1D50 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for preset, label, n_params, n_trainable, window, rate in results:
        print(f"| {preset} | {label} | {n_params:,} | {n_trainable:,} | {window} | {rate:.3g} | "
              f"{rate * window / FS:.3g} | {rate / base[preset]:.2f}x |")


if __name__ == "__main__":
    main()
