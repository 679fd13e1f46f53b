"""The synthetic MIMIC-like data set (docs/contract.md, Synthetic data): layout and CSVs as in MIMIC, decodable DICOMs,
WFDB records in MIMIC's lead order, exact ground truth for the ECG strip, latent structure visible in image and labels,
defects."""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import re

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
import wfdb
from pydicom.encaps import generate_frames
from pydicom.pixels import pixel_array
from scipy.signal import find_peaks
from scipy.stats import spearmanr

from eee_ray.synth import SynthConfig, generate, write_us_multiframe
from eee_ray.synth.echo import contraction
from eee_ray.synth.ecg_records import to_digital, write_record
from eee_ray.synth.labels import CCSR_DEFAULT
from eee_ray.synth.physiology import LEAD_NAMES

HSV_LO, HSV_HI = (64, 97, 113), (91, 255, 198)   # the paper's window, OpenCV units
TINY = dict(patients=1, ecg_patients=2, studies_min=1, studies_max=1, cines_min=1, cines_max=1, rows=120, cols=160,
            frames_min=3, frames_max=4, ecg_records_min=1, ecg_records_max=1, defect_fraction=0.0)


def _truth(synth_dir) -> pd.DataFrame:
    return pd.read_parquet(synth_dir / "truth" / "cines.parquet", dtype_backend="numpy_nullable")


def _strip_mask(synth_dir, row) -> np.ndarray:
    """HSV mask of the strip of the decoded first frame (pydicom gives RGB)."""
    rgb = pixel_array(synth_dir / "echo" / row.path, index=0)
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb[int(row.strip_y0):]), cv2.COLOR_RGB2HSV)
    return cv2.inRange(hsv, HSV_LO, HSV_HI) > 0


