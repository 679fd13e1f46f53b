"""What held-out Recall@1 could an oracle reach on a synthetic set? The ceiling of clip-level retrieval.

From the synthetic world's ground truth (``<synth>/truth/cines.parquet``: each cine's heart rate and R-peak times) and
the clips that ingest kept (``<ingest>/clips``), on the held-out clips of ``eee-ray pretrain``'s split (same seed and
``heldout_fraction``), it scores ECG->echo retrieval with oracles that know only what a clip's ECG and its echo
share in the generator:

- ``patient``: the patient (the echo anatomy and the ECG morphology both derive from the patient's latents); every
  clip of the query's patient ties, so Recall@1 = 1 / (held-out clips of that patient);
- ``length``: the number of 0.5 s tokens (both towers see the same padding mask);
- ``heart rate``: the clip's heart rate (drawn per cine around the patient's), measured on each side with Gaussian
  noise of ``sd`` bpm;
- ``beat timing``: the R-peak times inside the clip's tokens (the echo's contraction follows them), measured on
  each side with Gaussian noise of ``sd`` ms; the distance is the mean gap between the two sides' beat-phase
  vectors (cos, sin of 2 pi t / RR at every frame instant of the sub-clips).

Ties are broken at random (expected values, exact), so a tie-only oracle scores its expected Recall@1; the noisy
oracles are averaged over ``--draws`` draws of the measurement noise.
Prints one table row per oracle: Recall@1 as hits of N (x chance) and the mean rank.

    python benchmarks/retrieval_ceiling.py --synth runs/s101/synth --clips runs/s101/ingest
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from eee_ray.pairs import PairsConfig, _n_tokens, split_patients


def heldout_clips(synth: Path, clips: Path, seed: int, fraction: float) -> pd.DataFrame:
    """The held-out clips of ``eee-ray pretrain``'s split, with their truth rows (heart rate, R peaks, tokens)."""
    cfg = PairsConfig()
    folder = clips / "clips" if (clips / "clips").is_dir() else clips
    cols = ["path", "subject_id", "study_id", "n_frames", "frame_time_ms", "ecg"]
    rows = pd.concat([pq.read_table(f, columns=cols).to_pandas() for f in sorted(folder.glob("*.parquet"))])
    rows["n_tokens"] = [_n_tokens(len(e), n, dt / 1000.0, cfg)
                        for e, n, dt in zip(rows["ecg"], rows["n_frames"], rows["frame_time_ms"])]
    rows = rows[rows["n_tokens"] >= 1].drop(columns=["ecg"])
    held = split_patients(rows["subject_id"].tolist(), fraction, seed)
    rows = rows[rows["subject_id"].isin(held)]
    truth = pd.read_parquet(synth / "truth" / "cines.parquet", columns=["path", "heart_rate_bpm", "r_peaks_ms"])
    return rows.merge(truth, on="path", how="left").sort_values("path").reset_index(drop=True)


def beat_phase(r_peaks_ms: np.ndarray, n_tokens: int, jitter_ms: float, rng: np.random.Generator) -> np.ndarray:
    """(cos, sin) of the cardiac phase at the 8 frame instants of each token's sub-clip, from R peaks moved by
    Gaussian noise of ``jitter_ms`` (one shift for the clip: what a model reads off a whole clip)."""
    cfg = PairsConfig()
    token_s = cfg.token_len / cfg.sample_rate
    t = ((np.arange(n_tokens)[:, None] + (np.arange(cfg.frames_per_token)[None, :] + 0.5) / cfg.frames_per_token)
         * token_s * 1000.0).ravel()
    peaks = np.sort(np.asarray(r_peaks_ms, dtype=np.float64)) + rng.normal(0.0, jitter_ms)
    k = np.clip(np.searchsorted(peaks, t, side="right") - 1, 0, len(peaks) - 2)
    phase = (t - peaks[k]) / (peaks[k + 1] - peaks[k])
    return np.concatenate([np.cos(2 * np.pi * phase), np.sin(2 * np.pi * phase)])


