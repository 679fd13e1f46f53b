"""Does pretraining put echo structure into the ECG embedding? (docs/pretraining.md)

Runs the real chain (synth -> ingest -> ``run_pretrain`` under Ray Train) with three recipes on one synthetic data set
and probes the frozen ECG [CLS] of each for the echo latents (ridge on patient means, fitted on the training
patients, R^2 on the held-out patients; ``tests/probe.py``), against the same encoder at its random init:

- ``paper``: both towers trained, [CLS] positives = the clip's own echo (the paper's pairing), token + [CLS] +
  alignment terms; plain InfoNCE for the first half, then the dual-margin loss.
- ``locked+study``: the ``locked-study`` recipe (eee_ray/recipes.py): echo tower locked at its seeded init, its
  features standardised per dimension, [CLS] positives = another clip of the same study, [CLS] terms only, plain
  InfoNCE, no shifted samples (without the alignment term they would only be left out).
- ``locked+study raw``: the same with the locked tower's raw features (``--echo-features raw``).

    python benchmarks/structure_probe.py --workdir runs/probe --patients 160 --strength 2 --seeds 0 1 2

About 10 minutes per seed for ``paper`` on 2 cores, 1-2 minutes for the locked recipes at 40 epochs (plus about
2 minutes to make the data once).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from eee_ray.ingest import IngestConfig, read_clips, run_ingest  # noqa: E402
from eee_ray.pairs import build_pairs  # noqa: E402
from eee_ray.pretrain import run_pretrain  # noqa: E402
from eee_ray.recipes import pretrain_config  # noqa: E402
from eee_ray.runtime import init_ray  # noqa: E402
from eee_ray.synth import SynthConfig, generate  # noqa: E402
from eee_ray.synth.labels import LATENTS  # noqa: E402
from probe import PROBE_PAIRS, heldout_r2, pretrained_and_init, structure_world  # noqa: E402

def make_data(work: Path, patients: int, strength: float, synth_seed: int) -> Path:
    if not (work / "ingest" / "clips").is_dir():
        world = structure_world(synth_seed, patients, strength)
        generate(work / "synth", SynthConfig(**world["synth"]), overwrite=True)
        run_ingest(IngestConfig(input=str(work / "synth" / "echo"), output=str(work / "ingest"), **world["ingest"]))
    return work


def recipes(epochs_paper: int, epochs_locked: int) -> dict[str, tuple[str, dict]]:
    """Column -> (named recipe, fields on top). ``paper`` is the paper's recipe with a plain-InfoNCE warm-up for
    the first half, batch 64 and the earlier input scaling, as this table was first measured."""
    return {
        "paper": ("paper", dict(epochs=epochs_paper, batch_size=64, pairs={"image_size": PROBE_PAIRS.image_size},
                                loss={"warmup_epochs": epochs_paper // 2}, pixel_norm="fixed", cls_position=True)),
        "locked+study": ("locked-study", dict(epochs=epochs_locked)),
        "locked+study raw": ("locked-study", dict(epochs=epochs_locked, echo_features="raw")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="runs/structure_probe")
    ap.add_argument("--patients", type=int, default=160)
    ap.add_argument("--strength", type=float, default=2.0, help="SynthConfig.ecg_latent_strength")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="pretraining seeds (split, init, order)")
    ap.add_argument("--synth-seed", type=int, default=0, help="seed of the synthetic world (the test's is 0)")
    ap.add_argument("--epochs-paper", type=int, default=40)
    ap.add_argument("--epochs-locked", type=int, default=40)
    ap.add_argument("--recipes", nargs="+", default=["paper", "locked+study", "locked+study raw"],
                    choices=list(recipes(1, 1)))
    a = ap.parse_args()
    work = Path(a.workdir).resolve()
    init_ray()
    make_data(work, a.patients, a.strength, a.synth_seed)
    samples = build_pairs(read_clips(str(work / "ingest")), PROBE_PAIRS, echo=False).take_all()
    groups = np.array([s["subject_id"] for s in samples])
    truth = pd.read_parquet(work / "synth" / "truth" / "patients.parquet").set_index("subject_id")
    rows = []
    for seed in a.seeds:
        for name in a.recipes:
            out = work / f"{name.replace('+', '_').replace(' ', '_')}-seed{seed}"
            t0 = time.time()
            recipe, fields = recipes(a.epochs_paper, a.epochs_locked)[name]
            m = run_pretrain(pretrain_config(recipe, clips=str(work / "ingest"), output=str(out), seed=seed,
                                             resume=(out / "ray_results").exists(), **fields))
            minutes = (time.time() - t0) / 60
            held = set(int(p) for p in m["heldout_patients"])
            x_t, x_r = pretrained_and_init(out / "ecg_encoder.pt", samples, seed)
            row = {"recipe": name, "seed": seed, "epochs": m["epochs"], "minutes": round(minutes, 1),
                   "mean rank / chance": f"{m['ecg2echo_mean_rank']:.1f} / {m['chance_mean_rank']:.1f}"}
            for lat in LATENTS:
                y = truth.loc[groups, lat].to_numpy()
                row[lat] = f"{heldout_r2(x_t, y, groups, held):+.2f} / {heldout_r2(x_r, y, groups, held):+.2f}"
            rows.append(row)
            print(row, flush=True)
    print("\nheld-out patients' probe R^2, pretrained / random init:\n")
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
