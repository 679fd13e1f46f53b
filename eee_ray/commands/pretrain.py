"""``eee-ray pretrain``: ECG-echo contrastive pretraining on the ingested clips (Ray Train + MLflow)."""

from __future__ import annotations

import argparse
import sys

from eee_ray.config import DeprecatedAlias, add_common_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    from eee_ray.pretrain import EXPERIMENT, PretrainConfig

    from eee_ray.recipes import RECIPES

    p.argument_default = argparse.SUPPRESS  # an option not given leaves the YAML/recipe/dataclass value
    p.add_argument("--recipe", choices=list(RECIPES),
                   help="named recipe the other options start from: default (plain InfoNCE, an echo tower that "
                        "reads the motion; learns from a random start), paper (the paper's dual-margin loss from "
                        "step 1 and its echo readout), cls-tower (default with the paper's echo readout), "
                        "locked-study (locked echo tower, study positives; puts wall thickness into the ECG "
                        "embedding); see docs/pretraining.md")
    p.add_argument("--clips", help="ingest output folder (holding clips/) or the clips/ folder itself")
    p.add_argument("--output", help="folder for checkpoints, ecg_encoder.pt, metrics.json, retrieval.png")
    p.add_argument("--epochs", type=int, help="training epochs (default 10)")
    p.add_argument("--workers", type=int, help="Ray Train workers, data parallel (default 1)")
    p.add_argument("--preset", choices=["tiny", "paper"], help="model size: tiny (CPU) or paper (GPU) (default tiny)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run already in --output from its last checkpoint")
    p.add_argument("--batch-size", dest="batch_size", type=int,
                   help="clips per worker and step (default: the recipe's; 8)")
    p.add_argument("--lr", type=float, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, help="seed of the patient split, shifts and initialisation (default 0)")
    p.add_argument("--gpu", dest="use_gpu", action="store_true", help="one GPU per worker (NCCL)")
    p.add_argument("--image-size", dest="pairs.image_size", type=int,
                   help="echo sub-clip height = width (default 112; 224 allowed)")
    p.add_argument("--echo-tower", dest="echo_tower", choices=["train", "locked", "frozen"],
                   help="train the echo encoder (the paper, default) or lock it at its seeded init (LiT); a locked "
                        "tower embeds every clip once, so a step runs the ECG tower only ('frozen' is the deprecated "
                        "spelling of locked)")
    p.add_argument("--cls-positive", dest="cls_positive", choices=["clip", "study"],
                   help="[CLS] terms pair a clip's ECG with its own echo (the paper, default) or with another clip "
                        "of the same study, so beat timing cannot solve them (needs --echo-tower locked)")
    p.add_argument("--echo-features", dest="echo_features", choices=["standardized", "raw"],
                   help="with --echo-tower locked: the locked tower's features standardized per dimension (default) "
                        "or as they are (a random tower maps every clip to nearly one vector; see docs/pretraining.md)")
    p.add_argument("--pairs-store", dest="pairs_store", choices=["auto", "memory", "disk", "stream"],
                   help="where training samples live between epochs: memory (object store), disk (a pairs cache "
                        "built once), stream (rebuilt from clips/ every epoch); auto: memory up to keep_pairs_mb "
                        "(256), else disk (default auto)")
    p.add_argument("--pairs-cache", dest="pairs_cache",
                   help="folder or URI of the on-disk pairs cache, readable by every node "
                        "(default <output>/pairs_cache)")
    p.add_argument("--exclude-patients", dest="exclude_patients",
                   help="CSV (column subject_id or patient_id) or text file (one ID a line) of patients whose clips "
                        "pretraining never reads: list the downstream val and test patients, whose echo decides "
                        "their labels (docs/pretraining.md)")
    p.add_argument("--shuffle-pairs", dest="shuffle_pairs", action="store_true",
                   help="negative control: pair every clip's echo with the ECG of a clip of another patient, so "
                        "pretraining cannot learn the heart from the pairs (its downstream gain should be none)")
    p.add_argument("--raw-echo-features", dest="echo_features", action=DeprecatedAlias, const="raw",
                   replacement="--echo-features raw", help=argparse.SUPPRESS)
    p.add_argument("--workdir", dest="mlflow.dir", action=DeprecatedAlias, replacement="--mlflow-dir",
                   help=argparse.SUPPRESS)
    add_common_arguments(p, PretrainConfig, EXPERIMENT)


def run(args: argparse.Namespace) -> int:
    from eee_ray.pretrain import run_pretrain
    from eee_ray.recipes import resolve_cli_recipe
    from eee_ray.retrieval import summary
    from eee_ray.runtime import mlflow_ui_command

    cfg = resolve_cli_recipe(args)
    m = run_pretrain(cfg)
    print(f"pretrained {m['epochs']} epochs ({m['recipe']} recipe) on {m['train_clips']} clips; held-out {summary(m)}")
    print(f"encoder: {cfg.output}/ecg_encoder.pt  metrics: {cfg.output}/metrics.json")
    print(f"MLflow run {m['mlflow_run_id']}: {mlflow_ui_command(m['mlflow_tracking_uri'])}")
    if m["collapsed"]:
        print(f"eee-ray pretrain: warning: {m['collapse_message']}", file=sys.stderr)
    return 0
