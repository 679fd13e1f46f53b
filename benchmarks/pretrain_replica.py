"""Loss schedules and input scaling compared in a plain PyTorch replica of the pretraining step (no Ray).

The same model, pairs, misalignment, losses and held-out retrieval as ``eee-ray pretrain`` on one worker, in one
process with the clips in memory, so that a variant costs about a minute instead of several: a tool for choosing
among variants, whose winner is then measured through the real Ray Train path (benchmarks/pretrain_defaults.py).
Batches are drawn by a seeded shuffle of the training clips (Ray Data's block order differs), so its numbers are
close to, not equal to, a real run's.

Each variant prints one line per epoch: held-out Recall@1 both ways, mean rank (of N) with permutation p, the
spread of both towers ([CLS] mean cosine / effective rank), the within-length rank (the true match's rank among
the held-out clips of the query's length: what the embedding knows beyond the clip length, which both towers see
through the padding mask; benchmarks/retrieval_ceiling.py shows what the length alone is worth) and Recall@1 /
mean rank of the clips' mean token embedding instead of the [CLS].

    python benchmarks/pretrain_replica.py --clips runs/ingest --variants cls-tower default
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from eee_ray.collapse import spread_metrics
from eee_ray.losses import pretraining_losses, weighted_total
from eee_ray.models.eee import EEEModel
from eee_ray.pairs import PairsConfig, clip_to_sample, collate, misalign, split_patients
from eee_ray.pretrain import model_config
from eee_ray.recipes import pretrain_config
from eee_ray.retrieval import retrieval_metrics

FIXED = dict(pixel_norm="fixed", cls_position=True)   # fixed pixel scaling, [CLS] at position 0
# variant -> (recipe, fields on top); "_bucket": every batch holds clips of one length (replica only)
VARIANTS = {
    "paper-fixed": ("paper", FIXED),
    "paper-fixed+warmup5": ("paper", {**FIXED, "batch_size": 8, "loss": {"warmup_epochs": 5}}),
    "paper": ("paper", {}),                                                   # corrected scaling, paper's loss
    "paper+warmup5": ("paper", {"batch_size": 8, "loss": {"warmup_epochs": 5}}),
    "cls-tower": ("cls-tower", {}),                                           # the paper's echo readout
    "cls-tower+bucket": ("cls-tower", {"_bucket": True}),
    "default": ("default", {}),
    "default/pixel-clip": ("default", {"pixel_norm": "clip"}),        # each of its echo tower's three changes undone
    "default/vit-cls": ("default", {"vit_pool": "cls"}),
    "default/norm-none": ("default", {"vit_norm": "none"}),
    "default+bucket": ("default", {"_bucket": True}),
}
KEYS = ("ecg", "echo", "n_tokens", "subject_id", "study_id")


def load_samples(clips: Path, cfg: PairsConfig, limit: int | None = None) -> list[dict]:
    """The pairs samples of an ingest output, read in part order (the first ``limit`` when given)."""
    folder = clips / "clips" if (clips / "clips").is_dir() else clips
    out: list[dict] = []
    for part in sorted(folder.glob("*.parquet")):
        for row in pq.read_table(part).to_pylist():
            row["echo"] = np.asarray(row["echo"], dtype=np.uint8)
            out += clip_to_sample(row, cfg)
            if limit is not None and len(out) >= limit:
                return out
    return out


def batches(train: list[dict], size: int, bucket: bool, rng: random.Random) -> list[list[dict]]:
    """Shuffled batches of ``size`` clips; ``bucket``: every batch holds clips of one length (in tokens)."""
    rng.shuffle(train)
    if not bucket:
        return [train[i:i + size] for i in range(0, len(train) - size + 1, size)]
    groups: dict[int, list[dict]] = {}
    for s in train:
        groups.setdefault(int(s["n_tokens"]), []).append(s)
    out = [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]
    out = [b for b in out if len(b) >= 2]
    rng.shuffle(out)
    return out


def within_length_rank(ecg: np.ndarray, echo: np.ndarray, n_tokens: np.ndarray) -> tuple[float, float]:
    """Mean 1-based rank of the true echo among the held-out echoes of the query's length, and its chance level:
    what the embedding knows beyond the clip length (which both towers see through the padding mask)."""
    s = (ecg / np.linalg.norm(ecg, axis=1, keepdims=True)) @ (echo / np.linalg.norm(echo, axis=1, keepdims=True)).T
    same = n_tokens[:, None] == n_tokens[None, :]
    r = [(s[i][same[i]] >= s[i, i]).sum() for i in range(len(s))]
    return float(np.mean(r)), float(np.mean((same.sum(1) + 1) / 2))


def token_mean(tok: torch.Tensor, pad: torch.Tensor) -> np.ndarray:
    """The mean of a clip's valid token embeddings."""
    w = (~pad).unsqueeze(-1).float()
    return ((tok * w).sum(1) / w.sum(1)).numpy()


