"""Which patients the control's pretraining leaves out, and what its held-out retrieval says (docs/results.md).

On a work folder of ``benchmarks/positive_control.py`` (its ``synth/``, ``ingest/`` and ``eval_patients.csv``), it
pretrains the control recipe (``eee_ray.positive_control.recipe``) once per seed and exclusion, pretraining only,
and prints the held-out ECG->echo retrieval at the end (mean rank against chance, permutation p) and every 8 epochs:

- ``eval``: the benchmark's val and test patients left out (what ``positive_control.py`` does);
- ``random``: as many echo patients left out, drawn at random (with the seed);
- ``other``: as many echo patients left out, drawn from those outside val and test;
- ``none``: every echo patient pretrains.

    python benchmarks/control_exclusion.py --workdir runs/control640 --exclude eval random other none --seeds 0 1

About 2.5 minutes a run on 2 cores for the 640-patient world.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from eee_ray.ingest import read_manifest
from eee_ray.positive_control import recipe
from eee_ray.pretrain import run_pretrain
from eee_ray.runtime import init_ray


def exclusion_list(kind: str, echo: np.ndarray, evaluated: np.ndarray, seed: int, path: Path) -> str:
    """The patient list for ``kind`` written to ``path`` ("" for ``none``)."""
    if kind == "none":
        return ""
    if kind == "eval":
        chosen = evaluated
    else:
        pool = echo if kind == "random" else np.setdiff1d(echo, evaluated)
        chosen = np.random.default_rng(seed).choice(pool, len(evaluated), replace=False)
    pd.DataFrame({"subject_id": np.sort(chosen)}).to_csv(path, index=False)
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="a work folder of benchmarks/positive_control.py")
    ap.add_argument("--exclude", nargs="+", default=["eval", "random", "other", "none"],
                    choices=["eval", "random", "other", "none"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=40)
    args = ap.parse_args()
    work = Path(args.workdir)
    manifest = read_manifest(work / "ingest")
    echo = np.unique(manifest.loc[manifest["status"] == "ok", "subject_id"].astype(int))
    evaluated = np.intersect1d(pd.read_csv(work / "eval_patients.csv")["subject_id"].astype(int), echo)
    init_ray(2)
    (work / "exclusion").mkdir(exist_ok=True)
    rows = []
    for kind in args.exclude:
        for seed in args.seeds:
            out = work / "exclusion" / f"{kind}-s{seed}"
            excl = exclusion_list(kind, echo, evaluated, seed, work / "exclusion" / f"{kind}-s{seed}.csv")
            if not (out / "metrics.json").is_file():
                run_pretrain(recipe(args.epochs, clips=str(work / "ingest"), output=str(out), seed=seed,
                                    exclude_patients=excl))
            m = json.loads((out / "metrics.json").read_text())
            every = [f"{h['ecg2echo_p']:.2f}" for h in m["history"] if h["epoch"] % 8 == 0]
            rows.append({"left out": kind, "seed": seed, "patients": len(echo) - int(m["excluded_patients"]),
                         "train clips": m["train_clips"], "held-out clips": m["heldout_clips"],
                         "mean rank / chance": f"{m['ecg2echo_mean_rank']:.1f} / {m['chance_mean_rank']:.1f}",
                         "p": f"{m['ecg2echo_p']:.3f}", "p every 8 epochs": " ".join(every)})
    table = pd.DataFrame(rows)
    print("| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns))
    for r in table.itertuples(index=False):
        print("| " + " | ".join(str(v) for v in r) + " |")


if __name__ == "__main__":
    main()
