"""Robustness report: the bad-input corpora and three injected faults, one table.

DICOM scenarios (``--scenarios dicom``):
  corpus           every kind of broken input (``eee_ray.synth.bad_inputs``) beside good synthetic cines
  ingest-kill      a Ray Data worker dies hard mid-ingest (``EEE_RAY_FAULTS=ingest_worker_crash=PATH``)
  ctrl-c           `eee-ray ingest` gets SIGINT mid-run (whole process group), then the same command again
  train-kill       a Ray Train worker exits at the start of epoch 2 (``EEE_RAY_FAULTS=pretrain_worker_exit=EPOCH``)
Hostile inputs besides DICOMs (``--scenarios hostile``, ``eee_ray.synth.hostile_inputs``): checkpoints, WFDB records
and record lists (through `eee-ray predict` on Ray), label tables, echo-record-list paths, YAML configs, waveform
Parquets (per-row cases through `eee-ray predict` on Ray).

Columns: inputs tried (files, records, rows, or epochs for training), verdicts right (the expected reason, error
line or acceptance; epochs run once, in order, with finite losses), wrong, crashes (a run that raised or exited
non-zero where it should not; a traceback where one error line was due), lost / duplicated (inputs missing from or
repeated in the outputs; epochs missing from the history, or trained twice because a restart did not resume from
the last checkpoint).

    python benchmarks/robustness.py [--scenarios all|dicom|hostile] [--synth DIR] [--patients 6] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from _platform_helpers import (child_env, ingest_cmd, interrupt_ingest, kill_processes_of,  # noqa: E402
                               raw_manifest, reasons, short_temp_dir)

from eee_ray.config import MlflowConfig  # noqa: E402
from eee_ray.faults import injected  # noqa: E402
from eee_ray.synth.bad_inputs import write_bad_input_corpus  # noqa: E402

GOOD_COPIES = 4
CTRL_C_FILES = 24
TRAIN_EPOCHS = 3
FAIL_EPOCH = 2


@dataclass
class Row:
    scenario: str
    fault: str
    tried: int
    right: int
    wrong: int
    crashed: int
    lost: int
    duplicated: int
    seconds: float
    note: str = ""


def check_files(out: Path, expected: dict[str, str | None]) -> tuple[int, int, int, int, list[str]]:
    """(right, wrong, lost, duplicated, wrong details) of a manifest against ``path -> expected reason``."""
    manifest = raw_manifest(out)
    counts = Counter(manifest["path"])
    got = reasons(manifest)
    wrong = [f"{p}: expected {want or 'ok'}, got {got[p] or 'ok'}" for p, want in expected.items()
             if p in got and got[p] != want]
    lost = sum(1 for p in expected if p not in got)
    right = len(expected) - lost - len(wrong)
    return right, len(wrong), lost, sum(n - 1 for n in counts.values()), wrong


def truth_reasons(synth: Path, limit: int | None = None) -> dict[str, str | None]:
    truth = pd.read_parquet(synth / "truth" / "cines.parquet").sort_values("path")
    return reasons(truth.head(limit) if limit else truth, "expected_reason")


def corpus(synth: Path, work: Path) -> Row:
    from eee_ray.ingest import IngestConfig, run_ingest

    inp = work / "corpus_in"
    expected = {f"corpus/{p}": r for p, r in write_bad_input_corpus(inp / "corpus")}
    good = [p for p, r in truth_reasons(synth).items() if r is None][:GOOD_COPIES]
    for rel in good:
        (inp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(synth / "echo" / rel, inp / rel)
        expected[rel] = None
    t0 = time.perf_counter()
    crash = ""
    try:
        run_ingest(IngestConfig(input=str(inp), output=str(work / "corpus_out")))
    except Exception as e:  # the report counts it instead of stopping
        crash = f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - t0
    right, wrong, lost, dup, details = check_files(work / "corpus_out", expected)
    return Row("corpus", f"{len(expected) - len(good)} broken/unusual files", len(expected), right, wrong,
               int(bool(crash)), lost, dup, seconds, crash or "; ".join(details))


def ingest_kill(synth: Path, work: Path) -> Row:
    from eee_ray.ingest import IngestConfig, run_ingest

    marker = work / "ingest_crashed"
    t0 = time.perf_counter()
    crash = ""
    try:
        with injected(ingest_worker_crash=marker):
            run_ingest(IngestConfig(input=str(synth / "echo"), output=str(work / "kill_out")))
    except Exception as e:
        crash = f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - t0
    expected = truth_reasons(synth)
    right, wrong, lost, dup, details = check_files(work / "kill_out", expected)
    fault = "worker os._exit(1) once" if marker.exists() else "NOT TRIGGERED"
    return Row("ingest-kill", fault, len(expected), right, wrong, int(bool(crash)), lost, dup, seconds,
               crash or "; ".join(details))


def ctrl_c(synth: Path, work: Path) -> Row:
    out = work / "ctrlc_out"
    ray_tmp = short_temp_dir("eee_rb_")
    env = child_env(RAY_TMPDIR=ray_tmp)
    t0 = time.perf_counter()
    try:
        rc, _ = interrupt_ingest(synth / "echo", out, CTRL_C_FILES, env)
        kill_processes_of(ray_tmp)
        done_before = len(raw_manifest(out))
        res = subprocess.run(ingest_cmd(synth / "echo", out, CTRL_C_FILES), env=env, capture_output=True,
                             text=True, timeout=600)
    finally:
        kill_processes_of(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    seconds = time.perf_counter() - t0
    right, wrong, lost, dup, details = check_files(out, truth_reasons(synth, CTRL_C_FILES))
    fault = f"SIGINT after {done_before}/{CTRL_C_FILES} files (exit {rc})"
    return Row("ctrl-c + re-run", fault, CTRL_C_FILES, right, wrong, int(res.returncode != 0), lost, dup, seconds,
               "; ".join(details) or " / ".join(res.stderr.strip().splitlines()[-3:]) * (res.returncode != 0))


def train_kill(clips: Path, work: Path) -> Row:
    """Epochs are the inputs: each must run exactly once, in order; the restart must load the last checkpoint."""
    from eee_ray.pretrain import FAILURE_MARKER, PretrainConfig, run_pretrain

    out = work / "pretrain"
    fault = f"rank 1 exits at epoch {FAIL_EPOCH}"
    t0 = time.perf_counter()
    try:
        with injected(pretrain_worker_exit=FAIL_EPOCH):
            metrics = run_pretrain(PretrainConfig(clips=str(clips), output=str(out), epochs=TRAIN_EPOCHS, workers=2,
                                                  batch_size=4, mlflow=MlflowConfig(dir=str(work))))
    except Exception as e:
        return Row("train-kill", fault, TRAIN_EPOCHS, 0, 0, 1, TRAIN_EPOCHS, 0, time.perf_counter() - t0,
                   f"{type(e).__name__}: {e}")
    seconds = time.perf_counter() - t0
    history = metrics["history"]
    epochs = [int(h["epoch"]) for h in history]
    in_order = [e for i, e in enumerate(epochs) if e == i + 1 and math.isfinite(history[i]["loss_total"])]
    resumed_from = max(metrics["resumed_at"], default=0)
    redone = max(FAIL_EPOCH - 1 - resumed_from, 0)      # epochs trained again because the restart lost them
    counts = Counter(epochs)
    return Row("train-kill", fault if (out / FAILURE_MARKER).exists() else "NOT TRIGGERED", TRAIN_EPOCHS,
               len(in_order) - redone, len(epochs) - len(in_order), 0,
               sum(1 for e in range(1, TRAIN_EPOCHS + 1) if e not in counts),
               redone + sum(n - 1 for n in counts.values()), seconds,
               f"restarted from the checkpoint of epoch {resumed_from or 'none (from scratch)'}; loss_total per "
               "epoch " + ", ".join(f"{h['loss_total']:.3f}" for h in history))


def hostile(work: Path) -> list[Row]:
    """The hostile-input families; WFDB records, record lists and Parquet rows go through `eee-ray predict` on Ray."""
    import _hostile_checks as h

    from eee_ray.synth.hostile_inputs import write_checkpoints

    ckpt_root = work / "hostile_checkpoints"
    corpus = (ckpt_root, write_checkpoints(ckpt_root))
    good = ckpt_root / "good"
    tallies = [h.check_checkpoints(work, corpus),
               h.check_wfdb(work, through_ray=("records", "record_list"), checkpoint=good),
               h.check_labels(work), h.check_echo_list(work), h.check_configs(work, good),
               h.check_parquet(work, good, through_ray=True)]
    faults = {"checkpoints": "unsafe pickles, truncated, wrong architecture, lying meta.json, NaN weights",
              "WFDB records + record_list.csv": "header counts vs .dat size, formats, gains, fs, names, escapes",
              "label tables + record_list.csv": "malformed/nested/huge code lists, duplicate or missing ids, escapes",
              "echo-record-list.csv paths": "absolute, '..', links out of the root, conflicting IDs",
              "YAML configs": "unknown keys, wrong types, tags, alias bomb, huge/deep/non-UTF-8 files",
              "waveform Parquet inputs": "not Parquet, missing/mistyped columns, bad rows"}
    return [Row(f"hostile: {t.family}", faults[t.family], t.tried, t.right, len(t.wrong), t.crashes, t.lost,
                t.duplicated, t.seconds, "; ".join(t.wrong)) for t in tallies]


def table(rows: list[Row]) -> str:
    head = ("| scenario | fault injected | inputs tried | verdicts right | wrong | crashes | lost | duplicated "
            "| seconds |\n|---|---|---:|---:|---:|---:|---:|---:|---:|")
    lines = [f"| {r.scenario} | {r.fault} | {r.tried} | {r.right} | {r.wrong} | {r.crashed} | "
             f"{r.lost} | {r.duplicated} | {r.seconds:.1f} |" for r in rows]
    notes = [f"- {r.scenario}: {r.note}" for r in rows if r.note]
    return "\n".join([head, *lines, "", *notes])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", choices=("all", "dicom", "hostile"), default="all",
                    help="the DICOM corpus and injected faults, the hostile inputs besides DICOMs, or both")
    ap.add_argument("--synth", help="an existing `eee-ray synth` output (default: generate one)")
    ap.add_argument("--patients", type=int, default=6, help="patients of the generated synthetic set")
    ap.add_argument("--out", help="work folder (default: a temp dir, removed afterwards)")
    args = ap.parse_args(argv)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="eee_robust_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        from eee_ray.runtime import init_ray

        rows: list[Row] = []
        if args.scenarios in ("all", "dicom"):
            synth = Path(args.synth) if args.synth else None
            if synth is None:
                from eee_ray.synth import SynthConfig, generate

                synth = generate(work / "synth", SynthConfig(seed=0, patients=args.patients))
            rows.append(ctrl_c(synth, work))
            init_ray(2)
            rows += [corpus(synth, work), ingest_kill(synth, work), train_kill(work / "kill_out", work)]
        if args.scenarios in ("all", "hostile"):
            init_ray(2)
            rows += hostile(work / "hostile")
        print(table(rows))
        return 0 if all(not r.crashed and r.wrong == r.lost == r.duplicated == 0 for r in rows) else 1
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
