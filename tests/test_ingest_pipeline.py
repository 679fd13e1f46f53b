"""The Ray Data ingest end to end: synthetic data against its ground truth, the output contract, the real DICOMs,
hostile inputs, resume, exactly-once under a worker crash, PHI absence, QA pictures and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from eee_ray.faults import injected

from eee_ray.ingest import IngestConfig, read_clips, read_manifest, run_ingest
from eee_ray.ingest import schema as S
from eee_ray.ingest.discover import walk
from test_ingest_decode import cine

PHI_NAME = "Zebediah^Quuxworth"
PHI_BIRTH = "19230417"
PHI_ACCESSION = "ACCX93716"


def test_synthetic_ingest_matches_ground_truth(ingested_dir, synth_dir):
    truth = pd.read_parquet(synth_dir / "truth" / "cines.parquet")
    manifest = read_manifest(ingested_dir)
    files, _ = walk(synth_dir / "echo")
    assert sorted(manifest.path) == sorted(files)  # every input file exactly once
    merged = truth.merge(manifest, on="path", suffixes=("_truth", ""))
    assert len(merged) == len(truth)
    expected = merged.expected_reason.where(merged.expected_reason.notna(), None)
    assert list(merged.reason) == list(expected), merged[merged.reason != expected][["path", "reason", "detail"]]
    assert (merged.status == np.where(expected.isna(), S.OK, S.REJECTED)).all()
    assert (merged.subject_id == merged.subject_id_truth).all() and (merged.study_id == merged.study_id_truth).all()

    cols = ["path", "n_frames", "frame_time_ms", "ecg_px", "ecg", "trace_x0", "trace_x1"]
    clips = pq.read_table(ingested_dir / "clips", columns=cols).to_pandas().merge(truth, on="path",
                                                                                   suffixes=("", "_truth"))
    assert len(clips) == int((manifest.status == S.OK).sum())
    rs, rs_100 = [], []
    for _, c in clips.iterrows():
        assert (c.trace_x0, c.trace_x1) == (c.trace_x0_truth, c.trace_x1_truth)
        rs.append(np.corrcoef(c.ecg_px, c.trace_y)[0, 1])
        assert abs(len(c.ecg) - c.n_frames * c.frame_time_ms / 10.0) <= 0.51  # 100 Hz over the clip's duration
        n = min(len(c.ecg), len(c.ecg_100hz))
        rs_100.append(np.corrcoef(c.ecg[:n], c.ecg_100hz[:n])[0, 1])
    assert np.median(rs) >= 0.98, f"median Pearson r of ecg_px vs drawn trace: {np.median(rs):.4f}"
    assert np.median(rs_100) >= 0.95, f"median Pearson r of ecg vs the 100 Hz truth: {np.median(rs_100):.4f}"


def test_output_contract(ingested_dir, ray_session):
    for part in (ingested_dir / "manifest").glob("part-*.parquet"):
        assert pq.read_schema(part).remove_metadata() == S.MANIFEST_SCHEMA
    clip_schema = pq.read_schema(next((ingested_dir / "clips").glob("part-*.parquet")))
    assert clip_schema.names == S.clips_schema().names
    assert clip_schema.names[:10] == ["path", "subject_id", "study_id", "n_frames", "frame_time_ms", "echo",
                                      "ecg_px", "ecg", "trace_x0", "trace_x1"]
    manifest = read_manifest(ingested_dir)
    assert set(manifest.reason.dropna()) <= set(S.REASONS) and set(manifest.status) <= {S.OK, S.REJECTED}
    assert manifest[manifest.status == S.OK].reason.isna().all()
    # summary.json says where the files were processed: every one of them on this single node
    summary = json.loads((ingested_dir / "summary.json").read_text())
    assert summary["nodes"] == {ray_session.get_runtime_context().get_node_id(): len(manifest)}
    row = read_clips(ingested_dir).take(1)[0]
    assert isinstance(row["echo"], np.ndarray) and row["echo"].dtype == np.uint8
    assert row["echo"].shape == (row["n_frames"], 224, 224)
    # a plain pyarrow reader (no Ray in the process) recovers the same array through echo_from_storage
    code = ("import sys, pyarrow.parquet as pq, pyarrow.compute as pc\n"
            "from eee_ray.ingest.schema import echo_from_storage\n"
            "t = pq.read_table(sys.argv[1]); i = t.column('path').to_pylist().index(sys.argv[2])\n"
            "e = echo_from_storage(t.column('echo')[i].as_py()); assert 'ray' not in sys.modules\n"
            "print(e.shape, int(e.sum()))")
    out = subprocess.run([sys.executable, "-c", code, str(ingested_dir / "clips"), row["path"]],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == f"{row['echo'].shape} {int(row['echo'].sum())}"


def test_bytes_storage_gives_the_same_clips(ingested_dir, synth_dir, ray_session, tmp_path):
    """--echo-storage bytes writes echo as raw bytes; read_clips and echo_from_storage give the tensor output's arrays
    back, pixel for pixel, and a resume with the other storage is refused instead of mixing the two."""
    import argparse

    from eee_ray.commands import ingest as command
    from eee_ray.errors import UserError

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out = tmp_path / "bytes"
    args = parser.parse_args(["--input", str(synth_dir / "echo"), "--output", str(out), "--limit", "10",
                              "--echo-storage", "bytes"])
    assert command.run(args) == 0
    part = next((out / "clips").glob("part-*.parquet"))
    assert pq.read_schema(part).field("echo").type == S.echo_column_type("bytes")
    assert pq.read_schema(part).names == S.clips_schema().names
    got = {r["path"]: r for r in read_clips(out).take_all()}
    assert len(got) >= 5
    ref = {r["path"]: r["echo"] for r in read_clips(ingested_dir).filter(
        expr=f"path in {sorted(got)!r}").take_all()}
    assert set(ref) == set(got)
    for path, row in got.items():
        assert row["echo"].dtype == np.uint8 and row["echo"].shape == (row["n_frames"], 224, 224)
        np.testing.assert_array_equal(row["echo"], ref[path])
    t = pq.read_table(part, columns=["echo", "n_frames", "path"])
    first = S.echo_from_storage(t.column("echo")[0].as_py(), t.column("n_frames")[0].as_py())
    np.testing.assert_array_equal(first, ref[t.column("path")[0].as_py()])
    from eee_ray.pairs import PairsConfig, build_pairs

    sample = build_pairs(read_clips(out), PairsConfig()).take(1)[0]  # the next stage reads it unchanged
    assert sample["echo"].dtype == np.uint8 and sample["echo"].shape[1:] == (8, 112, 112)
    with pytest.raises(UserError, match="already holds echo stored as 'bytes'"):
        run_ingest(IngestConfig(input=str(synth_dir / "echo"), output=str(out), limit=12))
    with pytest.raises(UserError, match="echo_storage"):
        IngestConfig(input=str(synth_dir / "echo"), output=str(out), echo_storage="png").validate()


@pytest.fixture
def one_cpu_held(ray_session):
    """Another job holding one of the session's two CPUs for the duration of a test."""
    @ray_session.remote(num_cpus=1)
    class Holder:
        def ready(self) -> bool:
            return True

    holder = Holder.remote()
    ray_session.get(holder.ready.remote())
    yield
    ray_session.kill(holder)


