"""Pretraining throughput: clips/s of a training step (tiny and paper presets; a plain PyTorch loop against the same
loop under Ray Train with 1 and 2 workers) and the dual-margin loss, vectorised against a per-anchor loop, at
N = 1024, 4096, 8192 (time and peak memory). Prints Markdown tables; ratios are measured in the same run.

    python benchmarks/pretrain_throughput.py            # full table
    python benchmarks/pretrain_throughput.py --quick    # fewer steps, tiny preset and N <= 4096 only

Synthetic in-memory batches (T = 4 tokens of 0.5 s, 112 x 112 sub-clips), so only the step itself is timed.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import torch
import torch.nn.functional as F

from eee_ray.losses import MASK_VALUE, LossConfig, dual_margin_contrastive, pretraining_losses, weighted_total

T_TOKENS, IMAGE = 4, 112


def make_batch(batch: int, image: int = IMAGE) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"ecg": torch.randn(batch, T_TOKENS, 50, generator=g),
            "echo": torch.randint(0, 255, (batch, T_TOKENS, 8, image, image), generator=g, dtype=torch.uint8),
            "pad_mask": torch.zeros(batch, T_TOKENS, dtype=torch.bool),
            "m_shift": (torch.rand(batch, generator=g) < 0.3).long(),
            "study_id": torch.arange(batch) // 2, "subject_id": torch.arange(batch) // 4}


def train_steps(model, batch, steps: int, gather=None, world: int = 1) -> float:
    """Seconds per step (after one warm-up step) of forward + loss + backward + AdamW."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    cfg = LossConfig()
    t0 = 0.0
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        out = model(batch["ecg"], batch["echo"], batch["pad_mask"])
        terms = pretraining_losses(out, batch["pad_mask"], batch["m_shift"], batch["study_id"],
                                   batch["subject_id"], cfg, gather)
        opt.zero_grad()
        weighted_total(terms, cfg, contrastive_scale=world).backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def plain_loop(preset_name: str, batch: int, steps: int, threads: int) -> float:
    from eee_ray.models.eee import EEEModel, preset

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return batch / train_steps(EEEModel(preset(preset_name)), make_batch(batch), steps)


def _ray_worker(cfg: dict) -> float:
    import ray.train
    import ray.train.torch

    from eee_ray.models.eee import EEEModel, preset
    from eee_ray.pretrain import gather_with_grad

    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    world = ray.train.get_context().get_world_size()
    model = ray.train.torch.prepare_model(EEEModel(preset(cfg["preset"])))
    sec = train_steps(model, make_batch(cfg["batch"]), cfg["steps"], gather_with_grad if world > 1 else None, world)
    return world * cfg["batch"] / sec


def ray_loop(preset_name: str, batch: int, steps: int, workers: int, cpus: float, threads: int) -> float:
    import tempfile

    import ray.train
    from ray.train.torch import TorchTrainer

    from eee_ray.train_backend import torch_config

    trainer = TorchTrainer(_ray_worker, train_loop_config={"preset": preset_name, "batch": batch, "steps": steps,
                                                           "threads": threads},
                           scaling_config=ray.train.ScalingConfig(num_workers=workers,
                                                                  resources_per_worker={"CPU": cpus}),
                           torch_config=torch_config(),
                           run_config=ray.train.RunConfig(storage_path=tempfile.mkdtemp(prefix="eee-bench-")))
    return trainer.fit().return_value  # rank 0's return value


def naive_loss(f_a, f_b, ids, tau=0.07, m=0.5, m_same=0.2):
    """The same loss one anchor at a time (rows, then columns): what the vectorised version replaces."""
    a, b = F.normalize(f_a, dim=-1), F.normalize(f_b, dim=-1)
    n = a.shape[0]
    diag = (a * b).sum(1) / tau
    total = a.new_zeros(())
    for i in range(n):
        row = b @ a[i] / tau
        margin = torch.where(ids == ids[i], m_same, m) / tau
        keep = (row < diag[i]) & (row > diag[i] - margin)
        keep[i] = True
        total = total + torch.logsumexp(row.masked_fill(~keep, MASK_VALUE), 0) - diag[i]
    for j in range(n):
        col = a @ b[j] / tau
        margin = torch.where(ids == ids[j], m_same, m) / tau
        keep = (col < diag) & (col > diag - margin)
        keep[j] = True
        total = total + torch.logsumexp(col.masked_fill(~keep, MASK_VALUE), 0) - diag[j]
    return 0.5 * total / n


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def _rss_mib() -> float:
    return _status_mib("VmRSS:")


def _hwm_mib() -> float:
    return _status_mib("VmHWM:")


def _loss_case(kind: str, n: int, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    f_a = torch.randn(n, 128, generator=g, requires_grad=True)
    f_b = (f_a.detach() + 0.5 * torch.randn(n, 128, generator=g)).requires_grad_(True)
    ids = torch.randint(0, n // 8, (n,), generator=g)
    base = _rss_mib()
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) left over from imports
        f.write("5")
    fn = dual_margin_contrastive if kind == "vectorised" else naive_loss
    t0 = time.perf_counter()
    loss = fn(f_a, f_b, ids)
    loss.backward()
    sec = time.perf_counter() - t0
    peak = _hwm_mib() - base
    queue.put((sec, peak, float(loss)))


def loss_case(kind: str, n: int, threads: int) -> tuple[float, float, float]:
    """Time and peak resident-memory growth (Linux VmHWM) of forward + backward, each case in a fresh process."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_loss_case, args=(kind, n, threads, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch", type=int, default=8, help="clips per worker and step")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cpus = os.cpu_count() or 2
    presets = ["tiny"] if args.quick else ["tiny", "paper"]
    steps = {"tiny": 3 if args.quick else 10, "paper": 3}

    import ray

    from eee_ray.runtime import init_ray

    init_ray(num_cpus=cpus)
    print(f"## Training step throughput (clips/s), {cpus} CPU cores, batch {args.batch} per worker, "
          f"T = {T_TOKENS}, {IMAGE}x{IMAGE}\n")
    print("| preset | plain PyTorch | Ray Train 1 worker | Ray Train 2 workers | Ray 1w / plain | Ray 2w / plain |")
    print("|---|---|---|---|---|---|")
    for name in presets:
        plain = plain_loop(name, args.batch, steps[name], threads=cpus)
        one = ray_loop(name, args.batch, steps[name], workers=1, cpus=min(1.0, cpus - 1.0), threads=cpus)
        two = ray_loop(name, args.batch, steps[name], workers=2, cpus=min(1.0, (cpus - 1.0) / 2),
                       threads=max(1, cpus // 2))
        print(f"| {name} | {plain:.2f} | {one:.2f} | {two:.2f} | {one / plain:.2f} | {two / plain:.2f} |", flush=True)
    ray.shutdown()

    sizes = [1024, 4096] if args.quick else [1024, 4096, 8192]
    print("\n## Dual-margin loss, forward + backward, D = 128\n")
    print("| N | vectorised s | loop s | speed-up | vectorised peak MiB | loop peak MiB | |loss diff| |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        vs, vm, vl = loss_case("vectorised", n, cpus)
        ls, lm, ll = loss_case("loop", n, cpus)
        print(f"| {n} | {vs:.3f} | {ls:.2f} | {ls / vs:.0f}x | {vm:.0f} | {lm:.0f} | {abs(vl - ll):.1e} |", flush=True)


if __name__ == "__main__":
    main()
