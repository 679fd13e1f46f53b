"""The locked echo tower and study-level [CLS] positives (``echo_tower: frozen``, ``cls_positive: study``): the echo
features Ray Data computes once are what the tower gives, standardised per dimension with the statistics of the
clips given, every clip's mates come from its own study, the tower
stays at its seeded init through a Ray Train run while the ECG tower learns (the restart/resume test in
test_pretrain.py runs in this mode), and bad settings fail in one line."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from eee_ray.echo_features import (attach_study_mates, embed_echo, feature_stats, init_model, pick_mates,
                                   standardize_features)
from eee_ray.errors import UserError
from eee_ray.pairs import TRAIN_COLUMNS, PairsConfig, build_pairs, collate
from eee_ray.pretrain import PretrainConfig, model_config, run_pretrain
from eee_ray.recipes import pretrain_config

PAIRS = PairsConfig(image_size=32, max_tokens=4)


@pytest.fixture(scope="module")
def pairs(ingested_dir):
    from eee_ray.ingest import read_clips

    return build_pairs(read_clips(str(ingested_dir)), PAIRS).select_columns(TRAIN_COLUMNS).materialize()


@pytest.fixture(scope="module")
def locked(pairs):
    """The seeded model and the pairs embedded once by its locked echo tower."""
    model = init_model(model_config(pretrain_config("locked-study", pairs=PAIRS)), seed=3)   # as that recipe runs it
    return model, embed_echo(pairs, model).materialize()


def test_echo_features_are_the_locked_towers_output(pairs, locked):
    model, embedded = locked
    rows = pairs.take(6)
    feats = embedded.take_all()
    assert len(feats) == pairs.count() and "echo" not in feats[0]
    by_ecg = {np.asarray(f["ecg"]).tobytes(): f for f in feats}
    b = collate({k: [r[k] for r in rows] for k in ("ecg", "echo", "n_tokens", "subject_id", "study_id")})
    with torch.no_grad():
        cls, tok = model.eval().echo(b["echo"], b["pad_mask"])
    for i, r in enumerate(rows):
        f = by_ecg[np.asarray(r["ecg"]).tobytes()]
        assert np.allclose(f["echo_cls"], cls[i].numpy(), atol=1e-5)
        assert np.asarray(f["echo_tok"]).shape == (r["n_tokens"], model.cfg.d_embed)
        assert np.allclose(f["echo_tok"], tok[i, : r["n_tokens"]].numpy(), atol=1e-5)


def test_standardised_features_have_zero_mean_and_unit_std(locked):
    """A random tower maps every clip to nearly one vector; standardised, the clips differ in every dimension. The
    statistics are those of the dataset they were computed on (the training split), applied to any other one."""
    feats = locked[1]
    rows = feats.take_all()
    cls = np.stack([r["echo_cls"] for r in rows]).astype(np.float64)
    tok = np.concatenate([r["echo_tok"] for r in rows]).astype(np.float64)
    unit = cls / np.linalg.norm(cls, axis=1, keepdims=True)
    assert (unit @ unit.T).min() > 0.9   # the raw features (the recipe's earlier input scaling): nearly parallel
    stats = feature_stats(feats)
    for name, x in (("cls", cls), ("tok", tok)):
        assert np.allclose(stats[f"{name}_mean"], x.mean(0), atol=1e-5)
        assert np.allclose(stats[f"{name}_std"], x.std(0), rtol=1e-3, atol=1e-5)
    out = standardize_features(feats, stats).take_all()
    by_ecg = {np.asarray(r["ecg"]).tobytes(): r for r in rows}
    z_cls = np.stack([r["echo_cls"] for r in out])
    z_tok = np.concatenate([r["echo_tok"] for r in out])
    assert np.allclose(z_cls.mean(0), 0, atol=1e-4) and np.allclose(z_cls.std(0), 1, atol=1e-3)
    assert np.allclose(z_tok.mean(0), 0, atol=1e-4) and np.allclose(z_tok.std(0), 1, atol=1e-3)
    for r in out[:5]:   # row by row: the same clip, its tokens' count kept
        raw = by_ecg[np.asarray(r["ecg"]).tobytes()]
        assert np.allclose(r["echo_cls"], (raw["echo_cls"] - stats["cls_mean"]) / stats["cls_std"], atol=1e-5)
        assert np.asarray(r["echo_tok"]).shape == np.asarray(raw["echo_tok"]).shape
    z_unit = z_cls / np.linalg.norm(z_cls, axis=1, keepdims=True)
    assert (z_unit @ z_unit.T).min() < 0   # standardised: clips point apart


def test_study_mates_come_from_the_same_study(locked):
    feats = locked[1]
    rows = attach_study_mates(feats, max_mates=2).take_all()
    assert len(rows) == feats.count()
    cls_of: dict[int, list[np.ndarray]] = {}
    for r in rows:
        cls_of.setdefault(r["study_id"], []).append(np.asarray(r["echo_cls"]))
    alone = 0
    for r in rows:
        own, mates, study = np.asarray(r["echo_cls"]), np.asarray(r["echo_mates"]), cls_of[r["study_id"]]
        if len(study) == 1:   # the only clip of its study is its own positive (the paper's pairing)
            alone += 1
            assert mates.shape == (1, own.size) and np.allclose(mates[0], own)
            continue
        assert len(mates) == min(2, len(study) - 1)
        for m in mates:
            assert not np.allclose(m, own) and any(np.allclose(m, c) for c in study)
    assert alone < len(rows)
    b = collate({k: [r[k] for r in rows[:8]] for k in ("ecg", "n_tokens", "subject_id", "study_id", "echo_cls",
                                                       "echo_tok", "echo_mates")})
    picked = pick_mates(b["echo_mates"], b["n_mates"], torch.Generator().manual_seed(0))
    for i in range(8):
        assert any(torch.allclose(picked[i], b["echo_mates"][i, k]) for k in range(int(b["n_mates"][i])))


def test_bad_settings_fail_in_one_line(tmp_path, capsys):
    from eee_ray.cli import main

    assert main(["pretrain", "--clips", str(tmp_path), "--output", str(tmp_path / "o"), "--cls-positive", "study"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs echo_tower locked" in err and len(err.splitlines()) == 1
    base = dict(clips=str(tmp_path), output=str(tmp_path / "o"))
    with pytest.raises(UserError, match="needs echo_tower locked"):
        run_pretrain(PretrainConfig(cls_positive="study", **base))
    with pytest.raises(UserError, match="echo_tower must be"):
        run_pretrain(PretrainConfig(echo_tower="loose", **base))
    with pytest.raises(UserError, match="cls_positive must be"):
        run_pretrain(PretrainConfig(cls_positive="patient", echo_tower="locked", **base))
    assert main(["pretrain", "--clips", str(tmp_path), "--output", str(tmp_path / "o"), "--echo-features", "raw"]) == 2
    err = capsys.readouterr().err.strip()
    assert "need echo_tower locked" in err and len(err.splitlines()) == 1


def test_resume_keeps_the_echo_settings(tmp_path, capsys):
    """A run trained with the paper's settings cannot be resumed with a locked tower (its optimizer holds the echo
    parameters), nor the other way round: one line, before Ray starts."""
    from eee_ray.cli import main
    from eee_ray.config import save

    out = tmp_path / "o"
    (out / "ray_results" / "pretrain").mkdir(parents=True)
    save(PretrainConfig(clips=str(tmp_path), output=str(out)), out / "config.yaml")
    args = ["pretrain", "--clips", str(tmp_path), "--output", str(out), "--resume"]
    assert main(args + ["--echo-tower", "locked"]) == 2
    err = capsys.readouterr().err.strip()
    assert "trained with echo_tower train" in err and "--echo-tower train" in err and len(err.splitlines()) == 1
    save(PretrainConfig(clips=str(tmp_path), output=str(out), echo_tower="locked", cls_positive="study"),
         out / "config.yaml")
    with pytest.raises(UserError, match="cls_positive study"):
        run_pretrain(PretrainConfig(clips=str(tmp_path), output=str(out), resume=True, echo_tower="locked"))
    assert main(args + ["--echo-tower", "locked", "--cls-positive", "study", "--echo-features", "raw"]) == 2
    err = capsys.readouterr().err.strip()
    assert "trained with echo_features standardized" in err and "--echo-features standardized" in err



def test_previous_spellings_still_work_with_a_warning(tmp_path, capsys):
    """'frozen' and --raw-echo-features of the previous release map onto the new names (for one release)."""
    from eee_ray.cli import main

    out = tmp_path / "o"
    (out / "ray_results" / "pretrain").mkdir(parents=True)
    from eee_ray.config import save

    save(PretrainConfig(clips=str(tmp_path), output=str(out)), out / "config.yaml")
    args = ["pretrain", "--clips", str(tmp_path), "--output", str(out), "--resume"]
    assert main(args + ["--echo-tower", "frozen", "--raw-echo-features"]) == 2
    err = capsys.readouterr().err
    assert "--raw-echo-features is deprecated" in err and "'frozen' is deprecated" in err
    assert "trained with echo_tower train" in err  # the old spelling was understood as 'locked'