@pytest.mark.slow
def test_real_dicoms_accounted_for_with_a_worker_crash(shared_data, one_cpu_held, tmp_path):
    marker = tmp_path / "crashed"
    with injected(ingest_worker_crash=marker):  # with only one free CPU: no deadlock either
        run_ingest(IngestConfig(input=str(shared_data / "dicom"), output=str(tmp_path / "out"), batch_files=2))
    assert marker.exists()  # one worker really died mid-run (after writing its clips, before its manifest)
    manifest = read_manifest(tmp_path / "out")
    files, _ = walk(shared_data / "dicom")
    raw = pd.concat([pd.read_parquet(p) for p in (tmp_path / "out" / "manifest").glob("part-*.parquet")])
    assert sorted(raw.path) == sorted(files)  # each file exactly once, none lost, none twice
    assert (manifest.status == S.REJECTED).all()  # none of them carries an ECG trace
    cines = manifest[manifest.sop_class_uid == S.US_MULTIFRAME_SOP]
    assert len(cines) == 4 and set(cines.reason) == {S.NO_ECG_TRACE}  # decoded, then no trace found
    assert set(manifest[manifest.sop_class_uid != S.US_MULTIFRAME_SOP].reason) == {S.NOT_US_MULTIFRAME}


def hostile_tree(root: Path) -> dict[str, str]:
    """A MIMIC-like tree with every kind of trouble; returns path -> expected reason ("" for accepted)."""
    from eee_ray.synth import write_us_multiframe

    expect = {}
    good = "files/p10/p10000001/s90000001/90000001_0001.dcm"
    write_us_multiframe(root / good, cine(4), 33.3, PatientName=PHI_NAME, PatientBirthDate=PHI_BIRTH,
                        AccessionNumber=PHI_ACCESSION, PatientID="10000001")
    expect[good] = ""
    (root / "files/p10/p10000001/s90000001/empty.dcm").write_bytes(b"")
    expect["files/p10/p10000001/s90000001/empty.dcm"] = S.NOT_DICOM
    (root / "files/p10/p10000001/s90000001/notes.txt").write_text("free text that is not DICOM\n")
    expect["files/p10/p10000001/s90000001/notes.txt"] = S.NOT_DICOM
    os.symlink("loop.dcm", root / "files/p10/p10000001/s90000001/loop.dcm")
    expect["files/p10/p10000001/s90000001/loop.dcm"] = S.UNREADABLE
    os.symlink("..", root / "files/p10/p10000001/s90000001/up")  # a directory loop: walked once, no hang
    weird = os.fsencode(root / "files/p10/p10000001/s90000001") + b"/caf\xe9_0002.dcm"
    shutil.copyfile(root / good, weird)
    expect["files/p10/p10000001/s90000001/caf\\xe9_0002.dcm"] = ""
    locked = root / "files/p10/p10000001/s90000001/locked.dcm"
    shutil.copyfile(root / good, locked)
    locked.chmod(0)
    expect[locked.relative_to(root).as_posix()] = S.UNREADABLE if os.geteuid() != 0 else ""
    rows = ["subject_id,study_id,acquisition_datetime,dicom_filepath",
            f"10000001,90000001,2180-01-01 00:00:00,{good}",
            "10000001,90000001,2180-01-01 00:00:00,../outside.dcm",
            "10000001,90000001,2180-01-01 00:00:00,/etc/passwd",
            "10000001,90000001,2180-01-01 00:00:00,files/p10/p10000001/s90000001/missing.dcm"]
    (root / "echo-record-list.csv").write_text("\n".join(rows) + "\n")
    expect.update({"../outside.dcm": S.UNREADABLE, "/etc/passwd": S.UNREADABLE,
                   "files/p10/p10000001/s90000001/missing.dcm": S.UNREADABLE})
    return expect


