"""How much of the heart's structure the echo side of pretraining shows (docs/results.md).

On an ingested synthetic world (its ``synth/truth`` and ``ingest/``), per patient (clips averaged), 5-fold
cross-validated ridge R^2 (folds by patient) of each structure latent from:

- ``pixels``: each clip's frames averaged and their standard deviation over time, pooled to 16 x 16 (what the
  stored pixels show, read linearly);
- the locked echo tower at its seeded init on the control recipe's sub-clips (``eee_ray.positive_control.recipe``),
  its features standardised per dimension, with each echo input setting of ``TOWERS``: the motion input (each
  pixel minus its mean over the sub-clip) keeps what moves and drops what stands still.

    python benchmarks/echo_view_structure.py --workdir runs/control640

A contrastive ECG encoder can only learn from the echo side what the echo side shows: a latent the features do not
show cannot be transferred, whatever the ECG carries.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from eee_ray.echo_features import embed_echo, init_model
from eee_ray.ingest import read_clips
from eee_ray.pairs import build_pairs
from eee_ray.positive_control import recipe
from eee_ray.pretrain import model_config
from eee_ray.runtime import init_ray
from eee_ray.synth.labels import LATENTS

POOL = 16
TOWERS = {  # PretrainConfig fields of the echo tower
    "motion, slots": dict(pixel_norm="motion", vit_pool="slots", vit_norm="batch"),
    "fixed, cls (locked-study)": dict(pixel_norm="fixed", vit_pool="cls", vit_norm="none", cls_position=True),
    "clip, cls": dict(pixel_norm="clip", vit_pool="cls", vit_norm="none"),
}


def pixel_features(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Time mean and time SD of each clip's frames, block-averaged to POOL x POOL."""
    feats = []
    for clip in batch["echo"]:
        x = np.asarray(clip, dtype=np.float32) / 255.0
        f, h, w = x.shape
        x = x[:, : h // POOL * POOL, : w // POOL * POOL].reshape(f, POOL, h // POOL, POOL, w // POOL).mean((2, 4))
        feats.append(np.concatenate([x.mean(0).ravel(), x.std(0).ravel()]))
    return {"subject_id": batch["subject_id"], "x": np.stack(feats)}


def per_patient(subjects: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.unique(subjects)
    return ids, np.stack([x[subjects == i].mean(0) for i in ids])


def cv_r2(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 5, 15)))
    pred = cross_val_predict(model, x, y, cv=KFold(5, shuffle=True, random_state=seed))
    return float(r2_score(y, pred))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="a folder with synth/ and ingest/ (e.g. of positive_control.py)")
    ap.add_argument("--seed", type=int, default=0, help="the locked tower's init seed")
    args = ap.parse_args()
    work = Path(args.workdir)
    init_ray(2)
    clips = read_clips(work / "ingest")
    views = {}
    rows = clips.select_columns(["subject_id", "echo"]).map_batches(pixel_features, batch_size=16).take_all()
    views["pixels"] = per_patient(np.array([r["subject_id"] for r in rows]), np.stack([r["x"] for r in rows]))
    for name, tower in TOWERS.items():
        cfg = recipe(clips=str(work / "ingest"), output=str(work / "echo_view"), seed=args.seed, **tower)
        feats = embed_echo(build_pairs(clips, cfg.pairs), init_model(model_config(cfg), args.seed))
        rows = feats.select_columns(["subject_id", "echo_cls"]).take_all()
        x = np.stack([r["echo_cls"] for r in rows])
        views[f"locked tower: {name}"] = per_patient(np.array([r["subject_id"] for r in rows]),
                                                     (x - x.mean(0)) / (x.std(0) + 1e-8))
    truth = pd.read_parquet(work / "synth" / "truth" / "patients.parquet").set_index("subject_id")
    print("| view | patients | features | " + " | ".join(LATENTS) + " |\n|---|---|---|" + "---|" * len(LATENTS))
    for name, (ids, xp) in views.items():
        r2 = [cv_r2(xp, truth.loc[ids, lat].to_numpy(), args.seed) for lat in LATENTS]
        print(f"| {name} | {len(ids)} | {xp.shape[1]} | " + " | ".join(f"{v:+.2f}" for v in r2) + " |")


if __name__ == "__main__":
    main()
