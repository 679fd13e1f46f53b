"""Run each family of the hostile-input corpus (``eee_ray.synth.hostile_inputs``) and count its verdicts.

Shared by ``tests/test_hostile_inputs.py`` and ``benchmarks/robustness.py``. A whole-command case is right when the
CLI's ``main`` returns 2 with exactly one ``eee-ray <cmd>: error: ...`` line holding the expected text, no traceback
and no advice to load anything unsafely; a per-record case is right when its one output row carries the expected
reason (or none, for an accepted record). An exception escaping ``main`` is a crash; a case without an output row
is lost, a second row for it duplicated.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from eee_ray.synth.hostile_inputs import (LEADS, MARKER_NAME, OK, Case, write_checkpoints, write_config_corpus,
                                          write_echo_list_corpus, write_label_corpus, write_parquet_corpus,
                                          write_wfdb_corpus)

UNSAFE_ADVICE = ("weights_only` set to `False", "weights_only=False")


@dataclass
class Tally:
    family: str
    tried: int = 0
    right: int = 0
    crashes: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return self.right == self.tried and not (self.crashes or self.lost or self.duplicated or self.wrong)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stderr, traceback or '') of ``eee-ray ARGV`` run in-process."""
    from eee_ray.cli import main

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main([str(a) for a in argv])
    except SystemExit as e:
        return int(e.code or 0), err.getvalue(), ""
    except BaseException:  # noqa: BLE001 - the tally counts it
        return -1, err.getvalue(), traceback.format_exc()
    return rc, err.getvalue(), ""


def judge_whole(tally: Tally, case: Case, argv: list[str], expect: str | None = None) -> None:
    """Run ``argv`` and count the verdict: exit 2, one error line with ``expect`` (default ``case.expect``)."""
    cmd = str(argv[0])
    rc, err, crash = run_cli(argv)
    tally.tried += 1
    if crash:
        tally.crashes += 1
        tally.wrong.append(f"{case.name}: crashed: {crash.strip().splitlines()[-1]}")
        return
    want = case.expect if expect is None else expect
    lines = [ln for ln in err.splitlines() if ln.startswith("eee-ray ")]
    problems = []
    if rc != 2:
        problems.append(f"exit {rc}")
    if len(lines) != 1 or not lines[0].startswith(f"eee-ray {cmd}: error: "):
        problems.append(f"{len(lines)} eee-ray line(s)")
    elif want not in lines[0]:
        problems.append(f"message {lines[0]!r} lacks {want!r}")
    if "Traceback" in err or any(a in err for a in UNSAFE_ADVICE):
        problems.append("traceback or unsafe-loading advice printed")
    if problems:
        tally.wrong.append(f"{case.name}: {'; '.join(problems)}")
    else:
        tally.right += 1


def judge_rows(tally: Tally, cases: list[Case], got: pd.DataFrame) -> None:
    """Per-record cases against output rows ``record_id, reason`` (a record id may be expected more than once)."""
    want: dict[str, list[str]] = defaultdict(list)
    for c in cases:
        want[c.name].append(c.expect)
    have: dict[str, list[str]] = defaultdict(list)
    for rid, reason in zip(got["record_id"].astype(str), got["reason"].fillna("").astype(str)):
        have[rid].append(reason)
    for rid, expects in want.items():
        reasons = list(have.get(rid, []))
        tally.tried += len(expects)
        tally.lost += max(0, len(expects) - len(reasons))
        tally.duplicated += max(0, len(reasons) - len(expects))
        for e in sorted(expects, key=len, reverse=True):  # most specific first
            match = next((r for r in reasons if (r == "" if e == OK else e in r)), None)
            if match is None:
                tally.wrong.append(f"{rid}: expected {e or 'accepted'}, got {reasons or 'no row'}")
            else:
                reasons.remove(match)
                tally.right += 1


def _timed(fn):
    def wrapper(*args, **kwargs) -> Tally:
        t0 = time.perf_counter()
        tally = fn(*args, **kwargs)
        tally.seconds = time.perf_counter() - t0
        return tally
    wrapper.__name__ = fn.__name__
    return wrapper


def _good_record(folder: Path) -> Path:
    from eee_ray.synth.hostile_inputs import _signal, _write_record

    _write_record(folder, "good", _signal())
    return folder


@_timed
def check_checkpoints(work: Path, corpus: tuple[Path, list[Case]] | None = None) -> Tally:
    """Every bad checkpoint stops ``predict`` before Ray starts; the good one loads; no unsafe pickle ever ran.
    ``corpus``: an already written ``(root, cases)`` of ``write_checkpoints``."""
    from eee_ray.inference import build_model_from, read_checkpoint

    tally = Tally("checkpoints")
    root, cases = corpus or (work / "checkpoints", write_checkpoints(work / "checkpoints"))
    inp = _good_record(work / "checkpoint_input")
    for case in cases:
        if case.whole:
            judge_whole(tally, case, list(case.argv) or ["predict", "--input", inp, "--output", work / "ckpt_out",
                                                         "--checkpoint", root / case.name])
            continue
        tally.tried += 1
        try:
            build_model_from(read_checkpoint(root / case.name))
            tally.right += 1
        except Exception as e:  # noqa: BLE001
            tally.wrong.append(f"{case.name}: refused: {e}")
    if (root / MARKER_NAME).exists():
        tally.wrong.append("an unsafe pickle ran code")
    return tally