def test_hostile_inputs_resume_phi_and_qa(ray_session, tmp_path):
    root = tmp_path / "in"
    (root / "files/p10/p10000001/s90000001").mkdir(parents=True)
    expect = hostile_tree(root)
    out = tmp_path / "out"
    s = run_ingest(IngestConfig(input=str(root), output=str(out), qa_samples=2))
    manifest = read_manifest(out)
    got = dict(zip(manifest.path, manifest.reason.fillna("")))
    assert got == expect
    assert "outside the input root" in manifest.set_index("path").loc["../outside.dcm", "detail"]
    ok = manifest[manifest.status == S.OK]
    assert (ok.subject_id == 10000001).all() and (ok.study_id == 90000001).all()
    assert s.total == len(expect) and len(s.qa_pngs) >= 1 and all(Path(p).stat().st_size > 0 for p in s.qa_pngs)

    # no PHI anywhere in the output (manifest, clips, config, summary, QA pictures' names)
    for f in out.rglob("*"):
        if f.is_file():
            blob = f.read_bytes() + str(f).encode()
            for secret in (PHI_NAME, "Zebediah", "Quuxworth", PHI_BIRTH, PHI_ACCESSION):
                assert secret.encode() not in blob, f"{secret} leaked into {f}"

    # resume: a half-written part and an orphaned clips part from an interruption are cleaned, nothing is redone
    (out / "manifest" / ".part-x.parquet.tmp").write_bytes(b"half")
    shutil.copyfile(next((out / "clips").glob("part-*.parquet")), out / "clips" / "part-orphan.parquet")
    again = run_ingest(IngestConfig(input=str(root), output=str(out)))
    assert (again.processed, again.skipped, again.total) == (0, len(expect), len(expect))
    assert not list(out.rglob("*.tmp")) and not (out / "clips" / "part-orphan.parquet").exists()
    # a new file is picked up; every path stays exactly once
    from eee_ray.synth import write_us_multiframe

    write_us_multiframe(root / "files/p10/p10000001/s90000001/90000001_0003.dcm", cine(3, seed=2), 40.0)
    third = run_ingest(IngestConfig(input=str(root), output=str(out)))
    assert (third.processed, third.total) == (1, len(expect) + 1)
    raw = pd.concat([pd.read_parquet(p) for p in (out / "manifest").glob("part-*.parquet")])
    assert raw.path.is_unique
    clips = pd.concat([pd.read_parquet(p, columns=["path"]) for p in (out / "clips").glob("part-*.parquet")])
    assert clips.path.is_unique and set(clips.path) == set(raw[raw.status == S.OK].path)


def test_command_refuses_a_missing_input_with_a_user_error(tmp_path):
    import argparse

    from eee_ray.commands import ingest as command
    from eee_ray.errors import UserError

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o"),
                              "--trace-color", "auto", "--qa-samples", "3"])
    with pytest.raises(UserError, match="not found"):
        command.run(args)
    assert not (tmp_path / "o").exists()


def test_task_pool_never_outnumbers_the_batches():
    """A resumed run with three batches of files left on a 64-CPU cluster runs three ingest tasks at a time, not 64;
    a large tree gets one per CPU, or per unit of the ``ingest`` resource where nodes advertise it, and
    ``--num-cpus`` caps it."""
    from eee_ray.ingest.pipeline import _task_pool

    cfg = IngestConfig(input="in", output="out")
    assert _task_pool(cfg, {"CPU": 64.0}, batches=3)[1] == 3
    assert _task_pool(cfg, {"CPU": 64.0}, batches=1000)[1] == 64
    assert _task_pool(cfg, {"CPU": 64.0, "ingest": 8.0}, batches=1000)[1] == 8
    assert _task_pool(IngestConfig(input="in", output="out", num_cpus=4), {"CPU": 64.0}, batches=1000)[1] == 4
    strategy, workers = _task_pool(cfg, {"CPU": 2.0}, batches=1)
    assert workers == 1 and strategy.size == 1
