"""Label efficiency: patient-wise, seeded, label-stratified subsets of the training patients, the grid axis they
make, the printed verdict on a pretraining gain, and the shuffled pairs of the negative control."""

import numpy as np
import pandas as pd
import pytest

from eee_ray import cli
from eee_ray.downstream import BenchmarkConfig, choose_patients, trial_grid, trial_name
from eee_ray.downstream.subsets import training_mask


def _records(seed=0, patients=400):
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(patients), rng.integers(1, 6, patients)).astype(str)
    per_patient = rng.random((patients, 4)) < [0.01, 0.05, 0.2, 0.5]  # chronic labels: one row per patient
    y = per_patient[pid.astype(int)] & (rng.random((len(pid), 4)) > 0.1)  # each record misses a few
    return pid, y.astype(np.uint8)


@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.5])
def test_subset_is_patient_wise_sized_and_stratified(fraction):
    pid, y = _records()
    keep = choose_patients(pid, y, fraction, seed=3)
    mask = training_mask(pid, y, fraction, seed=3)
    n_patients = len(np.unique(pid))
    assert len(keep) == max(1, round(fraction * n_patients))
    assert set(np.unique(pid[mask])) == set(keep) and not set(pid[~mask]) & set(keep)  # whole patients only
    pos_patients = [set(pid[y[:, j] == 1]) for j in range(y.shape[1])]
    for j, pos in enumerate(pos_patients):  # every finding keeps about its share of positive patients, >= 1
        got = len(pos & set(keep))
        assert got >= 1 and abs(got - fraction * len(pos)) <= max(1, 0.25 * fraction * len(pos)), (j, got, len(pos))


def test_subset_is_seeded_and_full_fraction_keeps_everyone():
    pid, y = _records()
    a, b, c = (choose_patients(pid, y, 0.1, s) for s in (0, 0, 1))
    assert list(a) == list(b) and set(a) != set(c)
    assert training_mask(pid, y, 1.0, 7).all()
    with pytest.raises(ValueError):
        choose_patients(pid, y, 0.0, 0)


def test_grid_has_a_label_fraction_axis_with_seeds_below_one():
    grid, _ = trial_grid(BenchmarkConfig(models=["s4"], leads=["II"], label_fractions=[1.0, 0.1, 0.02],
                                         label_seeds=3))
    draws = [(g["label_fraction"], g["label_seed"]) for g in grid]
    assert draws == [(0.02, 0), (0.02, 1), (0.02, 2), (0.1, 0), (0.1, 1), (0.1, 2), (1.0, 0)]
    assert len({trial_name(g) for g in grid}) == len(grid)
    assert trial_name(grid[1]) == "s4__II__scratch__lf0.02__s1"


@pytest.mark.parametrize("flag,value,message", [("--label-fractions", "0,1", "in (0, 1]"),
                                                ("--label-fractions", "a,b", "expected float"),
                                                ("--label-seeds", "0", "--label-seeds must be >= 1"),
                                                ("--encoder-lr-scale", "0", "--encoder-lr-scale must be in (0, 1]")])
