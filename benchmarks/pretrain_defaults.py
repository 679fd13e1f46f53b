"""Does `eee-ray pretrain` learn with its defaults? Before / after on the same synthetic data, several seeds.

For each seed: `eee-ray synth --seed S --patients 30` and `eee-ray ingest` (kept in the work folder), then 10 epochs
of the tiny preset with each recipe and worker count, every other option at its default. Columns:

- ``before``: the earlier default: the paper's dual-margin loss from step 1, 16 clips per worker, echo pixels scaled
  by the fixed (x - 0.5) / 0.25 and the [CLS] with position 0 of the sinusoid table
  (``--recipe paper`` plus ``pixel_norm: fixed``, ``cls_position: true``);
- ``earlier``: the ``default`` recipe with the echo tower it had before (``pixel_norm: clip``, ``vit_pool: cls``,
  ``vit_norm: none``), which learned only the clip length (docs/pretraining.md);
- ``paper``: ``--recipe paper`` (the paper's loss from step 1, with the corrected input scaling and [CLS]);
- ``default``: no recipe option at all.

It prints one row per run (held-out Recall@1 both ways against chance, mean rank, permutation p, embedding spread,
the ``collapsed`` flag) and a summary per column: the share of runs that meet "Recall@1 >= 3 x chance and p < 0.01
in both directions". A finished run (its metrics.json) is reused, so the script can be run in pieces.

    python benchmarks/pretrain_defaults.py --workdir runs/defaults --seeds 201 202 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from eee_ray.collapse import verdict
from eee_ray.ingest import IngestConfig, run_ingest
from eee_ray.pretrain import run_pretrain
from eee_ray.recipes import pretrain_config
from eee_ray.runtime import init_ray
from eee_ray.synth import SynthConfig, generate

COLUMNS = {
    "before": dict(recipe="paper", pixel_norm="fixed", cls_position=True),
    "earlier": dict(recipe="default", pixel_norm="clip", vit_pool="cls", vit_norm="none"),
    "paper": dict(recipe="paper"),
    "default": dict(recipe="default"),
}
TARGET_RATIO = 3.0    # Recall@1 / chance, both directions
TARGET_P = 0.01       # permutation p of the mean rank, both directions


def make_data(work: Path, seed: int, patients: int) -> Path:
    root = work / f"seed{seed}"
    if not (root / "ingest" / "clips").is_dir():
        generate(root / "synth", SynthConfig(seed=seed, patients=patients), overwrite=True)
        run_ingest(IngestConfig(input=str(root / "synth" / "echo"), output=str(root / "ingest")))
    return root


def run_one(root: Path, column: str, workers: int, epochs: int) -> dict:
    out = root / f"{column}_w{workers}"
    if (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    fields = dict(COLUMNS[column])
    cfg = pretrain_config(fields.pop("recipe"), clips=str(root / "ingest"), output=str(out), epochs=epochs,
                          workers=workers, mlflow={"dir": str(root)}, **fields)
    t0 = time.time()
    m = run_pretrain(cfg)
    m["wall_s"] = time.time() - t0
    return m


def collapsed(m: dict) -> bool:
    """The collapse verdict of the current CollapseConfig on a run's final metrics (runs made before a threshold
    changed are judged alike)."""
    return bool(verdict(m, judge_retrieval=True))


def meets(m: dict) -> bool:
    return all(m[f"{d}_r1"] >= TARGET_RATIO * m["chance_r1"] - 1e-9 and m[f"{d}_p"] < TARGET_P
               for d in ("ecg2echo", "echo2ecg"))


def row(seed: int, column: str, workers: int, m: dict) -> str:
    n = int(m["heldout_clips"])
    return (f"| {seed} | {column} | {workers} | {m['ecg2echo_r1'] * n:.0f} / {m['echo2ecg_r1'] * n:.0f} of {n} "
            f"({m['ecg2echo_r1'] / m['chance_r1']:.1f}x / {m['echo2ecg_r1'] / m['chance_r1']:.1f}x) | "
            f"{m['ecg2echo_mean_rank']:.1f} / {m['echo2ecg_mean_rank']:.1f} ({m['chance_mean_rank']:.1f}) | "
            f"{m['ecg2echo_p']:.4f} / {m['echo2ecg_p']:.4f} | {m['ecg_mean_cos']:.2f} / {m['echo_mean_cos']:.2f} | "
            f"{m['ecg_erank']:.1f} / {m['echo_erank']:.1f} | {'yes' if collapsed(m) else 'no'} | "
            f"{'yes' if meets(m) else 'no'} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="runs/pretrain_defaults")
    ap.add_argument("--seeds", type=int, nargs="+", default=[201, 202], help="synthetic data seeds")
    ap.add_argument("--patients", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--columns", nargs="+", default=["before", "default"], choices=list(COLUMNS))
    ap.add_argument("--num-cpus", type=int, default=None)
    args = ap.parse_args()

    init_ray(args.num_cpus)
    work = Path(args.workdir).resolve()
    rows, results = [], {c: [] for c in args.columns}
    for seed in args.seeds:
        root = make_data(work, seed, args.patients)
        for workers in args.workers:
            for column in args.columns:
                m = run_one(root, column, workers, args.epochs)
                results[column].append(m)
                rows.append(row(seed, column, workers, m))
                print(rows[-1], flush=True)
    print("\n| seed | recipe | workers | Recall@1 hits ECG->echo / echo->ECG (x chance) | mean rank (chance) | p | "
          "mean cos ECG / echo | eff. rank ECG / echo | collapsed | meets target |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    for column, ms in results.items():
        ratios = [m[f"{d}_r1"] / m["chance_r1"] for m in ms for d in ("ecg2echo", "echo2ecg")]
        print(f"{column}: {sum(meets(m) for m in ms)} of {len(ms)} runs meet R@1 >= {TARGET_RATIO:g}x chance and "
              f"p < {TARGET_P:g} both ways; R@1 / chance {min(ratios):.1f}-{max(ratios):.1f}; "
              f"collapsed {sum(collapsed(m) for m in ms)} of {len(ms)}")


if __name__ == "__main__":
    main()
