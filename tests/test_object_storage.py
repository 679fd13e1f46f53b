"""Every stage with its data and outputs in buckets of a real S3-compatible server (moto in server mode, on
loopback): ingest (with resume and the commit of parts), pretraining (Ray Train's checkpoints and the pairs cache in
the bucket, and ``--resume`` from them), the benchmark, ``analyze`` and ``predict``, each checked against what the
same stage wrote for local paths."""

from __future__ import annotations

import contextlib
import io
import json
import socket
from pathlib import Path

import pandas as pd
import pytest

from eee_ray import storage
from eee_ray.cli import main
from eee_ray.errors import UserError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory, _empty_mlflow_store):
    """A moto S3 server on 127.0.0.1 with buckets ``eee-data`` and ``eee-out``; the AWS_* environment points every
    stage at it (and the driver's file system carries it to the Ray workers). The stages' MLflow store is the local
    cache's (outputs in a bucket), started from the session's initialised empty store."""
    import shutil

    boto3 = pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}",
           storage.CACHE_ENV: str(tmp_path_factory.mktemp("cache"))}
    (Path(env[storage.CACHE_ENV]) / "mlflow").mkdir()
    shutil.copy(_empty_mlflow_store, Path(env[storage.CACHE_ENV]) / "mlflow" / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.setattr(storage, "_FILESYSTEMS", {})
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")
        for bucket in ("eee-data", "eee-out"):
            client.create_bucket(Bucket=bucket)
        yield client
    server.stop()


def _keys(client, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _echo_subset(ingested_dir) -> list[str]:
    """Accepted cines of 4 patients (2 each) and a rejected one, from the session's local ingest: the fewest that
    leave pretraining a held-out patient and a batch of 4 training clips."""
    from eee_ray.ingest import read_manifest

    m = read_manifest(ingested_dir)
    ok = m[m.status == "ok"]
    patients = sorted(ok.subject_id.unique())[:4]
    chosen = ok[ok.subject_id.isin(patients)].groupby("subject_id").head(2).path.tolist()
    return sorted(chosen + m[m.status != "ok"].path.head(1).tolist())


@pytest.mark.slow
def test_round_trip_in_buckets(s3, synth_dir, ingested_dir, ray_session, tmp_path):
    from eee_ray.ingest import IngestConfig, read_manifest, run_ingest
    from eee_ray.models.ecg_encoder import load_pretrained
    from eee_ray.pairs import PairsConfig
    from eee_ray.pretrain import PretrainConfig, run_pretrain

    # ingest: DICOMs in one bucket, parts in another
    subset = _echo_subset(ingested_dir)
    for rel in subset:
        s3.upload_file(str(synth_dir / "echo" / rel), "eee-data", f"echo/{rel}")
    out = "s3://eee-out/ingest"
    s = run_ingest(IngestConfig(input="s3://eee-data/echo", output=out, batch_files=2))
    assert (s.discovered, s.processed, s.total) == (len(subset), len(subset), len(subset))
    local = read_manifest(ingested_dir).set_index("path").loc[subset, ["status", "reason", "subject_id"]]
    remote = read_manifest(out).set_index("path")[["status", "reason", "subject_id"]]
    pd.testing.assert_frame_equal(remote.sort_index(), local.sort_index(), check_dtype=False)
    keys = _keys(s3, "eee-out", "ingest/")
    assert "ingest/summary.json" in keys and "ingest/config.yaml" in keys
    assert not [k for k in keys if k.rsplit("/", 1)[-1].startswith(".")]   # no temporary objects left behind

    # resume: committed parts are skipped; a clips part without its manifest part (a crash between the two
    # uploads) is dropped
    s3.put_object(Bucket="eee-out", Key="ingest/clips/part-orphan.parquet", Body=b"half a batch")
    again = run_ingest(IngestConfig(input="s3://eee-data/echo", output=out, batch_files=2))
    assert (again.skipped, again.processed, again.total) == (len(subset), 0, len(subset))
    assert "ingest/clips/part-orphan.parquet" not in _keys(s3, "eee-out", "ingest/clips/")

    # pretraining: clips read from the bucket, Ray Train's checkpoints and the outputs written to it
    # (the training samples through the on-disk pairs cache, in the bucket)
    base = dict(clips=out, output="s3://eee-out/pretrain", batch_size=4, pairs_store="disk",
                pairs=PairsConfig(image_size=32, max_tokens=4), retrieval_max_clips=4)
    m = run_pretrain(PretrainConfig(epochs=1, **base))
    assert m["epochs"] == 1 and m["train_clips"] >= 4 and m["pairs_store"] == "disk (built)"
    keys = _keys(s3, "eee-out", "pretrain/")
    for name in ("ecg_encoder.pt", "metrics.json", "config.yaml", "mlflow_run.json", "retrieval.png",
                 "checkpoints/checkpoint.pt"):
        assert f"pretrain/{name}" in keys
    assert any(k.startswith("pretrain/ray_results/pretrain/") and k.endswith("checkpoint.pt") for k in keys)
    assert json.loads(storage.read_text("s3://eee-out/pretrain/metrics.json"))["epochs"] == 1
    assert "pretrain/pairs_cache/pairs_cache.json" in keys
    assert any(k.startswith("pretrain/pairs_cache/parts-") and k.endswith(".parquet") for k in keys)
    # a second run into the same prefix is refused; --resume continues from the checkpoint in the bucket, in the
    # same MLflow run, reading the pairs cache the first run built
    with pytest.raises(UserError, match="--resume"):
        run_pretrain(PretrainConfig(epochs=2, **base))
    resumed = run_pretrain(PretrainConfig(epochs=2, resume=True, **base))
    assert resumed["epochs"] == 2 and resumed["resumed_at"] == [1], resumed["resumed_at"]
    assert resumed["pairs_store"] == "disk (reused)"
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["mlflow_run_id"] == m["mlflow_run_id"]
    assert json.loads(storage.read_text("s3://eee-out/pretrain/metrics.json"))["epochs"] == 2
    with storage.local_copy("s3://eee-out/pretrain/ecg_encoder.pt") as f:
        load_pretrained(f)

    # benchmark: records in the bucket (a trimmed copy of the synthetic ECG tree), results back to a bucket
    ecg = synth_dir / "ecg"
    records = pd.read_csv(ecg / "record_list.csv", dtype=str).head(60)
    s3.put_object(Bucket="eee-data", Key="synth/ecg/record_list.csv", Body=records.to_csv(index=False).encode())
    for name in ("records_w_diag_icd10.csv", "DXCCSR_synthetic.csv"):
        s3.upload_file(str(ecg / name), "eee-data", f"synth/ecg/{name}")
    for rel in records.path:
        for ext in (".hea", ".dat"):
            s3.upload_file(str(ecg / f"{rel}{ext}"), "eee-data", f"synth/ecg/{rel}{ext}")
    (tmp_path / "c.yaml").write_text("n_bootstrap: 20\nbatch_size: 32\ncrops_per_record: 1\n")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(["benchmark", "--data", "s3://eee-data/synth", "--output", "s3://eee-out/bench",
                   "--pretrained", "s3://eee-out/pretrain/ecg_encoder.pt", "--config", str(tmp_path / "c.yaml"),
                   "--dataset", "synthetic", "--preset", "tiny", "--epochs", "1", "--models", "xresnet1d50",
                   "--leads", "II"])
    assert rc == 0, stdout.getvalue()
    assert "s3://eee-out/bench/results.csv" in stdout.getvalue()
    summary = json.loads(storage.read_text("s3://eee-out/bench/summary.json"))
    assert summary["completed"] == 1 and summary["failed"] == 0
    with storage.local_copy("s3://eee-out/bench/results.csv") as f:
        results = pd.read_csv(f)
    auroc = [c for c in results.columns if "auroc" in c.lower()]
    assert auroc and results[auroc].notna().all().all()
    assert ((results[auroc] >= 0) & (results[auroc] <= 1)).all().all()
    # the prepared store stays in the local cache (the trials memory-map it), never in the bucket
    assert not _keys(s3, "eee-out", "bench/prepared/")
    assert (storage.cache_path("prepared", "s3://eee-out/bench") / "meta.json").is_file()

    # analyze: the benchmark read from the bucket, its figures and tables written back beside it
    assert main(["analyze", "--benchmark", "s3://eee-out/bench"]) == 0
    keys = set(_keys(s3, "eee-out", "bench/analysis/"))
    assert {f"bench/analysis/{f}" for f in ("roc_curves.png", "per_label_auroc.csv", "config.yaml")} <= keys, keys
    mirrored = storage.cache_path("data", "s3://eee-out/bench")   # only what the analysis reads came down
    assert list(mirrored.rglob("test_outputs.npz")) and not list(mirrored.rglob("model.pt"))

    # predict: the trial's checkpoint and the record list in buckets, the predictions written to a bucket
    trial = next(k for k in _keys(s3, "eee-out", "bench/trials/") if k.endswith("/model.pt")).rsplit("/", 1)[0]
    assert main(["predict", "--input", "s3://eee-data/synth/ecg/record_list.csv", "--output", "s3://eee-out/pred",
                 "--checkpoint", f"s3://eee-out/{trial}"]) == 0
    pred = json.loads(storage.read_text("s3://eee-out/pred/_inference.json"))
    assert pred["records"] == len(records) and pred["used"] > 0 and pred["source"] == f"s3://eee-out/{trial}"
    assert any(k.endswith(".parquet") for k in _keys(s3, "eee-out", "pred/"))


def test_missing_bucket_is_one_error_line(s3, capsys):
    assert main(["ingest", "--input", "s3://no-such-bucket/echo", "--output", "s3://eee-out/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bucket s3://no-such-bucket not found" in err
    assert main(["pretrain", "--clips", "s3://eee-out/nothing-here", "--output", "s3://eee-out/p"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nothing under s3://eee-out/nothing-here" in err
    assert main(["predict", "--input", "s3://no-such-bucket/ecg", "--output", "s3://eee-out/p",
                 "--checkpoint", "s3://eee-out/c"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bucket s3://no-such-bucket not found" in err
    s3.put_object(Bucket="eee-data", Key="ecg/record_list.csv", Body=b"path\n")
    assert main(["predict", "--input", "s3://eee-data/ecg/record_list.csv", "--output", "s3://eee-out/p",
                 "--checkpoint", "s3://eee-out/no-checkpoint"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nothing under s3://eee-out/no-checkpoint" in err