def _predict_rows(argv: list, tally: Tally, out: Path) -> pd.DataFrame | None:
    """``eee-ray predict ARGV`` on one actor (the corpus is one batch), its rows ``record_id, reason``."""
    rc, err, crash = run_cli([*argv, "--max-actors", "1", "--batch-size", "64"])
    if crash or rc != 0:
        tally.crashes += 1
        tally.wrong.append(f"predict run failed (exit {rc}): {(crash or err).strip().splitlines()[-1:]}")
        return None
    return pd.read_parquet(out, columns=["record_id", "reason"])


@_timed
def check_wfdb(work: Path, through_ray: tuple[str, ...] = (), checkpoint: Path | None = None) -> Tally:
    """Hostile WFDB records: one reason each, read from the folder and from ``record_list.csv``. By default each
    record is read as the actors read it (``wfdb_table`` then ``read_wfdb``); the inputs named in ``through_ray``
    (``records``, ``record_list``) go through ``eee-ray predict`` instead."""
    from eee_ray.ecgdata.records import SignalSpec, read_wfdb
    from eee_ray.inference import wfdb_table

    tally = Tally("WFDB records + record_list.csv")
    root = work / "wfdb"
    cases = write_wfdb_corpus(root)
    in_folder = [c for c in cases if c.family == "wfdb"]
    in_list = [c for c in cases if c.family == "record-list" or (c.name.isascii() and "\\" not in c.name)]
    inputs = [(root / "records", in_folder), (root / "record_list.csv", in_list)]
    for inp, expected in inputs:
        if inp.stem in through_ray:
            out = work / f"wfdb_out_{inp.stem}"
            got = _predict_rows(["predict", "--input", inp, "--output", out, "--checkpoint", checkpoint], tally, out)
            if got is None:
                continue
        else:
            table = wfdb_table(inp)
            reasons = [r or read_wfdb(os.fsdecode(p), LEADS, SignalSpec())[1]
                       for p, r in zip(table["path"], table["reason"])]
            got = pd.DataFrame({"record_id": table["record_id"], "reason": reasons})
        judge_rows(tally, expected, got)
    return tally


@_timed
def check_labels(work: Path) -> Tally:
    """Hostile label rows and record-list rows: a reason or the right labels per study; whole tables: one line."""
    from eee_ray.ecgdata.labels import load_mapping
    from eee_ray.ecgdata.mimic import read_mimic

    tally = Tally("label tables + record_list.csv")
    root = work / "labels"
    cases = write_label_corpus(root)
    try:
        table, _ = read_mimic(root, load_mapping(str(root / "map.json")), "category")
    except Exception:  # noqa: BLE001
        tally.crashes += 1
        tally.wrong.append(f"read_mimic crashed: {traceback.format_exc().strip().splitlines()[-1]}")
        table = pd.DataFrame(columns=["record_id", "reason", "labels"])
    per_record = [c for c in cases if not c.whole]
    judge_rows(tally, per_record, table)
    labels = {rid: tuple(labs) for rid, labs, r in zip(table["record_id"], table["labels"], table["reason"]) if not r}
    for c in per_record:
        if c.labels is not None and c.name in labels and labels[c.name] != c.labels:
            tally.right -= 1
            tally.wrong.append(f"{c.name}: labels {labels[c.name]}, expected {c.labels}")
    for c in cases:
        if c.whole:
            judge_whole(tally, c, list(c.argv))
    return tally


@_timed
def check_echo_list(work: Path) -> Tally:
    """``echo-record-list.csv`` paths that leave the input root: refused before the ingest opens them."""
    from eee_ray.ingest.discover import discover

    tally = Tally("echo-record-list.csv paths")
    root = work / "echo_in"
    cases = write_echo_list_corpus(root)
    found = discover(root)
    got = pd.DataFrame({"record_id": [f.path for f in found], "reason": [f.problem or "" for f in found]})
    judge_rows(tally, cases, got)
    return tally


@_timed
def check_configs(work: Path, checkpoint: Path) -> Tally:
    """Every bad ``--config`` stops the command with one line; an accepted one lets it go on to its input."""
    tally = Tally("YAML configs")
    root = work / "configs"
    for case in write_config_corpus(root):
        argv = ["predict", "--config", root / case.name, "--input", work / "no_such_input", "--output",
                work / "cfg_out", "--checkpoint", checkpoint]
        judge_whole(tally, case, argv, "input not found" if case.expect == OK else None)
    return tally


@_timed
def check_parquet(work: Path, checkpoint: Path, through_ray: bool = False) -> Tally:
    """Waveform Parquets: whole files of the wrong shape stop ``predict`` before Ray starts; bad rows get reasons."""
    import pyarrow.parquet as pq

    from eee_ray.ecgdata.records import SignalSpec
    from eee_ray.inference import waveform_row

    tally = Tally("waveform Parquet inputs")
    root = work / "parquet"
    cases = write_parquet_corpus(root)
    for case in cases:
        if case.whole:
            judge_whole(tally, case, ["predict", "--input", root / case.name, "--output", work / "pq_out",
                                      "--checkpoint", checkpoint])
    rows = [c for c in cases if not c.whole]
    if through_ray:
        out = work / "pq_rows_out"
        got = _predict_rows(["predict", "--input", root / "rows.parquet", "--output", out, "--checkpoint",
                             checkpoint], tally, out)
    else:
        df = pq.read_table(root / "rows.parquet").to_pandas()
        got = pd.DataFrame({"record_id": df["record_id"], "reason": [
            waveform_row(s, f, n, LEADS, SignalSpec())[1] for s, f, n in zip(df["signal"], df["fs"],
                                                                             df["lead_names"])]})
    if got is not None:
        judge_rows(tally, rows, got)
    return tally


