"""The downstream ECG data (docs/contract.md: MIMIC-IV-ECG, Downstream benchmark): leads picked by name in MIMIC's
stored order, 500 -> 100 Hz, every bad input skipped with its own reason (never a crash), record paths kept inside the
data root, the real PTB-XL subset, and the crop / sliding-window / aggregation logic."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import wfdb

from eee_ray.ecgdata import CANONICAL_LEADS, SignalSpec, build_dataset
from eee_ray.ecgdata.labels import load_mapping
from eee_ray.ecgdata.mimic import read_mimic
from eee_ray.ecgdata.ptbxl import read_ptbxl
from eee_ray.ecgdata.records import prepare_signal, safe_path
from eee_ray.ecgdata.windows import predict_records, random_crops, sliding_windows, window_starts

MIMIC_ORDER = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
AMP = {lead: 0.1 * (k + 1) for k, lead in enumerate(CANONICAL_LEADS)}  # mV, a per-lead signature


def _ecg(fs=500, seconds=10.0, leads=MIMIC_ORDER):
    t = np.arange(int(fs * seconds)) / fs
    return np.stack([AMP[lead] * np.sin(2 * np.pi * 5 * t) for lead in leads], axis=1)


def _write(root, rel, sig, fs=500, leads=MIMIC_ORDER):
    d = root / rel.rsplit("/", 1)[0]
    d.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(rel.rsplit("/", 1)[1], fs=fs, units=["mV"] * len(leads), sig_name=list(leads), p_signal=sig,
                fmt=["16"] * len(leads), adc_gain=[1000.0] * len(leads), baseline=[0] * len(leads),
                write_dir=str(d))


def test_leads_are_chosen_by_name_from_mimic_order_and_resampled_to_100hz():
    x, reason = prepare_signal(_ecg(), 500, MIMIC_ORDER, list(CANONICAL_LEADS), SignalSpec())
    assert reason == "" and x.shape == (12, 1000) and x.dtype == np.float32
    for k, lead in enumerate(CANONICAL_LEADS):  # aVL and aVF swap places between MIMIC and the canonical order
        assert np.ptp(x[k]) == pytest.approx(2 * AMP[lead], rel=0.02), lead
    # 5 Hz survives the 500 -> 100 Hz resampling: 100 zero crossings in 10 s
    assert np.sum(np.diff(np.sign(x[1][5:-5])) != 0) == pytest.approx(98, abs=2)
    upper = [n.upper() for n in MIMIC_ORDER]  # PTB-XL spells AVR, AVL, AVF
    y, _ = prepare_signal(_ecg(), 500, upper, ["aVL"], SignalSpec())
    assert np.ptp(y[0]) == pytest.approx(2 * AMP["aVL"], rel=0.02)


@pytest.mark.parametrize("mutate, fs, reason", [
    (lambda s: s[:, :11], 500, "missing lead(s) V6"),
    (lambda s: s, 50, "sampling rate 50 Hz below 100 Hz"),
    (lambda s: s[:4000], 500, "record is 8.00 s, need 10 s"),
    (lambda s: np.where(np.arange(len(s))[:, None] % 2 == 0, np.nan, s), 500, "lead I has 50% NaN"),
    (lambda s: np.concatenate([s[:, :8], np.zeros((len(s), 1)), s[:, 9:]], axis=1), 500, "flat line in lead(s) V3"),
])
def test_bad_signals_give_a_reason(mutate, fs, reason):
    sig = mutate(_ecg())
    names = MIMIC_ORDER[: sig.shape[1]]
    x, why = prepare_signal(sig, fs, names, list(CANONICAL_LEADS), SignalSpec())
    assert x is None and why.startswith(reason)


def test_a_few_nans_are_interpolated():
    sig = _ecg()
    sig[100:103, 1] = np.nan
    x, why = prepare_signal(sig, 500, MIMIC_ORDER, ["II"], SignalSpec())
    assert why == "" and np.isfinite(x).all()


def test_paths_cannot_escape_the_data_root(tmp_path):
    (tmp_path / "files").mkdir()
    assert safe_path(tmp_path, "files/p1/x") == (tmp_path / "files/p1/x").resolve()
    for bad in ("../outside", "files/../../outside", "/etc/passwd"):
        assert safe_path(tmp_path, bad) is None


@pytest.fixture
def messy_mimic(tmp_path):
    """A MIMIC-like tree where most records are broken in a different way."""
    root = tmp_path / "mimic"
    rows, labels = [], []

    def add(study, subject, fold, codes, sig=None, fs=500, leads=MIMIC_ORDER, rel=None, label=True):
        rel = rel or f"files/p{subject // 10000}/p{subject}/s{study}/{study}"
        if sig is not None:
            _write(root, rel, sig, fs, leads)
        rows.append({"subject_id": subject, "study_id": study, "file_name": study, "ecg_time": "", "path": rel})
        if label:
            labels.append({"subject_id": subject, "study_id": study, "all_diag_all": codes, "fold": fold,
                           "strat_fold": fold})

    add(1, 10000001, 0, "['I509', 'E119']", _ecg())
    add(2, 10000002, 18, "['I10']", _ecg())
    add(3, 10000003, 19, "['I509', 'Q9999X']", _ecg())  # Q9999X: unknown to the mapping, record still used
    add(4, 10000004, 0, "['I10']", _ecg()[:, :11], leads=MIMIC_ORDER[:11])
    add(5, 10000005, 0, "['I10']", _ecg(fs=50), fs=50)
    add(6, 10000006, 0, "['I10']", _ecg(seconds=8))
    add(7, 10000007, 0, "['I10', ", _ecg())
    add(8, 10000008, 0, "['I10']", _ecg(), label=False)
    add(9, 10000009, 0, "['I10']", rel="../../outside/9")
    add(10, 10000010, 0, "['I10']", _ecg())
    (root / "files/p1000/p10000010/s10/10.dat").unlink()  # header without its signal file
    pd.DataFrame(rows).to_csv(root / "record_list.csv", index=False)
    pd.DataFrame(labels).to_csv(root / "records_w_diag_icd10.csv", index=False)
    (root / "map.json").write_text(json.dumps({"I509": "CIR019", "I10": "CIR007", "E119": "END002"}))
    return root


def test_bad_records_are_skipped_with_reasons_and_counted(messy_mimic, ray_session):
    mapping = load_mapping(str(messy_mimic / "map.json"))
    table, notes = read_mimic(messy_mimic, mapping, "category")
    ds = build_dataset(table, list(CANONICAL_LEADS), SignalSpec())
    assert sorted(ds.record_ids) == ["1", "2", "3"]
    assert dict(zip(ds.record_ids, ds.split)) == {"1": "train", "2": "val", "3": "test"}
    assert ds.label_names == ["CIR007", "CIR019"]
    assert ds.labels[list(ds.record_ids).index("3")].tolist() == [0, 1]
    reasons = dict(zip(ds.skipped["record_id"], ds.skipped["reason"]))
    assert set(reasons) == {"4", "5", "6", "7", "8", "9", "10"}
    expected = {"4": "missing lead(s) V6", "5": "sampling rate 50 Hz", "6": "record is 8.00 s",
                "7": "bad label row", "8": "no label row", "9": "escapes the data root", "10": "signal file 10.dat not found"}
    for rid, start in expected.items():
        assert reasons[rid].startswith(start) or start in reasons[rid], (rid, reasons[rid])
    assert any("Q9999X (1)" in n for n in notes)


def test_ptbxl_reader_real_subset(shared_data, ray_session):
    root = shared_data / "ecg" / "ptbxl_500"
    table, _ = read_ptbxl(root)
    counts = pd.Series([lab for labs in table["labels"] for lab in labs]).value_counts().to_dict()
    assert counts == {"NORM": 297, "STTC": 96, "CD": 78, "MI": 73, "HYP": 40, "LVH": 35}  # the data README
    assert table.groupby("patient_id")["split"].nunique().max() == 1  # strat_fold is patient-wise
    assert set(table["split"]) == {"train", "val", "test"}
    ds = build_dataset(table.iloc[:8], list(CANONICAL_LEADS), SignalSpec())
    raw = wfdb.rdrecord(str(root / "records100/00000/00001_lr"))
    avr = raw.p_signal[:, raw.sig_name.index("AVR")]
    np.testing.assert_allclose(ds.signals[0, CANONICAL_LEADS.index("aVR")], avr - np.median(avr), atol=1e-5)


def test_window_starts_cover_the_record_with_half_window_stride():
    assert window_starts(1000, 250).tolist() == [0, 125, 250, 375, 500, 625, 750]
    assert window_starts(1000, 1000).tolist() == [0]
    assert window_starts(1000, 300).tolist() == [0, 150, 300, 450, 600, 700]  # the last window ends at the end
    x = np.arange(2 * 3 * 1000, dtype=np.float32).reshape(2, 3, 1000)
    w = sliding_windows(x, 250)
    assert w.shape == (2, 7, 3, 250) and np.array_equal(w[1, 2], x[1, :, 250:500])


def test_random_crops_are_contiguous_slices_of_their_own_record():
    x = np.arange(4 * 2 * 1000, dtype=np.float32).reshape(4, 2, 1000)
    c = random_crops(x, 250, np.random.default_rng(0))
    assert c.shape == (4, 2, 250)
    for i in range(4):
        start = int(c[i, 0, 0] - x[i, 0, 0])
        assert np.array_equal(c[i], x[i, :, start:start + 250])


class _MeanModel(torch.nn.Module):
    """features = per-lead window mean; logits = features (so the expected outputs are known by hand)."""
    window = 250

    def forward_features(self, x):
        return x.mean(-1)

    def forward_head(self, z):
        return z


def test_predict_records_aggregates_windows_by_mean_or_max():
    x = np.linspace(-2, 2, 1000, dtype=np.float32)[None, None, :].repeat(3, 0)
    means = np.array([x[0, 0, s:s + 250].mean() for s in window_starts(1000, 250)])
    sig = 1 / (1 + np.exp(-means))
    p, emb = predict_records(_MeanModel(), x, 250, "mean", batch_size=2)
    assert p.shape == (3, 1) and emb.shape == (3, 1)
    np.testing.assert_allclose(p[:, 0], sig.mean(), rtol=1e-5)
    np.testing.assert_allclose(emb[:, 0], means.mean(), atol=1e-5)
    p_max, _ = predict_records(_MeanModel(), x, 250, "max")
    np.testing.assert_allclose(p_max[:, 0], sig.max(), rtol=1e-5)
