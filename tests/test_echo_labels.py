"""Echo-measurement labels: MIMIC-IV-ECHO's long ``structured_measurement`` table -> EchoNext's structural findings
per TTE -> each ECG labelled from the nearest TTE of its patient within the window; the synthetic table carries
its patients' latents."""

from __future__ import annotations

import pandas as pd
import pytest

from eee_ray.ecgdata.echo_labels import load_measurement_mapping, nearest_study, read_mimic_echo, study_findings
from eee_ray.errors import UserError


def _long(rows):
    # columns in an unusual order: they are read by name
    return pd.DataFrame(rows, columns=["result", "measurement", "test_type", "measurement_datetime", "measurement_id",
                                       "subject_id"]).astype(str)


def test_findings_follow_the_echonext_definitions():
    m = load_measurement_mapping()
    t = "2150-01-01 10:00:00"
    table = _long([
        ("40", "LVEF", "TTE", t, "1", "7"), ("1.35", "LVPWd", "TTE", t, "1", "7"),
        ("Mild to moderate", "Mitral regurgitation", "TTE", t, "1", "7"),
        ("Moderate to severe", "Aortic stenosis", "TTE", t, "1", "7"), ("3.2", "TR peak velocity", "TTE", t, "1", "7"),
        ("55", "LVEF", "TTE", t, "2", "7"), ("1.1", "IVSd", "TTE", t, "2", "7"), ("moderate", "mitral regurgitation",
                                                                                  "TTE", t, "2", "7"),
        ("small", "Pericardial effusion", "TTE", t, "2", "7"), ("n/a", "LVEF", "TTE", t, "2", "7"),
        ("20", "LVEF", "TEE", t, "3", "7"),  # a TEE is left out
    ])
    studies, notes = study_findings(table, m)
    s = studies.set_index("study")
    assert list(s.index) == ["1", "2"]
    one, two = s.loc["1"], s.loc["2"]
    assert one["lvef_le_45"] == 1 and one["lv_wall_ge_1.3cm"] == 1 and one["mr_moderate_plus"] == 0
    assert one["as_moderate_plus"] == 1 and one["tr_velocity_ge_3.2"] == 1 and one["any_structural"] == 1
    assert two["lvef_le_45"] == 0 and two["lv_wall_ge_1.3cm"] == 0 and two["mr_moderate_plus"] == 1
    assert two["pericardial_effusion_moderate_plus"] == 0 and two["any_structural"] == 1
    assert any("10 of 11 rows are TTE" in n for n in notes) and any("could not be read" in n for n in notes)
    assert m.label_names[-1] == "any_structural" and len(m.label_names) == 11


def test_nearest_tte_within_the_window():
    studies = pd.DataFrame({"subject_id": ["7", "7", "8"],
                            "time": pd.to_datetime(["2150-01-01", "2150-03-01", "2150-01-01"])})
    ecg = pd.DataFrame({"subject_id": ["7", "7", "7", "8", "9"],
                        "ecg_time": pd.to_datetime(["2150-01-10", "2150-02-20", "2150-06-01", "2150-01-31",
                                                    "2150-01-01"])})
    assert list(nearest_study(ecg, studies, 30)) == [0, 1, -1, 2, -1]
    assert list(nearest_study(ecg, studies, 5)) == [-1, -1, -1, -1, -1]


def test_a_user_mapping_renames_columns_and_a_bad_one_fails_in_one_line(tmp_path):
    import yaml

    from eee_ray.ecgdata.echo_labels import DEFAULT_MAPPING

    raw = yaml.safe_load(DEFAULT_MAPPING.read_text())
    raw["columns"]["value"] = "value_text"
    raw["findings"] = {"ef_low": {"kind": "numeric", "measurements": ["EF (%)"], "op": "<", "threshold": 50}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(raw))
    m = load_measurement_mapping(tmp_path / "m.yaml")
    table = _long([("48", "EF (%)", "TTE", "2150-01-01", "1", "7")]).rename(columns={"result": "value_text"})
    assert study_findings(table, m)[0].loc[0, "ef_low"] == 1
    raw["findings"]["ef_low"]["op"] = "=<"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match="op must be one of"):
        load_measurement_mapping(tmp_path / "bad.yaml")