def test_cli_refuses_bad_label_options_in_one_line(tmp_path, capsys, flag, value, message):
    assert cli.main(["benchmark", "--data", str(tmp_path), "--output", str(tmp_path / "o"), flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_shuffled_pairs_give_every_clip_the_ecg_of_another_patient():
    """--shuffle-pairs (the negative control): nobody keeps their own ECGs, every ECG is used, the draw is seeded."""
    from eee_ray.pair_shuffle import _key, donor_table

    rng = np.random.default_rng(0)
    subjects = [s for s in range(30) for _ in range(int(rng.integers(1, 5)))]
    ecgs = [rng.normal(size=(2, 50)).astype(np.float32) for _ in subjects]
    owner = {_key(e): s for e, s in zip(ecgs, subjects)}
    donors = donor_table(subjects, ecgs, [2] * len(ecgs), seed=1)
    got = [owner[_key(donors[_key(e)][0])] for e in ecgs]
    assert all(g != s for g, s in zip(got, subjects))
    per_patient = {s: {g for g, t in zip(got, subjects) if t == s} for s in set(subjects)}
    assert all(len(d) == 1 for d in per_patient.values())  # a patient's clips all take one other patient's ECGs
    again = donor_table(subjects[::-1], ecgs[::-1], [2] * len(ecgs), seed=1)  # read in another order: same pairs
    assert all(np.array_equal(again[k][0], v[0]) for k, v in donors.items())


def test_the_printed_line_says_how_sure_the_gain_is():
    from eee_ray.downstream.report import label_efficiency, pretraining_gain_line

    def results(pre_small, ctrl_small, width):
        rows = []
        for model, small in (("eee", pre_small), ("eee_random", ctrl_small)):
            for f, seeds, base in ((0.05, 3, small), (1.0, 1, 0.8)):
                for k in range(seeds):
                    a = base + 0.01 * k
                    rows.append({"model": model, "leads": "II", "strategy": "linear_probe", "label_fraction": f,
                                 "label_seed": k, "macro_auroc": a, "macro_auroc_ci_low": a - width,
                                 "macro_auroc_ci_high": a + width, "n_train_records": 10})
        rows.append({"model": "s4", "leads": "II", "strategy": "scratch", "label_fraction": 0.05, "label_seed": 0,
                     "macro_auroc": 0.6, "macro_auroc_ci_low": 0.5, "macro_auroc_ci_high": 0.7,
                     "n_train_records": 10})
        return label_efficiency(pd.DataFrame(rows))

    clear = pretraining_gain_line(results(0.75, 0.55, 0.05))
    assert "0.05 of the training labels" in clear and "+0.200; clear" in clear and "gap is +0.000" in clear
    assert "from scratch (S4) scores 0.600 at 0.05" in clear
    assert "likely" in pretraining_gain_line(results(0.65, 0.55, 0.1))
    assert "not established" in pretraining_gain_line(results(0.56, 0.55, 0.05))


def test_a_subset_stretched_by_min_steps_validates_about_epochs_times():
    """A 2 % subset of a few records makes one step an epoch; --min-steps stretches it to many epochs, and the trial
    validates (and may keep its weights) about --epochs times, after blocks of epochs, the last one included, not
    after each one-step epoch (which cost a 2 % trial ~95 s instead of ~15 s on the control world)."""
    import torch

    from eee_ray.downstream.train import _fit
    from eee_ray.ecgdata.records import ECGDataset
    from eee_ray.models.registry import build_model

    rng = np.random.default_rng(0)
    n = 40
    labels = (rng.random((n, 2)) < 0.5).astype(np.uint8)
    labels[:2] = [[1, 1], [0, 0]]   # both classes of both labels in training and validation
    labels[30:32] = [[1, 1], [0, 0]]
    split = np.array(["train"] * 30 + ["val"] * 10)
    data = ECGDataset(record_ids=np.array([f"r{i}" for i in range(n)]),
                      patient_ids=np.array([f"p{i}" for i in range(n)]),
                      signals=rng.normal(size=(n, 1, 1000)).astype(np.float32), leads=["II"], labels=labels,
                      label_names=["a", "b"], split=split, skipped=pd.DataFrame(columns=["record_id", "reason"]))
    torch.manual_seed(0)
    model = build_model("xresnet1d50", 1, 2, preset="tiny")
    cfg = BenchmarkConfig(epochs=3, min_steps=12, batch_size=32, crops_per_record=1)
    validated = []
    best_epoch, _ = _fit(model, data, ["II"], cfg, lambda epoch, metrics: validated.append((epoch, metrics)))
    # 30 training records, batch 32: one step an epoch, so 12 epochs, validated after every 4th
    assert [e for e, _ in validated] == [3, 7, 11]
    assert all("val_macro_auroc" in m and "train_loss" in m for _, m in validated)
    assert best_epoch in (3, 7, 11)
