"""Hostile inputs besides DICOMs (``eee_ray.synth.hostile_inputs``): every case gets its expected verdict.

A file that stops the whole command gives exactly one ``eee-ray <cmd>: error: ...`` line and exit code 2 (never a
traceback, never torch's advice to load unsafely, and no pickle ever runs); a bad record gets its own reason in the
outputs while the others go through. The families run in-process through the CLI's ``main`` without Ray (checkpoint,
config and Parquet problems are all found before Ray starts; per-record verdicts are computed by the same functions
the Ray actors call); one ``eee-ray predict`` run through Ray checks the per-record path end to end.
"""

from __future__ import annotations

import pandas as pd
import pytest

from _hostile_checks import (check_checkpoints, check_configs, check_echo_list, check_labels, check_parquet,
                             check_wfdb)
from eee_ray.synth.hostile_inputs import write_checkpoints


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_ckpt")
    return root, write_checkpoints(root)


@pytest.fixture(scope="module")
def checkpoint(checkpoints):
    return checkpoints[0] / "good"


FAMILIES = {  # family -> check(work folder, (checkpoint corpus root, its cases))
    "checkpoints": lambda work, ckpts: check_checkpoints(work, ckpts),
    "wfdb_and_record_list": lambda work, ckpts: check_wfdb(work),
    "label_tables": lambda work, ckpts: check_labels(work),
    "echo_record_list": lambda work, ckpts: check_echo_list(work),
    "yaml_configs": lambda work, ckpts: check_configs(work, ckpts[0] / "good"),
    "parquet_inputs": lambda work, ckpts: check_parquet(work, ckpts[0] / "good"),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_hostile_case_gets_its_verdict(family, checkpoints, tmp_path):
    tally = FAMILIES[family](tmp_path, checkpoints)
    assert tally.wrong == [], "case: what went wrong"
    assert (tally.crashes, tally.lost, tally.duplicated) == (0, 0, 0)
    assert tally.right == tally.tried > 0


@pytest.mark.slow
def test_predict_through_ray_skips_each_hostile_record_with_its_reason(checkpoint, ray_session, tmp_path):
    """The WFDB folder through `eee-ray predict` (Ray Data actors): one row per record, non-UTF-8 file names
    included, each hostile record with its reason and a null score, the good ones scored."""
    tally = check_wfdb(tmp_path, through_ray=("records",), checkpoint=checkpoint)
    assert tally.wrong == [] and (tally.crashes, tally.lost, tally.duplicated) == (0, 0, 0)
    out = pd.read_parquet(tmp_path / "wfdb_out_records")
    good = out["reason"] == ""
    assert good.sum() == 4 and out.loc[good, "CIR007"].notna().all() and out.loc[~good, "CIR007"].isna().all()
