"""How spread out are the towers' embeddings before any training? Earlier vs corrected input scaling and [CLS].

Reads the clips of an ingest output (no Ray), builds the tiny model at several seeds with

- echo pixels scaled by the fixed (x - 0.5) / 0.25 (``pixel_norm: fixed``) or each sub-clip standardised by its
  own mean and std (``clip``, the presets' setting);
- the [CLS] with or without row 0 of the sinusoid position table (``cls_position``; without: the presets' setting),

and prints the mean off-diagonal cosine and the effective rank (eee_ray/collapse.py) of the ECG [CLS], the echo
[CLS] and the echo ViT's per-sub-clip [CLS] over the clips, plus the echo pixel statistics.

    python benchmarks/init_spread.py --clips runs/ingest --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from eee_ray.collapse import embedding_spread
from eee_ray.models.eee import EEEModel, preset
from eee_ray.pairs import PairsConfig, collate
from pretrain_replica import load_samples  # the same samples the replica trains on (benchmarks/ is on sys.path)

VARIANTS = {"fixed, [CLS] at position 0": ("fixed", True), "per sub-clip, [CLS] at position 0": ("clip", True),
            "fixed, [CLS] without position": ("fixed", False), "per sub-clip, [CLS] without position": ("clip", False)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", required=True, help="ingest output (holding clips/)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--clips-max", type=int, default=64, help="clips embedded (the first ones in part order)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    pairs = PairsConfig()
    samples = load_samples(Path(a.clips), pairs, a.clips_max)
    b = collate({k: [s[k] for s in samples] for k in ("ecg", "echo", "n_tokens", "subject_id", "study_id")})
    sub = b["echo"][~b["pad_mask"]]
    px = sub.float() / 255.0
    print(f"{len(samples)} clips, {len(sub)} sub-clips; echo pixels / 255: mean {px.mean():.3f}, std {px.std():.3f}")
    print("\n| echo pixel scaling, [CLS] | seed | ECG [CLS] mean cos / eff. rank | echo [CLS] "
          "| echo ViT [CLS] (sub-clips) |")
    print("|---|---|---|---|---|")
    for name, (pixel_norm, cls_position) in VARIANTS.items():
        for seed in a.seeds:
            torch.manual_seed(seed)
            cfg = dataclasses.replace(preset("tiny", image_size=pairs.image_size), pixel_norm=pixel_norm,
                                      cls_position=cls_position)
            model = EEEModel(cfg).eval()
            with torch.no_grad():
                out = model(b["ecg"], b["echo"], b["pad_mask"])
                vit = model.echo.vit(sub)
            cells = [embedding_spread(x.numpy()) for x in (out["ecg_cls"], out["echo_cls"], vit)]
            print(f"| {name} | {seed} | " + " | ".join(f"{c:.3f} / {r:.2f}" for c, r in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