def test_synthetic_measurements_label_ecgs_from_the_latents(synth_dir):
    """The generator's table drives labels that follow the truth: low LVEF <-> large ventricle, moderate+ MR <->
    strong valve jet; ECGs without a TTE in the window are left out with a reason."""
    table, notes = read_mimic_echo(synth_dir, load_measurement_mapping(), 30.0)
    used = table[table["reason"] == ""]
    left = table[table["reason"] != ""]
    assert len(used) > 0.5 * len(table) and len(left) > 0  # most ECGs have a TTE nearby, some do not
    assert left["reason"].str.contains("no TTE of this patient within 30 days").all()
    assert any(f"{len(left)} of {len(table)} ECG record(s) have no TTE" in n for n in notes)
    assert used.groupby("patient_id")["split"].nunique().max() == 1 and {"train", "val", "test"} <= set(used["split"])
    truth = pd.read_parquet(synth_dir / "truth" / "patients.parquet").set_index("subject_id")
    lat = truth.loc[used["patient_id"].astype(int)]
    for label, latent in (("lvef_le_45", "lv_size"), ("mr_moderate_plus", "valve_jet"),
                          ("lv_wall_ge_1.3cm", "wall_thickness")):
        pos = used["labels"].map(lambda ls: label in ls).to_numpy()
        assert 0 < pos.sum() < len(pos), label
        gap = lat[latent].to_numpy()[pos].mean() - lat[latent].to_numpy()[~pos].mean()
        assert gap > 1.0, (label, gap)  # latents are standardised: positives sit > 1 SD higher
    raw = pd.read_csv(synth_dir / "structured_measurement.csv")
    assert list(raw.columns) == ["subject_id", "measurement_id", "measurement_datetime", "test_type", "measurement",
                                 "result"]
    per_study = raw.groupby("measurement_id")["measurement"].nunique()
    assert 0.5 < per_study.mean() / 12 < 0.95 and set(raw["test_type"]) == {"TTE", "TEE"}  # missingness, TEEs


def test_the_controls_eval_patients_are_the_benchmarks_val_and_test_patients(synth_dir, tmp_path):
    """What pretraining leaves out (``positive_control.eval_patients``) is what the echo-measurement benchmark
    validates and tests on: no val or test patient is missing from the list, no training patient is in it."""
    from eee_ray.positive_control import eval_patients

    table, _ = read_mimic_echo(synth_dir, load_measurement_mapping(), 30.0)
    used = table[table["reason"] == ""]
    held = set(pd.read_csv(eval_patients(synth_dir, tmp_path / "eval.csv"))["subject_id"].astype(str))
    assert set(used.loc[used["split"] != "train", "patient_id"]) <= held
    assert not set(used.loc[used["split"] == "train", "patient_id"]) & held


def test_eval_patients_follow_the_fallback_split_of_a_world_without_val_and_test_folds(synth_dir, tmp_path):
    """A world too small to fill the Ext-ICD folds 18/19 is split 60/20/20 by the benchmark; what pretraining
    leaves out follows that split too (a copy of the synthetic tables with every fold moved off 18 and 19)."""
    import shutil

    from eee_ray.positive_control import eval_patients

    ecg = tmp_path / "synth" / "ecg"
    ecg.mkdir(parents=True)
    for name in ("record_list.csv", "DXCCSR_synthetic.csv"):
        shutil.copy(synth_dir / "ecg" / name, ecg / name)
    shutil.copy(synth_dir / "structured_measurement.csv", tmp_path / "synth")
    lab = pd.read_csv(synth_dir / "ecg" / "records_w_diag_icd10.csv", dtype=str)
    for col in ("fold", "strat_fold"):
        lab[col] = lab[col].astype(int) % 18
    lab.to_csv(ecg / "records_w_diag_icd10.csv", index=False)

    table, notes = read_mimic_echo(tmp_path / "synth", load_measurement_mapping(), 30.0)
    used = table[table["reason"] == ""]
    assert any("60/20/20" in n for n in notes) and set(used["split"]) == {"train", "val", "test"}
    held = set(pd.read_csv(eval_patients(tmp_path / "synth", tmp_path / "eval.csv"))["subject_id"].astype(str))
    assert held == set(used.loc[used["split"] != "train", "patient_id"])


def test_benchmark_reads_echo_measurement_labels_and_refuses_them_for_ptbxl(synth_dir, tmp_path):
    from eee_ray.downstream import BenchmarkConfig
    from eee_ray.downstream.grid import read_table

    table, notes, leads = read_table(BenchmarkConfig(data=str(synth_dir), labels="echo-measurements",
                                                     leads=["II"]))
    used = table[table["reason"] == ""]
    assert leads == ["II"] and set().union(*used["labels"]) <= set(load_measurement_mapping().label_names)
    assert "any_structural" in set().union(*used["labels"]) and any("no TTE" in n for n in notes)
    with pytest.raises(UserError, match="needs MIMIC-IV-ECG records"):
        BenchmarkConfig(data=str(tmp_path), dataset="ptbxl", labels="echo-measurements").validate()
