"""Ingest robustness: the bad-input corpus next to good files, and Ctrl-C then resume.

Every input file must give exactly one manifest row with the right reason, the good files' clips must be identical
to those of a clean run, and an interrupted ingest re-run on the same output must end with each file exactly once.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import _background
from _platform_helpers import child_env, ingest_cmd, raw_manifest, reasons, short_temp_dir, start_store
from eee_ray.synth.bad_inputs import write_bad_input_corpus

pytestmark = pytest.mark.slow

GOOD_COPIES = 4          # accepted synthetic cines copied beside the corpus
CTRL_C_FILES = 24


def good_paths(synth_dir: Path, n: int) -> list[str]:
    truth = pd.read_parquet(synth_dir / "truth" / "cines.parquet")
    return sorted(truth.loc[truth["expected_reason"].isna(), "path"])[:n]


def clip_rows(out: Path, paths: list[str]) -> pa.Table:
    t = pq.read_table(out / "clips")
    keep = pa.array([p in set(paths) for p in t.column("path").to_pylist()])
    return t.filter(keep).sort_by("path")


@pytest.fixture(scope="module")
def corpus_run(synth_dir, ray_session, tmp_path_factory):
    from eee_ray.ingest import IngestConfig, run_ingest

    inp = tmp_path_factory.mktemp("robust_in")
    cases = [(f"corpus/{p}", r) for p, r in write_bad_input_corpus(inp / "corpus")]
    good = good_paths(synth_dir, GOOD_COPIES)
    for rel in good:
        (inp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(synth_dir / "echo" / rel, inp / rel)
    out = tmp_path_factory.mktemp("robust_out")
    summary = run_ingest(IngestConfig(input=str(inp), output=str(out)))
    return cases, good, out, summary


def test_corpus_every_file_one_row_with_the_right_reason(corpus_run):
    cases, good, out, summary = corpus_run
    manifest = raw_manifest(out)
    counts = Counter(manifest["path"])
    assert {p for p, n in counts.items() if n != 1} == set()
    expected = dict(cases)
    expected.update({p: None for p in good})
    got = reasons(manifest)
    assert set(got) == {p for p, _ in cases} | set(good)
    wrong = {p: (want, got[p]) for p, want in expected.items() if got[p] != want}
    assert wrong == {}, "path: (expected, got)"
    assert summary.total == len(got)
    for p, status in zip(manifest["path"], manifest["status"]):
        assert status == ("ok" if got[p] is None else "rejected"), p


def test_corpus_good_files_identical_to_a_clean_run(corpus_run, ingested_dir):
    _, good, out, _ = corpus_run
    mixed, clean = clip_rows(out, good), clip_rows(ingested_dir, good)
    assert mixed.num_rows == clean.num_rows == len(good)
    assert mixed.column_names == clean.column_names
    for name in mixed.column_names:
        assert mixed.column(name).equals(clean.column(name)), name


def start_ctrl_c(synth_dir: Path, mktemp, store: Path) -> _background.Job:
    work = mktemp("ctrl_c")
    start_store(work, store)   # the ingest's default MLflow store (beside its output), initialised
    ray_tmp = short_temp_dir("eee_ctrlc_")
    return _background.Job([sys.executable, str(Path(__file__).with_name("_ctrl_c_run.py")), str(synth_dir / "echo"),
                            str(work / "out"), str(CTRL_C_FILES)], child_env(RAY_TMPDIR=ray_tmp), ray_tmp,
                           work / "out")


@pytest.mark.background("ctrl_c", start_ctrl_c, phase="slow")
def test_ctrl_c_then_rerun_resumes_without_loss_or_duplicates(synth_dir, ray_session, tmp_path_factory,
                                                             _empty_mlflow_store, capsys):
    """A real Ctrl-C (SIGINT to the process group of `eee-ray ingest`, with the local Ray it started) mid-run, in a
    subprocess started in the background (tests/_ctrl_c_run.py), then the same command again (in this process, on
    the session's Ray: a second local Ray start adds nothing)."""
    from eee_ray import cli

    interrupted, out = _background.result("ctrl_c", start_ctrl_c, "CTRLC", 600, synth_dir, tmp_path_factory.mktemp,
                                          _empty_mlflow_store)
    rc, log1 = interrupted["rc"], interrupted["log"]
    assert rc != 0, f"the ingest finished before Ctrl-C reached it:\n{log1}"
    before = raw_manifest(out)
    assert 0 < len(before) < CTRL_C_FILES, log1

    assert cli.main(ingest_cmd(synth_dir / "echo", out, CTRL_C_FILES)[3:]) == 0
    assert f"{len(before)} already done" in capsys.readouterr().out

    manifest = raw_manifest(out)
    truth = pd.read_parquet(synth_dir / "truth" / "cines.parquet").sort_values("path").head(CTRL_C_FILES)
    assert sorted(manifest["path"]) == truth["path"].tolist()            # each file once, none lost
    clips = pq.read_table(out / "clips", columns=["path"]).column("path").to_pylist()
    assert sorted(clips) == sorted(manifest.loc[manifest["status"] == "ok", "path"])
    assert reasons(manifest) == reasons(truth, "expected_reason")