def _hashes(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_echo_tree_and_csvs_follow_mimic(synth_dir):
    echo = synth_dir / "echo"
    records = pd.read_csv(echo / "echo-record-list.csv")
    studies = pd.read_csv(echo / "echo-study-list.csv")
    assert list(records.columns) == ["subject_id", "study_id", "acquisition_datetime", "dicom_filepath"]
    assert list(studies.columns)[:4] == ["study_id", "subject_id", "study_datetime", "note_id"]
    on_disk = sorted(str(p.relative_to(echo)) for p in echo.rglob("*.dcm"))
    assert sorted(records.dicom_filepath) == on_disk == sorted(_truth(synth_dir).path)
    for r in records.itertuples():
        s = str(r.subject_id)
        assert re.fullmatch(rf"files/p{s[:2]}/p{s}/s{r.study_id}/{r.study_id}_\d{{4}}\.dcm", r.dicom_filepath)
        assert len(s) == 8 and len(str(r.study_id)) == 8
    assert set(records.study_id) == set(studies.study_id)
    assert records.subject_id.nunique() == 12
    pd.to_datetime(records.acquisition_datetime, format="%Y-%m-%d %H:%M:%S")


def test_dicoms_are_us_multiframe_jpeg_and_decode(synth_dir):
    good = _truth(synth_dir).query("defect == 'none'").head(1)
    for row in good.itertuples():
        ds = pydicom.dcmread(synth_dir / "echo" / row.path)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.3.1"
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
        assert ds.PhotometricInterpretation == "YBR_FULL_422"
        assert int(ds.NumberOfFrames) == row.n_frames
        assert float(ds.FrameTime) == pytest.approx(row.frame_time_ms, abs=0.05)
        assert ds.PatientID == str(row.subject_id) and ds.StudyID == str(row.study_id)
        frames = ds.pixel_array
        assert frames.shape == (row.n_frames, row.rows, row.cols, 3) and frames.dtype == np.uint8
        top = frames[:, : row.strip_y0].astype(float)
        assert top.mean() > 10 and np.abs(np.diff(top, axis=0)).mean() > 1.0   # an image that moves


def test_hsv_window_finds_the_trace_and_matches_truth(synth_dir):
    """The ground truth the ingest is checked against: per-column centre of the HSV mask == truth trace_y."""
    good = _truth(synth_dir).query("defect == 'none'")
    assert len(good) >= 30
    for row in good.itertuples():
        mask = _strip_mask(synth_dir, row)
        h = mask.shape[0]
        cols = np.flatnonzero(mask.any(axis=0))
        assert (cols[0], cols[-1]) == (row.trace_x0, row.trace_x1)
        assert not mask[0].any() and not mask[-1].any()            # never touches the strip's edges
        seg = mask[:, row.trace_x0: row.trace_x1 + 1]
        assert seg.any(axis=0).all()                               # continuous
        rows = np.arange(h)[:, None]
        centre = (h - 1) / 2 - (rows * seg).sum(0) / seg.sum(0)
        truth = np.asarray(row.trace_y)
        assert len(truth) == len(centre)
        assert np.corrcoef(centre, truth)[0, 1] > 0.98
        assert np.abs(centre - truth).max() <= 1.0
        assert len(row.ecg_100hz) == int(np.floor(row.n_frames * row.frame_time_ms / 10.0 + 1e-6))
        assert 40 <= row.heart_rate_bpm <= 130


def test_each_defect_kind_is_present_and_defective(synth_dir):
    truth = _truth(synth_dir)
    kinds = set(truth.defect)
    assert {"none", "clipped", "gap", "no_trace", "too_many_frames", "not_dicom"} <= kinds
    assert truth.query("defect == 'none'").expected_reason.isna().all()
    assert (truth.defect != "none").mean() < 0.2
    for row in truth.query("defect != 'none'").itertuples():
        path = synth_dir / "echo" / row.path
        if row.defect == "not_dicom":
            with pytest.raises(pydicom.errors.InvalidDicomError):
                pydicom.dcmread(path)
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if row.defect == "too_many_frames":
            assert int(ds.NumberOfFrames) > 120 and path.stat().st_size < 2_000_000
            continue
        mask = _strip_mask(synth_dir, row)
        lit_cols = mask.any(axis=0)
        if row.defect == "no_trace":
            assert not mask.any()
        elif row.defect == "clipped":
            assert mask[0].any() and mask[-1].any()
        elif row.defect == "gap":
            seg = lit_cols[row.trace_x0: row.trace_x1 + 1]
            assert (np.diff(np.flatnonzero(seg)) - 1).max() >= 15
        expected = {"clipped": "ecg_amplitude_clipped", "gap": "ecg_discontinuous", "no_trace": "no_ecg_trace"}
        assert row.expected_reason == expected[row.defect]


def test_ecg_tree_records_and_labels(synth_dir):
    ecg = synth_dir / "ecg"
    rl = pd.read_csv(ecg / "record_list.csv")
    assert list(rl.columns) == ["subject_id", "study_id", "file_name", "ecg_time", "path"]
    for r in rl.head(5).itertuples():
        s = str(r.subject_id)
        assert r.path == f"files/p{s[:4]}/p{s}/s{r.study_id}/{r.study_id}"
        rec = wfdb.rdrecord(str(ecg / r.path))
        assert rec.sig_name == LEAD_NAMES and rec.fs == 500 and rec.p_signal.shape == (5000, 12)
        assert rec.units == ["mV"] * 12
        lead = {n: rec.p_signal[:, i] for i, n in enumerate(rec.sig_name)}
        assert np.abs(lead["III"] - (lead["II"] - lead["I"])).max() < 0.02      # one heart vector, real leads
        assert np.abs(lead["aVR"] + (lead["I"] + lead["II"]) / 2).max() < 0.02
    labels = pd.read_csv(ecg / "records_w_diag_icd10.csv")
    assert {"subject_id", "study_id", "all_diag_all", "fold", "strat_fold"} <= set(labels.columns)
    assert set(labels.study_id) == set(rl.study_id)
    for col in ("fold", "strat_fold"):
        assert labels.groupby("subject_id")[col].nunique().max() == 1             # patient-level split
        assert set(labels[col]) <= set(range(20)) and {18, 19} <= set(labels[col])
        # val and test are large enough to measure on (15% and 25% of the patients, not Ext-ICD's 5%)
        share = labels.groupby("subject_id")[col].first().value_counts(normalize=True)
        assert share[18] == pytest.approx(0.15, abs=0.05) and share[19] == pytest.approx(0.25, abs=0.05)
    codes = labels.all_diag_all.map(ast.literal_eval)
    assert all(c in CCSR_DEFAULT for cs in codes for c in cs)
    cir = codes.map(lambda cs: [c for c in cs if CCSR_DEFAULT[c].startswith("CIR")])
    assert cir.map(len).gt(0).mean() > 0.5 and codes.map(lambda cs: "E119" in cs).any()
    common = [c for c in CCSR_DEFAULT if CCSR_DEFAULT[c].startswith("CIR")
              and labels.subject_id[cir.map(lambda cs, c=c: c in cs)].nunique() >= 3]
    for fold in (18, 19):   # val and test hold positives of every common label
        in_fold = cir[labels.strat_fold == fold]
        assert all(in_fold.map(lambda cs, c=c: c in cs).any() for c in common), fold


def test_ecg_heart_rate_matches_truth(synth_dir):
    recs = pd.read_parquet(synth_dir / "truth" / "ecg_records.parquet")
    errors = []
    for r in recs.head(60).itertuples():
        x = wfdb.rdrecord(str(synth_dir / "ecg" / r.path), channel_names=["II"]).p_signal[:, 0]
        d = np.diff(x, prepend=x[0])
        energy = np.convolve(d * d, np.ones(40) / 40, mode="same")           # QRS energy (80 ms window)
        peaks, _ = find_peaks(energy, height=0.3 * np.percentile(energy, 99.5), distance=150)
        errors.append(abs(60.0 * 500 / np.mean(np.diff(peaks)) - r.heart_rate_bpm))
    assert max(errors) <= 5.0, sorted(errors)[-5:]


def test_latents_shape_the_echo_and_the_labels(synth_dir):
    patients = pd.read_parquet(synth_dir / "truth" / "patients.parquet").set_index("subject_id")
    good = _truth(synth_dir).query("defect == 'none'")
    dark, bright = {}, {}
    for row in good.itertuples():   # shares of the sector's central region that are blood / myocardium
        frame = pixel_array(synth_dir / "echo" / row.path, index=0)[: row.strip_y0, :, 0].astype(np.float32)
        h, w = frame.shape
        centre = cv2.blur(frame, (9, 9))[int(0.1 * h): int(0.8 * h), int(w / 2 - 0.3 * h): int(w / 2 + 0.3 * h)]
        dark.setdefault(row.subject_id, []).append(float((centre < 20).mean()))
        bright.setdefault(row.subject_id, []).append(float((centre > 110).mean()))
    ids = sorted(dark)
    rho_cavity = spearmanr([np.mean(dark[i]) for i in ids], patients.loc[ids, "lv_size"]).statistic
    rho_wall = spearmanr([np.mean(bright[i]) for i in ids], patients.loc[ids, "wall_thickness"]).statistic
    assert rho_cavity > 0.6 and rho_wall > 0.6, (rho_cavity, rho_wall)
    hyp = patients.cir_codes.map(lambda cs: bool({"I110", "I119"} & set(cs)))
    high = patients.wall_thickness > 0.5
    assert hyp[high].mean() > hyp[~high].mean() + 0.25
    for col in ("wall_thickness", "lv_size", "valve_jet"):
        assert abs(patients[col].mean()) < 0.5 and 0.6 < patients[col].std() < 1.4
    # ... and, weakly, the ECG: a Sokolow-Lyon-like voltage (R in V5 + S in V1) rises with wall thickness
    voltage = {}
    for r in pd.read_parquet(synth_dir / "truth" / "ecg_records.parquet").itertuples():
        x = wfdb.rdrecord(str(synth_dir / "ecg" / r.path), channel_names=["V1", "V5"]).p_signal
        voltage.setdefault(r.subject_id, []).append(np.percentile(x[:, 1], 99.5) - np.percentile(x[:, 0], 0.5))
    ids = sorted(voltage)
    rho = spearmanr([np.mean(voltage[i]) for i in ids], patients.loc[ids, "wall_thickness"]).statistic
    assert 0.3 < rho < 0.9, rho


def test_ventricle_and_strip_share_one_rhythm(synth_dir):
    """The strip's R waves sit at the truth R peaks, and the decoded cavity shrinks after each of them."""
    good = _truth(synth_dir).query("defect == 'none'")
    for row in good.itertuples():
        peaks = np.asarray(row.r_peaks_ms) / 1000.0
        ecg = np.asarray(row.ecg_100hz)
        for p in peaks[(peaks > 0.06) & (peaks < len(ecg) / 100.0 - 0.06)]:
            k = int(round(p * 100))
            assert abs((k - 6 + np.argmax(ecg[k - 6: k + 7])) * 10 + 5 - p * 1000) <= 15
    for row in good.head(4).itertuples():
        ds = pydicom.dcmread(synth_dir / "echo" / row.path)
        area = []
        for jpeg in generate_frames(ds.PixelData, number_of_frames=row.n_frames):
            grey = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)[: row.strip_y0]
            h, w = grey.shape
            box = cv2.blur(grey, (9, 9))[int(0.1 * h): int(0.8 * h), int(w / 2 - 0.3 * h): int(w / 2 + 0.3 * h)]
            area.append(float((box < 20).mean()))
        times = np.arange(row.n_frames) * row.frame_time_ms / 1000.0
        expected = contraction(times, np.asarray(row.r_peaks_ms) / 1000.0)
        assert np.corrcoef(area, expected)[0, 1] < -0.8


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate(tmp_path / "a", SynthConfig(seed=3, **TINY))
    b = generate(tmp_path / "b", SynthConfig(seed=3, **TINY))
    c = generate(tmp_path / "c", SynthConfig(seed=4, **TINY))
    ha, hb, hc = _hashes(a), _hashes(b), _hashes(c)
    assert ha == hb and len(ha) > 10
    assert ha != hc
    assert _hashes(generate(tmp_path / "d", SynthConfig(seed=3, **TINY), workers=1)) == ha   # in-process rendering


