"""Can the echo tower read the beat timing? The contraction course of each sub-clip, read from its pixels and from
the echo ViT.

From the synthetic ground truth (each cine's R peaks, and the generator's ``contraction``), every sub-clip of an
ingested set gets its target: the ventricle's contraction at its 8 frames, minus their mean (the course within the
sub-clip, which is what it shares with its ECG token's beat timing). Held-out R^2 (patients split 2:1) of:

- a ridge read of the pixels (8x8-pooled frames, or each frame's mean), per-sub-clip scaled (``pixel_norm`` clip);
- a ridge read of the ViT's output at its seeded init, read off its [CLS] or as the patch tokens' mean per time slot;
  and of a pretraining checkpoint's ViT (``--checkpoint``);
- the ViT trained on the target directly (a linear head, MSE, AdamW lr 1e-3, 16 sub-clips a step) for ``--steps``
  steps (130: the steps of 10 default epochs on one worker), read off its [CLS] or its time slots.

    python benchmarks/echo_readout.py --synth runs/s101/synth --clips runs/s101/ingest \\
        --checkpoint runs/pretrain/checkpoints/checkpoint.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_replica import load_samples  # noqa: E402

from eee_ray.config import from_dict  # noqa: E402
from eee_ray.models.echo_encoder import TubeletViT, normalize_pixels  # noqa: E402
from eee_ray.models.eee import EEEModel, ModelConfig, preset  # noqa: E402
from eee_ray.pairs import PairsConfig  # noqa: E402
from eee_ray.synth.echo import contraction  # noqa: E402


def targets(synth: Path, clips: Path) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """uint8 sub-clips (N, 8, H, W), their contraction at each frame (N, 8) and their patients (N,)."""
    cfg = PairsConfig()
    truth = pd.read_parquet(synth / "truth" / "cines.parquet", columns=["path", "r_peaks_ms"]).set_index("path")
    folder = clips / "clips" if (clips / "clips").is_dir() else clips
    meta = {r["path"]: r for f in folder.glob("*.parquet")
            for r in pq.read_table(f, columns=["path", "frame_time_ms", "n_frames"]).to_pylist()}
    x, y, g = [], [], []
    for s in load_samples(clips, cfg):
        m = meta[s["path"]]
        dt = m["frame_time_ms"] / 1000.0
        peaks = np.sort(np.asarray(truth.loc[s["path"], "r_peaks_ms"])) / 1000.0
        for t in range(s["n_tokens"]):
            instants = (t + (np.arange(cfg.frames_per_token) + 0.5) / cfg.frames_per_token) * cfg.token_len / \
                cfg.sample_rate
            idx = np.clip(np.floor(instants / dt).astype(int), 0, m["n_frames"] - 1)   # as clip_to_sample picks
            y.append(contraction(idx * dt, peaks))
            x.append(s["echo"][t])
            g.append(s["subject_id"])
    return torch.from_numpy(np.stack(x)), np.stack(y), np.array(g)


def ridge_r2(f: np.ndarray, t: np.ndarray, test: np.ndarray, lam: float) -> float:
    f = (f - f[~test].mean(0)) / (f[~test].std(0) + 1e-6)
    a = f[~test]
    w = np.linalg.solve(a.T @ a + lam * len(a) * np.eye(a.shape[1]), a.T @ (t[~test] - t[~test].mean(0)))
    pred = f[test] @ w + t[~test].mean(0)
    return float(1 - ((pred - t[test]) ** 2).sum() / ((t[test] - t[test].mean(0)) ** 2).sum())


def vit_out(vit: TubeletViT, x: torch.Tensor, pool: str) -> torch.Tensor:
    """The ViT's last layer read off its [CLS] or as the patch tokens' mean per time slot (concatenated)."""
    z = vit.embed(normalize_pixels(x, vit.pixel_norm).unsqueeze(1)).flatten(2).transpose(1, 2)
    h = vit.norm(vit.blocks(torch.cat([vit.cls.expand(z.shape[0], -1, -1), z], 1) + vit.pos))
    return h[:, 0] if pool == "cls" else h[:, 1:].reshape(len(h), vit.n_slots, -1, h.shape[-1]).mean(2).flatten(1)


def trained_r2(x: torch.Tensor, t: np.ndarray, test: np.ndarray, pool: str, steps: int) -> float:
    torch.manual_seed(0)
    mc = preset("tiny")
    vit = TubeletViT(mc.frames, x.shape[-1], tuple(mc.tubelet), mc.d_vit, mc.vit_layers, mc.vit_heads, mc.vit_d_ff,
                     mc.dropout, "clip", "cls")
    head = torch.nn.Linear(mc.d_vit * (1 if pool == "cls" else vit.n_slots), t.shape[1])
    opt = torch.optim.AdamW(list(vit.parameters()) + list(head.parameters()), lr=1e-3, weight_decay=0.05)
    train, rng, target = np.nonzero(~test)[0], np.random.default_rng(1), torch.from_numpy(t).float()
    for _ in range(steps):
        i = torch.from_numpy(rng.choice(train, 16, replace=False))
        loss = ((head(vit_out(vit, x[i], pool)) - target[i]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    vit.eval()
    with torch.no_grad():
        pred = head(vit_out(vit, x[torch.from_numpy(np.nonzero(test)[0])], pool)).numpy()
    return float(1 - ((pred - t[test]) ** 2).sum() / ((t[test] - t[test].mean(0)) ** 2).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synth", required=True)
    ap.add_argument("--clips", required=True)
    ap.add_argument("--checkpoint", default="", help="a pretraining checkpoint.pt whose ViT to read too")
    ap.add_argument("--steps", type=int, default=130)
    a = ap.parse_args()
    torch.set_num_threads(1)
    x, y, g = targets(Path(a.synth), Path(a.clips))
    course = y - y.mean(1, keepdims=True)
    patients = np.unique(g)
    test = np.isin(g, np.random.default_rng(0).choice(patients, len(patients) // 3, replace=False))
    px = normalize_pixels(x, "clip")
    print(f"{len(x)} sub-clips ({test.sum()} held out); contraction course sd {course.std():.2f}")
    print("| read of the contraction course | held-out R^2 |\n|---|---|")
    pooled = torch.nn.functional.avg_pool2d(px, 8).flatten(1).numpy()
    print(f"| pixels, 8x8-pooled frames (ridge) | {ridge_r2(pooled, course, test, 0.1):.2f} |")
    print(f"| pixels, each frame's mean (ridge) | {ridge_r2(px.mean((2, 3)).numpy(), course, test, 0.01):.2f} |")
    torch.manual_seed(0)
    vits = [("ViT at init", EEEModel(preset("tiny", image_size=x.shape[-1])).echo.vit)]
    if a.checkpoint:
        ck = torch.load(a.checkpoint, weights_only=True)
        model = EEEModel(from_dict(ModelConfig, ck["model_config"]))
        model.load_state_dict(ck["model"])
        vits.append((f"ViT of {Path(a.checkpoint).parent.parent.name}", model.echo.vit))
    for name, vit in vits:
        vit.eval()
        with torch.no_grad():
            for pool in ("cls", "slots"):
                print(f"| {name}, {pool} (ridge) | {ridge_r2(vit_out(vit, x, pool).numpy(), course, test, 1.0):.2f} |")
    for pool in ("cls", "slots"):
        print(f"| ViT trained on it for {a.steps} steps, {pool} | {trained_r2(x, course, test, pool, a.steps):.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
