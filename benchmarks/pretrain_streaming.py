"""Pretraining input: the three places training samples can live between epochs, on the same clips: materialised
once in the object store (``load_pairs``; ``--pairs-store memory``), streamed from ``clips/`` every epoch
(``stream_pairs``; ``stream``) and the on-disk pairs cache built once (``pairs_cache``; ``disk``), plus the training
step they feed.

    python benchmarks/pretrain_streaming.py --clips INGEST_OUTPUT [--epochs 3] [--batch 8] [--image-size 112]

Prints one Markdown table: set-up time (split + materialise, or split + cache build), seconds per epoch of delivering
every training batch (collated, as a Train worker receives them), object-store bytes held by the training set, and the
tiny preset's CPU step on one batch for scale. The per-sample cost of building samples is what a GPU step has to
outlast for streaming to be free: it is printed as core-milliseconds per sample, beside the cache's bytes on disk
and a projection of a GPU step (FLOP count at an assumed throughput).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def epoch_seconds(ds, batch: int, epochs: int) -> tuple[float, int]:
    from eee_ray.pairs import Collate

    times, n = [], 0
    for e in range(epochs):
        t = time.perf_counter()
        n = 0
        for b in ds.iter_torch_batches(batch_size=batch, collate_fn=Collate(), drop_last=True,
                                       local_shuffle_buffer_size=4 * batch, local_shuffle_seed=e):
            n += len(b["ecg"])
        times.append(time.perf_counter() - t)
    return sum(times[1:]) / max(1, len(times) - 1) if len(times) > 1 else times[0], n


def step_seconds(batch: int, image: int) -> float:
    """The tiny preset's forward + loss + backward + AdamW on one synthetic batch, 1 thread (after a warm-up)."""
    import torch

    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from pretrain_throughput import make_batch, train_steps
    from eee_ray.models.eee import EEEModel, preset

    torch.set_num_threads(1)
    torch.manual_seed(0)
    return train_steps(EEEModel(preset("tiny")), make_batch(batch, image), steps=3)


GPU_TFLOPS = 200.0   # assumed achieved bf16 throughput of one data-centre GPU (about 20-40 % of an H100/H200's peak)


def step_gflop(preset_name: str, image: int) -> float:
    """Forward + backward GFLOP of one sample (T = 4 tokens) for a preset, counted by torch's FLOP counter."""
    import sys

    from torch.utils.flop_counter import FlopCounterMode

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from pretrain_throughput import make_batch
    from eee_ray.losses import LossConfig, pretraining_losses, weighted_total
    from eee_ray.models.eee import EEEModel, preset

    model, b = EEEModel(preset(preset_name)), make_batch(2, image)
    with FlopCounterMode(display=False) as counter:
        out = model(b["ecg"], b["echo"], b["pad_mask"])
        weighted_total(pretraining_losses(out, b["pad_mask"], b["m_shift"], b["study_id"], b["subject_id"],
                                          LossConfig()), LossConfig()).backward()
    return counter.get_total_flops() / 2 / 1e9


def main() -> None:
    import ray

    from eee_ray.pairs import PairsConfig, load_pairs, stream_pairs
    from eee_ray.runtime import LOCAL_ENV_VARS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", required=True, help="ingest output folder (or its clips/)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=112)
    ap.add_argument("--num-cpus", type=int, default=2)
    args = ap.parse_args()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", **LOCAL_ENV_VARS}})
    ray.data.DataContext.get_current().enable_progress_bars = False
    cfg = PairsConfig(image_size=args.image_size)

    rows = []
    t = time.perf_counter()
    train, _, _ = load_pairs(args.clips, cfg, 0.25, 0)
    setup = time.perf_counter() - t
    per_epoch, n = epoch_seconds(train, args.batch, args.epochs)
    rows.append(("materialised (load_pairs)", setup, per_epoch, n, train.size_bytes()))
    del train

    t = time.perf_counter()
    data = stream_pairs(args.clips, cfg, 0.25, 0, max_heldout=2000)
    setup = time.perf_counter() - t
    per_epoch_s, n_s = epoch_seconds(data.train, args.batch, args.epochs)
    rows.append(("streaming (stream_pairs)", setup, per_epoch_s, n_s, 0))

    import tempfile

    from eee_ray.pairs_cache import cache_key, cached_train_set

    with tempfile.TemporaryDirectory(prefix="pairs-cache-") as tmp:
        t = time.perf_counter()
        data = stream_pairs(args.clips, cfg, 0.25, 0, max_heldout=2000)
        cached, _ = cached_train_set(data.train, tmp, cache_key(args.clips, cfg, data.heldout_patients), data.n_train)
        setup = time.perf_counter() - t
        per_epoch_c, n_c = epoch_seconds(cached, args.batch, args.epochs)
        disk = sum(f.stat().st_size for f in Path(tmp).rglob("*.parquet"))
    rows.append(("disk cache (pairs_cache)", setup, per_epoch_c, n_c, 0))

    step = step_seconds(args.batch, args.image_size)
    print(f"\n{n} training samples a epoch, batch {args.batch}, {args.image_size} px, {args.num_cpus} CPUs, "
          f"{args.epochs} epochs (per epoch: mean of epochs 2..{args.epochs})\n")
    print("| input | set-up s | s / epoch | ratio | samples / epoch | training set in object store | on disk |")
    print("|---|---|---|---|---|---|---|")
    base = rows[0][2]
    for name, setup, pe, k, size in rows:
        on_disk = f"{disk / 2**20:.1f} MiB" if name.startswith("disk") else "-"
        print(f"| {name} | {setup:.1f} | {pe:.2f} | {pe / base:.2f} | {k} | {size / 2**20:.1f} MiB | {on_disk} |")
    build_ms = 1000 * per_epoch_s * args.num_cpus / max(1, n_s)
    print(f"\nstreaming builds a sample in {build_ms:.1f} core-ms ({args.num_cpus} CPUs); "
          f"tiny preset CPU step: {1000 * step / args.batch:.1f} ms a sample ({1000 * step:.0f} ms a batch of "
          f"{args.batch}, 1 thread)")
    read_ms = 1000 * per_epoch_c * args.num_cpus / max(1, n_c)
    print(f"the pairs cache delivers a sample in {read_ms:.1f} core-ms")
    print(f"\nprojection for one GPU at an assumed {GPU_TFLOPS:.0f} TFLOP/s achieved (bf16), T = 4 tokens:")
    print("| preset | GFLOP / sample (fwd + bwd) | GPU ms / sample | data CPUs per GPU to stream | to read the cache |")
    print("|---|---|---|---|---|")
    for name in ("tiny", "paper"):
        gflop = step_gflop(name, args.image_size)
        gpu_ms = gflop / GPU_TFLOPS   # GFLOP / (TFLOP/s) = ms
        print(f"| {name} | {gflop:.2f} | {gpu_ms:.3f} | {build_ms / gpu_ms:.0f} | {read_ms / gpu_ms:.1f} |")


if __name__ == "__main__":
    main()