def test_record_writer_is_byte_identical_to_wfdb_wrsamp(tmp_path):
    sig = np.random.default_rng(0).normal(0, 0.6, (5000, 12))
    when = dt.datetime(2150, 3, 4, 5, 6, 7)
    write_record(tmp_path / "own", "12345678", sig, when)
    (tmp_path / "ref").mkdir()
    wfdb.wrsamp("12345678", fs=500, units=["mV"] * 12, sig_name=LEAD_NAMES, d_signal=to_digital(sig).astype(int),
                fmt=["16"] * 12, adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path / "ref"),
                base_time=when.time(), base_date=when.date())
    for ext in (".hea", ".dat"):
        assert (tmp_path / "own" / f"12345678{ext}").read_bytes() == (tmp_path / "ref" / f"12345678{ext}").read_bytes()


def test_write_us_multiframe_helper(tmp_path):
    frames = np.zeros((2, 64, 80, 3), np.uint8)
    frames[:, 40:43] = (0, 165, 94)
    p = write_us_multiframe(tmp_path / "x.dcm", frames, 40.0, PatientName="Doe^Jane", PatientBirthDate="19700101")
    ds = pydicom.dcmread(p)
    assert ds.PatientName == "Doe^Jane" and ds.NumberOfFrames == 2 and ds.CineRate == 25
    assert ds.pixel_array.shape == (2, 64, 80, 3)


