"""What object storage costs each stage: ingest, pretrain (1 epoch, tiny) and benchmark (1 trial) on the same small
data, once with local folders and once with data and outputs in buckets of a local S3-compatible server (moto, on
loopback), in one local Ray, alternating the order per round, best of ``--rounds``.

moto answers in microseconds over loopback, so the S3 column measures what this code adds (listings, one upload per
part, downloads for MLflow and the benchmark's mirror), not a real bucket's network latency. Usage:
    python benchmarks/object_storage.py SYNTH_ROOT [--files 16] [--records 60] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pandas as pd

STAGES = ("ingest", "pretrain", "benchmark")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stage_inputs(synth: Path, files: int, records: int, local: Path) -> None:
    """A subset of the synth root in ``local``: the first ``files`` echo DICOMs, the first ``records`` ECG records."""
    echo = sorted(p for p in (synth / "echo" / "files").rglob("*") if p.is_file())[:files]
    for p in echo:
        dst = local / "echo" / p.relative_to(synth / "echo")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dst)
    ecg = synth / "ecg"
    rl = pd.read_csv(ecg / "record_list.csv", dtype=str).head(records)
    (local / "synth" / "ecg").mkdir(parents=True)
    rl.to_csv(local / "synth" / "ecg" / "record_list.csv", index=False)
    for name in ("records_w_diag_icd10.csv", "DXCCSR_synthetic.csv"):
        shutil.copy(ecg / name, local / "synth" / "ecg" / name)
    for rel in rl.path:
        for ext in (".hea", ".dat"):
            dst = local / "synth" / "ecg" / f"{rel}{ext}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ecg / f"{rel}{ext}", dst)


def run_stages(data: str, out: str, config: Path) -> dict[str, float]:
    from eee_ray import storage
    from eee_ray.cli import main
    from eee_ray.ingest import IngestConfig, run_ingest
    from eee_ray.pairs import PairsConfig
    from eee_ray.pretrain import PretrainConfig, run_pretrain

    times = {}
    t = time.perf_counter()
    run_ingest(IngestConfig(input=storage.join(data, "echo"), output=storage.join(out, "ingest"), batch_files=2))
    times["ingest"] = time.perf_counter() - t
    t = time.perf_counter()
    run_pretrain(PretrainConfig(clips=storage.join(out, "ingest"), output=storage.join(out, "pretrain"), epochs=1,
                                batch_size=4, pairs=PairsConfig(image_size=32, max_tokens=4), retrieval_max_clips=4))
    times["pretrain"] = time.perf_counter() - t
    t = time.perf_counter()
    rc = main(["benchmark", "--data", storage.join(data, "synth"), "--output", storage.join(out, "bench"),
               "--config", str(config), "--dataset", "synthetic", "--preset", "tiny", "--epochs", "1",
               "--models", "xresnet1d50", "--leads", "II"])
    assert rc == 0
    times["benchmark"] = time.perf_counter() - t
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("synth", help="an `eee-ray synth` root")
    ap.add_argument("--files", type=int, default=16, help="echo DICOMs ingested (default 16)")
    ap.add_argument("--records", type=int, default=60, help="ECG records of the benchmark (default 60)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    import boto3
    import ray
    from moto.server import ThreadedMotoServer

    work = Path(tempfile.mkdtemp(prefix="eee-objstore-"))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://{host}:{port}", EEE_RAY_CACHE_DIR=str(work / "cache"))
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    client.create_bucket(Bucket="eee-data")
    local_in = work / "in"
    stage_inputs(Path(args.synth), args.files, args.records, local_in)
    for p in sorted(local_in.rglob("*")):
        if p.is_file():
            client.upload_file(str(p), "eee-data", p.relative_to(local_in).as_posix())
    config = work / "c.yaml"
    config.write_text("n_bootstrap: 20\nbatch_size: 32\ncrops_per_record: 1\n")

    from eee_ray.runtime import init_ray

    init_ray(2)
    best: dict[tuple[str, str], float] = {}
    for r in range(args.rounds):
        ways = ("local", "s3") if r % 2 == 0 else ("s3", "local")
        for way in ways:
            if way == "local":
                data, out = str(local_in), str(work / f"out-{r}")
            else:
                bucket = f"eee-out-{r}"
                client.create_bucket(Bucket=bucket)
                data, out = "s3://eee-data", f"s3://{bucket}"
            shutil.rmtree(work / "cache" / "data", ignore_errors=True)   # every S3 round mirrors the records anew
            for stage, sec in run_stages(data, out, config).items():
                best[(stage, way)] = min(best.get((stage, way), float("inf")), sec)
                print(f"round {r + 1} {way:5s} {stage:9s} {sec:6.1f} s", flush=True)
    print(f"\n{args.files} echo files, {args.records} ECG records, best of {args.rounds} round(s)\n")
    print("| stage | local (s) | S3 on loopback (s) | S3 / local |")
    print("|---|---|---|---|")
    for stage in STAGES:
        lo, s3 = best[(stage, "local")], best[(stage, "s3")]
        print(f"| {stage} | {lo:.1f} | {s3:.1f} | {s3 / lo:.2f} |")
    server.stop()
    ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
