"""`eee-ray embed`: record-averaged penultimate embeddings of ECGs from a trained model (Ray Data)."""

from __future__ import annotations

import argparse

from eee_ray.config import DeprecatedAlias, add_common_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from eee_ray.inference import InferenceConfig

    parser.argument_default = argparse.SUPPRESS  # an option not given leaves the YAML/dataclass value
    parser.add_argument("--input", required=True,
                        help="folder of WFDB records, a MIMIC record_list.csv, or a .parquet of waveforms "
                             "(columns record_id, signal [leads x samples], fs, lead_names)")
    parser.add_argument("--output", required=True, help="output folder of Parquet files (overwritten)")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="checkpoint folder with model.pt and meta.json (a benchmark trial folder)")
    model.add_argument("--run-id", dest="run_id", help="MLflow run whose checkpoint/ artifact holds the model "
                                                       "(looked up in the store of --mlflow-dir)")
    model.add_argument("--model", help="logged MLflow model, e.g. models:/eee-ecg-II/1 from the Model Registry "
                                       "(looked up in the store of --mlflow-dir)")
    parser.add_argument("--aggregate", choices=("mean", "max"),
                        help="how window scores are combined per record (default: the checkpoint's)")
    parser.add_argument("--batch-size", dest="batch_size", type=int, help="records per model call (default 32)")
    parser.add_argument("--max-actors", dest="max_actors", type=int,
                        help="the model actor pool autoscales from 1 to this (default 2)")
    parser.add_argument("--gpus-per-actor", dest="gpus_per_actor", type=float,
                        help="GPUs per model actor, e.g. 1 on GPU nodes (default 0)")
    parser.add_argument("--mlflow-workdir", dest="mlflow.dir", action=DeprecatedAlias, replacement="--mlflow-dir",
                        help=argparse.SUPPRESS)
    add_common_arguments(parser, InferenceConfig, "eee-benchmark")


def run_mode(args: argparse.Namespace, mode: str) -> int:
    from eee_ray.config import resolve_cli, save
    from eee_ray.inference import SUMMARY_NAME, InferenceConfig, run_inference

    cfg = resolve_cli(InferenceConfig, args, mode=mode)
    summary = run_inference(cfg)
    save(cfg, f"{cfg.output}/_config.yaml")
    print(f"{mode}: {summary['used']} of {summary['records']} records written to {cfg.output} "
          f"(summary in {SUMMARY_NAME})")
    for reason, count in summary["skipped"].items():
        print(f"  skipped {count}: {reason}")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_mode(args, "embed")
