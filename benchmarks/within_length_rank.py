"""What does a finished pretraining run know beyond the clip length? Held-out retrieval of its checkpoint, overall
and among clips of the query's own length.

Both towers see a clip's number of 0.5 s tokens through the padding mask, so an embedding that encodes only the
length already ranks the true match at about a third of chance on the default synthetic sets (1-3 tokens a clip;
benchmarks/retrieval_ceiling.py). This script embeds the held-out clips of each run (same split as the run) with
its final checkpoint and prints, per run: Recall@1 hits ECG->echo, the mean rank against chance, the share of
top-1 echoes of the query's length and of its patient (against their share among all clips), and the mean rank of
the true match among the held-out echoes of the query's length against chance there (the within-length rank).

    python benchmarks/within_length_rank.py runs/defaults/seed201/default_w1 runs/defaults/seed202/default_w1
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_replica import KEYS, load_samples  # noqa: E402

from eee_ray.config import from_dict  # noqa: E402
from eee_ray.models.eee import EEEModel, ModelConfig  # noqa: E402
from eee_ray.pairs import PairsConfig, collate, split_patients  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    print("| run | Recall@1 hits ECG->echo | mean rank (chance) | top-1 same length (all) | top-1 same patient (all) "
          "| within-length rank (chance) |\n|---|---|---|---|---|---|")
    for run in sys.argv[1:]:
        ck = torch.load(Path(run) / "checkpoints" / "checkpoint.pt", weights_only=True)
        cfg = ck["config"]
        samples = load_samples(Path(cfg["clips"]), PairsConfig(**cfg["pairs"]))
        held = split_patients([s["subject_id"] for s in samples], cfg["heldout_fraction"], cfg["seed"])
        b = collate({k: [s[k] for s in samples if s["subject_id"] in held] for k in KEYS})
        model = EEEModel(from_dict(ModelConfig, ck["model_config"]))
        model.load_state_dict(ck["model"])
        model.eval()
        with torch.no_grad():
            o = model(b["ecg"], b["echo"], b["pad_mask"])
        s = (F.normalize(o["ecg_cls"], dim=-1) @ F.normalize(o["echo_cls"], dim=-1).T).numpy()
        n = len(s)
        length, sid = (~b["pad_mask"]).sum(1).numpy(), b["subject_id"].numpy()
        rank = (s >= s.diagonal()[:, None]).sum(1)
        same_len, same_pat = length[:, None] == length[None, :], sid[:, None] == sid[None, :]
        within = np.array([(s[i][same_len[i]] >= s[i, i]).sum() for i in range(n)])
        top = s.argmax(1)
        print(f"| {Path(run).parent.name}/{Path(run).name} | {(rank == 1).sum()} of {n} | {rank.mean():.1f} "
              f"({(n + 1) / 2:.1f}) | {(length[top] == length).mean():.2f} ({same_len.mean():.2f}) | "
              f"{(sid[top] == sid).mean():.2f} ({same_pat.mean():.2f}) | {within.mean():.1f} "
              f"({((same_len.sum(1) + 1) / 2).mean():.1f}) |", flush=True)


if __name__ == "__main__":
    main()
