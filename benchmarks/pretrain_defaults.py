"""Does `eee-ray pretrain` learn with its defaults? Before / after on the same synthetic data, several seeds.

For each seed: `eee-ray synth --seed S --patients 30` and `eee-ray ingest` (kept in the work folder), then 10 epochs
of the tiny preset with each recipe and worker count, every other option at its default. Columns:

- ``before``: the earlier default: the paper's dual-margin loss from step 1, 16 clips per worker, echo pixels scaled
  by the fixed (x - 0.5) / 0.25 and the [CLS] with position 0 of the sinusoid table
  (``--recipe paper`` plus ``pixel_norm: fixed``, ``cls_position: true``);
- ``cls-tower``: ``--recipe cls-tower``, the default with the paper's echo readout (``pixel_norm: clip``,
  ``vit_pool: cls``, ``vit_norm: none``), which learns only the clip length (docs/pretraining.md);
- ``paper``: ``--recipe paper`` (the paper's loss from step 1, with the corrected input scaling and [CLS]);
- ``default``: no recipe option at all.

It prints one row per run (held-out Recall@1 both ways against chance, mean rank, permutation p, embedding spread,
the ``collapsed`` flag) and a summary per column: the share of runs that meet "Recall@1 >= 3 x chance and p < 0.01
in both directions". A finished run (its metrics.json) is reused, so the script can be run in pieces.

    python benchmarks/pretrain_defaults.py --workdir runs/defaults --seeds 201 202 --workers 1 2
    python benchmarks/pretrain_defaults.py --workdir runs/w30 --data-seed 11 --small-frames --seeds 0 1 2 --workers 1

The second form is the learning test's world (tests/test_pretrain.py) with pretraining seeds 0-2.
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
    "cls-tower": dict(recipe="cls-tower"),
    "paper": dict(recipe="paper"),
    "default": dict(recipe="default"),
}
TARGET_RATIO = 3.0    # Recall@1 / chance, both directions
TARGET_P = 0.01       # permutation p of the mean rank, both directions


# --small-frames: the learning test's world (tests/test_pretrain.py): 240x320 frames, one ECG record per patient
SMALL = dict(rows=240, cols=320, ecg_records_min=1, ecg_records_max=1, defect_fraction=0.0)


def make_data(work: Path, seed: int, patients: int, small: bool = False) -> Path:
    root = work / f"seed{seed}"
    if not (root / "ingest" / "clips").is_dir():
        extra = dict(SMALL, ecg_patients=patients) if small else {}
        generate(root / "synth", SynthConfig(seed=seed, patients=patients, **extra), overwrite=True)
        run_ingest(IngestConfig(input=str(root / "synth" / "echo"), output=str(root / "ingest")))
    return root


def run_one(root: Path, column: str, workers: int, epochs: int, seed: int = 0) -> dict:
    out = root / (f"{column}_w{workers}" if seed == 0 else f"{column}_w{workers}_s{seed}")
    if (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    fields = dict(COLUMNS[column])
    cfg = pretrain_config(fields.pop("recipe"), clips=str(root / "ingest"), output=str(out), epochs=epochs,
                          workers=workers, seed=seed, mlflow={"dir": str(root)}, **fields)
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
    ap.add_argument("--seeds", type=int, nargs="+", default=[201, 202],
                    help="synthetic data seeds; with --data-seed, pretraining seeds on that one data set")
    ap.add_argument("--data-seed", type=int, default=None, help="one synthetic data set for every run")
    ap.add_argument("--small-frames", action="store_true", help="the learning test's world: 240x320 frames, one "
                    "ECG record per patient, no defective cines")
    ap.add_argument("--patients", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--columns", nargs="+", default=["cls-tower", "default"], choices=list(COLUMNS))
    ap.add_argument("--num-cpus", type=int, default=None)
    args = ap.parse_args()

    init_ray(args.num_cpus)
    work = Path(args.workdir).resolve()
    rows, results = [], {c: [] for c in args.columns}
    for seed in args.seeds:
        data_seed, train_seed = (seed, 0) if args.data_seed is None else (args.data_seed, seed)
        root = make_data(work, data_seed, args.patients, args.small_frames)
        for workers in args.workers:
            for column in args.columns:
                m = run_one(root, column, workers, args.epochs, train_seed)
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