def run(samples: list[dict], name: str, seed: int, epochs: int, image_size: int = 112) -> None:
    recipe, fields = VARIANTS[name]
    fields = dict(fields)
    bucket = fields.pop("_bucket", False)
    cfg = pretrain_config(recipe, epochs=epochs, seed=seed, pairs={"image_size": image_size}, **fields)
    held = split_patients([s["subject_id"] for s in samples], cfg.heldout_fraction, seed)
    train = [s for s in samples if s["subject_id"] not in held]
    heldout = collate({k: [s[k] for s in samples if s["subject_id"] in held] for k in KEYS})
    torch.manual_seed(seed)
    model = EEEModel(model_config(cfg))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen, rng = torch.Generator().manual_seed(seed), random.Random(seed)
    t0 = time.time()
    print(f"== {name} (recipe {recipe}, {fields}), seed {seed}", flush=True)
    for epoch in range(1, epochs + 1):
        for chunk in batches(train, cfg.batch_size, bucket, rng):
            b = collate({k: [s[k] for s in chunk] for k in KEYS})
            ecg, pad, m_shift = misalign(b["ecg"], b["pad_mask"], cfg.p_shift, gen)
            out = model(ecg, b["echo"], pad)
            terms = pretraining_losses(out, pad, m_shift, b["study_id"], b["subject_id"], cfg.loss,
                                       warmup=cfg.loss.info_nce_at(epoch))
            opt.zero_grad()
            weighted_total(terms, cfg.loss).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
        model.eval()
        with torch.no_grad():
            o = model(heldout["ecg"], heldout["echo"], heldout["pad_mask"])
        model.train()
        emb = {"ecg": o["ecg_cls"].numpy(), "echo": o["echo_cls"].numpy()}
        m, s = retrieval_metrics(emb["ecg"], emb["echo"]), spread_metrics(emb)
        n = int(m["heldout_clips"])
        lengths = (~heldout["pad_mask"]).sum(1).numpy()
        wl, wl_chance = within_length_rank(emb["ecg"], emb["echo"], lengths)
        mask = heldout["pad_mask"]
        mt = retrieval_metrics(token_mean(o["ecg_tok"], mask), token_mean(o["echo_tok"], mask))
        print(f"epoch {epoch:2d} ({time.time() - t0:4.0f} s)  R@1 {m['ecg2echo_r1'] * n:.0f} / "
              f"{m['echo2ecg_r1'] * n:.0f} of {n}  mean rank {m['ecg2echo_mean_rank']:.1f} / {m['echo2ecg_mean_rank']:.1f} "
              f"(chance {m['chance_mean_rank']:.1f}, p {m['ecg2echo_p']:.4f} / {m['echo2ecg_p']:.4f})  "
              f"cos {s['ecg_mean_cos']:.2f} / {s['echo_mean_cos']:.2f}  erank {s['ecg_erank']:.1f} / "
              f"{s['echo_erank']:.1f}  within-length rank {wl:.1f} (chance {wl_chance:.1f})  token-mean R@1 "
              f"{mt['ecg2echo_r1'] * n:.0f} / {mt['echo2ecg_r1'] * n:.0f} mean rank {mt['ecg2echo_mean_rank']:.1f}",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", required=True, help="ingest output (holding clips/)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--image-size", type=int, default=112, help="sub-clip H = W (the learning test uses 64)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    samples = load_samples(Path(a.clips), PairsConfig(image_size=a.image_size))
    for name in a.variants:
        run(samples, name, a.seed, a.epochs, a.image_size)


if __name__ == "__main__":
    main()