def recall_at_1(dist: np.ndarray) -> tuple[float, float]:
    """Expected Recall@1 and mean 1-based rank of the diagonal under ``dist`` (queries x gallery, lower is closer),
    ties broken at random: a true match tied with k - 1 others at the top is a hit 1 / k of the time."""
    d = dist.diagonal()[:, None]
    better = (dist < d).sum(1)
    tied = (dist == d).sum(1)                      # including the true match itself
    return float(np.mean(np.where(better == 0, 1.0 / tied, 0.0))), float(np.mean(better + (tied + 1) / 2))


def oracles(df: pd.DataFrame, hr_sd: list[float], phase_sd: list[float], draws: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    n = len(df)
    big = 1e6
    same_patient = (df["subject_id"].to_numpy()[:, None] != df["subject_id"].to_numpy()[None, :]) * big
    same_len = (df["n_tokens"].to_numpy()[:, None] != df["n_tokens"].to_numpy()[None, :]) * big
    out = [("patient", *recall_at_1(same_patient)), ("length", *recall_at_1(same_len)),
           ("patient + length", *recall_at_1(same_patient + same_len))]
    hr = df["heart_rate_bpm"].to_numpy()
    for sd in hr_sd:
        res = []
        for _ in range(draws):
            d = np.abs((hr + rng.normal(0, sd, n))[:, None] - (hr + rng.normal(0, sd, n))[None, :])
            res.append([recall_at_1(same_patient + same_len + d), recall_at_1(same_len + d)])
        res = np.mean(res, axis=0)
        out += [(f"patient + length + heart rate (sd {sd:g} bpm)", *res[0]),
                (f"length + heart rate (sd {sd:g} bpm)", *res[1])]
    for sd in phase_sd:
        res = []
        for _ in range(draws):
            a = [beat_phase(p, t, sd, rng) for p, t in zip(df["r_peaks_ms"], df["n_tokens"])]
            b = [beat_phase(p, t, sd, rng) for p, t in zip(df["r_peaks_ms"], df["n_tokens"])]
            d = np.array([[np.linalg.norm(x - y) / np.sqrt(len(x)) if len(x) == len(y) else big for y in b]
                          for x in a])
            res.append([recall_at_1(d), recall_at_1(same_patient + d)])
        res = np.mean(res, axis=0)
        out += [(f"beat timing (sd {sd:g} ms)", *res[0]), (f"patient + beat timing (sd {sd:g} ms)", *res[1])]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synth", required=True, help="eee-ray synth output (holding truth/)")
    ap.add_argument("--clips", required=True, help="its eee-ray ingest output (holding clips/)")
    ap.add_argument("--seed", type=int, default=0, help="pretrain --seed (the patient split)")
    ap.add_argument("--heldout-fraction", type=float, default=0.25)
    ap.add_argument("--hr-sd", type=float, nargs="*", default=[0.0, 2.0, 5.0])
    ap.add_argument("--phase-sd", type=float, nargs="*", default=[0.0, 50.0, 100.0])
    ap.add_argument("--draws", type=int, default=50)
    a = ap.parse_args()
    df = heldout_clips(Path(a.synth), Path(a.clips), a.seed, a.heldout_fraction)
    n = len(df)
    per_patient = df.groupby("subject_id").size()
    print(f"{n} held-out clips of {len(per_patient)} patients ({per_patient.min()}-{per_patient.max()} clips each); "
          f"tokens per clip: {dict(df['n_tokens'].value_counts().sort_index())}; chance Recall@1 1/{n}, "
          f"mean rank {(n + 1) / 2:.1f}")
    print("| oracle | Recall@1 hits of N (x chance) | mean rank (chance) |\n|---|---|---|")
    for name, r1, mr in oracles(df, a.hr_sd, a.phase_sd, a.draws, a.seed):
        print(f"| {name} | {r1 * n:.1f} of {n} ({r1 * n:.1f}x) | {mr:.1f} ({(n + 1) / 2:.1f}) |")


if __name__ == "__main__":
    main()