def test_cli_refuses_foreign_folder_and_reruns_on_its_own(tmp_path, capsys):
    from eee_ray.cli import main

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["synth", "--output", str(foreign)]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("".join(f"{k}: {v}\n" for k, v in TINY.items()))
    out = tmp_path / "out"
    for _ in range(2):   # a previous synth output may be regenerated in place
        assert main(["synth", "--output", str(out), "--config", str(cfg), "--seed", "5"]) == 0
    assert "echo files" in capsys.readouterr().out and (out / "truth" / "cines.parquet").is_file()
    assert main(["synth", "--output", str(foreign), "--config", str(cfg), "--overwrite"]) == 0
    assert (foreign / "notes.txt").is_file() and (foreign / "echo" / "echo-record-list.csv").is_file()


def test_stratified_folds_keep_the_labels_in_proportion_with_a_large_test_share():
    """With uneven fold shares (the control world: 20 % train, 10 % val, 70 % test) the stratified folds hold
    the CIR-positive patients in proportion to their sizes: no split gets the sick patients first. Measured over
    seeds 0-4: the share of patients with a CIR code differs between train and test by at most 0.05 (it differed by
    0.76-0.82 when the fold with the largest share drew every labelled patient first). Bound 0.1."""
    from eee_ray.synth.labels import assign_folds, make_patients

    shares = np.array(SynthConfig(val_share=0.1, test_share=0.7).fold_shares)
    for seed in range(2):
        rng = np.random.default_rng(seed)
        cir = [set(p.cir_codes) for p in make_patients(rng, list(range(1920)), 320)]
        fold = assign_folds(rng, cir, stratify=True, shares=shares)
        sick = np.array([bool(c) for c in cir])
        train, test = fold < 18, fold == 19
        assert train.mean() == pytest.approx(0.2, abs=0.02) and test.mean() == pytest.approx(0.7, abs=0.02)
        assert abs(sick[train].mean() - sick[test].mean()) < 0.1, (sick[train].mean(), sick[test].mean())


