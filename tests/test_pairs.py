"""Pairs: ECG tokens and echo sub-clips cover the same time spans, padding, patient split, misalignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eee_ray.errors import UserError
from eee_ray.pairs import TRAIN_COLUMNS, PairsConfig, build_pairs, clip_to_sample, collate, misalign, normalize_ecg, split_patients


def clip_row(n_frames: int, frame_time_ms: float, subject: int = 1, study: int = 10, seed: int = 0) -> dict:
    """A clip in the ingest schema whose frame i is filled with grey level i, so frame picks are readable."""
    rng = np.random.default_rng(seed)
    echo = np.repeat(np.arange(n_frames, dtype=np.uint8)[:, None, None], 224, 1).repeat(224, 2)
    n_ecg = int(round(n_frames * frame_time_ms / 10.0))
    return {"path": f"p{subject}/s{study}/{seed}.dcm", "subject_id": subject, "study_id": study, "n_frames": n_frames,
            "frame_time_ms": frame_time_ms, "echo": echo, "ecg": rng.normal(3.0, 7.0, n_ecg).astype(np.float32),
            "ecg_px": rng.normal(0, 1, 300).astype(np.float32), "trace_x0": 10, "trace_x1": 310}


def test_tokens_and_subclips_share_time_spans():
    cfg = PairsConfig(image_size=32)
    row = clip_row(n_frames=40, frame_time_ms=33.3)  # 1.332 s -> 2 whole tokens
    (s,) = clip_to_sample(row, cfg)
    assert s["n_tokens"] == 2 and s["ecg"].shape == (2, 50) and s["echo"].shape == (2, 8, 32, 32)
    np.testing.assert_allclose(s["ecg"].ravel(), normalize_ecg(row["ecg"])[:100], rtol=1e-6)
    for t in range(2):
        picked = s["echo"][t, :, 0, 0].astype(float)
        times = picked * 0.0333  # frame index -> its start time
        # every picked frame lies inside the token's 0.5 s span, and the picks move forward through it
        assert np.all(times >= t * 0.5 - 0.0333) and np.all(times < (t + 1) * 0.5)
        assert np.all(np.diff(picked) >= 0) and picked[-1] - picked[0] >= 10
    assert abs(float(np.median(normalize_ecg(row["ecg"])))) < 1e-5
    assert float(normalize_ecg(row["ecg"]).std()) == pytest.approx(1.0, rel=1e-4)


def test_short_clip_dropped_and_long_clip_truncated():
    cfg = PairsConfig(image_size=16, max_tokens=3)
    assert clip_to_sample(clip_row(n_frames=12, frame_time_ms=33.3), cfg) == []  # 0.4 s < one token
    (s,) = clip_to_sample(clip_row(n_frames=120, frame_time_ms=33.3), cfg)  # 4 s -> 8 tokens, capped at 3
    assert s["n_tokens"] == 3 and s["ecg"].shape == (3, 50)


def test_ray_pipeline_and_collate(ray_session):
    import ray

    rows = [clip_row(40, 33.3, subject=1, study=10, seed=0), clip_row(80, 30.0, subject=2, study=20, seed=1),
            clip_row(10, 30.0, subject=3, study=30, seed=2)]
    ds = build_pairs(ray.data.from_items(rows), PairsConfig(image_size=16))
    assert sorted(r["study_id"] for r in ds.take_all()) == [10, 20]  # the 0.3 s clip gave no sample
    batch = next(iter(ds.select_columns(TRAIN_COLUMNS).iter_batches(batch_size=2, batch_format="numpy")))
    b = collate(batch)
    assert b["ecg"].shape == (2, 4, 50) and b["echo"].shape == (2, 4, 8, 16, 16)
    for i, study in enumerate(b["study_id"].tolist()):
        n = {10: 2, 20: 4}[study]
        assert b["pad_mask"][i].tolist() == [False] * n + [True] * (4 - n)
        assert b["ecg"][i, n:].abs().sum() == 0 and b["ecg"][i, :n].abs().sum() > 0
    # ECG-only samples (probes, ECG embeddings): the same tokens and IDs, without the pixels ever being read
    ecg_only = {r["study_id"]: r for r in build_pairs(ray.data.from_items(rows), PairsConfig(), echo=False).take_all()}
    full = {r["study_id"]: r for r in ds.take_all()}
    assert sorted(ecg_only) == [10, 20] and all("echo" not in r for r in ecg_only.values())
    for study, r in full.items():
        assert ecg_only[study]["n_tokens"] == r["n_tokens"] and np.array_equal(ecg_only[study]["ecg"], r["ecg"])


def test_patient_split_is_disjoint_and_seeded():
    subjects = [s for s in range(20) for _ in range(3)]
    held = split_patients(subjects, 0.25, seed=7)
    assert len(held) == 5 and held == split_patients(subjects, 0.25, seed=7)
    assert held != split_patients(subjects, 0.25, seed=8)
    assert len(split_patients([1, 2], 0.9, seed=0)) == 1  # never all patients
    with pytest.raises(UserError):
        split_patients([4, 4, 4], 0.25, seed=0)


def test_misalign_offsets_ecg_against_echo():
    g = torch.Generator().manual_seed(0)
    b, t = 400, 5
    ecg = torch.arange(1, t + 1, dtype=torch.float32).view(1, t, 1).expand(b, t, 3).clone()
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    pad = torch.arange(t).unsqueeze(0) >= lengths.unsqueeze(1)
    ecg[pad] = 0.0  # as collate pads
    out, new_pad, m = misalign(ecg, pad, p_shift=0.3, generator=g)
    shiftable = lengths >= 2
    assert m[~shiftable].sum() == 0
    assert 0.2 < m[shiftable].float().mean() < 0.4
    for i in range(b):
        n = int(lengths[i])
        if not m[i]:
            assert torch.equal(out[i], ecg[i]) and torch.equal(new_pad[i], pad[i])
            continue
        k = int(out[i, 0, 0]) - 1  # token k now sits where token 0 was: ECG runs k tokens ahead of the echo
        assert 1 <= k <= n - 1
        assert new_pad[i].tolist() == [False] * (n - k) + [True] * (t - n + k)
        assert out[i, : n - k, 0].tolist() == [float(j + 1) for j in range(k, n)]  # continuous, no seam
        assert out[i, n - k:].abs().sum() == 0