def test_extra_test_patients_add_test_records_and_change_nothing_else(tmp_path):
    """``extra_test_patients`` (the control world's large test split) adds ECG-only patients with records and echo
    measurements in fold 19; every file of the world without them stays byte-identical or keeps its rows."""
    a = generate(tmp_path / "a", SynthConfig(seed=3, **TINY), workers=1)
    e = generate(tmp_path / "e", SynthConfig(seed=3, extra_test_patients=3, **TINY), workers=1)
    ha, he = _hashes(a), _hashes(e)
    listed = {"synth.json", "config.yaml", "structured_measurement.csv", "ecg/record_list.csv",
              "ecg/records_w_diag_icd10.csv", "truth/patients.parquet", "truth/ecg_records.parquet"}
    kept = {k: v for k, v in ha.items() if k not in listed}
    assert kept == {k: v for k, v in he.items() if k in ha and k not in listed}
    for name in ("ecg/records_w_diag_icd10.csv", "structured_measurement.csv"):
        ta, te = pd.read_csv(a / name), pd.read_csv(e / name)
        pd.testing.assert_frame_equal(te.iloc[:len(ta)], ta)
    labels = pd.read_csv(e / "ecg/records_w_diag_icd10.csv")
    extra = labels[~labels.subject_id.isin(pd.read_csv(a / "ecg/record_list.csv").subject_id)]
    assert extra.subject_id.nunique() == 3 and set(extra.fold) == set(extra.strat_fold) == {19}
    assert all((e / "ecg" / p).with_suffix(".hea").is_file()
               for p in pd.read_csv(e / "ecg/record_list.csv").set_index("study_id").loc[extra.study_id, "path"])
    assert set(extra.subject_id) & set(pd.read_csv(e / "structured_measurement.csv").subject_id)  # labelled
