"""ECG-echo contrastive pretraining under Ray Train (paper sections 3.2-3.4, docs/contract.md: Pairs, Model, Loss;
retrieval in Analysis and inference).

The driver splits the clips by patient from their ID columns, creates one MLflow run and fits a ``TorchTrainer``.
Each worker streams its shard of the training pairs (built from ``clips/`` by Ray Data every epoch, never
materialised), draws fresh misalignments per batch, gathers
the aligned features of all workers so the contrastive negatives span the global batch, and reports a checkpoint
(model, optimizer, config, epoch, history) every epoch. Rank 0 evaluates held-out retrieval after each epoch and is the
only one that logs to MLflow. A worker failure restarts the group from the last checkpoint (``FailureConfig``);
``resume`` continues a stopped run in the same output folder. At the end the driver writes ``ecg_encoder.pt`` (the
hand-over to the downstream benchmark), ``metrics.json`` and the retrieval figure.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from eee_ray import recipes
from eee_ray.collapse import CollapseConfig, spread_metrics, spread_summary, verdict
from eee_ray.config import MlflowConfig, flat_params, from_dict, load_yaml, save, to_dict
from eee_ray.echo_features import (attach_study_mates, embed_echo, feature_stats, init_model, pick_mates,
                                   standardize_features)
from eee_ray import faults, storage
from eee_ray.errors import UserError
from eee_ray.io import atomic_torch_save, atomic_write_text
from eee_ray.losses import OBJECTIVES, LossConfig, pretraining_losses, weighted_total
from eee_ray.models.ecg_encoder import save_pretrained
from eee_ray.models.echo_encoder import PIXEL_NORMS, VIT_NORMS, VIT_POOLS
from eee_ray.models.eee import EEEModel, ModelConfig, preset
from eee_ray.pairs import NORMALIZATION, Collate, PairsConfig, echo_input, misalign, read_patient_ids, stream_pairs
from eee_ray.pairs_cache import cache_key, cached_train_set
from eee_ray.retrieval import embed, plot_retrieval, recall_curve, retrieval_metrics
from eee_ray.retrieval import summary as retrieval_summary

log = logging.getLogger(__name__)

RUN_NAME = "pretrain"
EXPERIMENT = "eee-pretrain"
ECHO_TOWERS = ("train", "locked")
ECHO_FEATURES = ("standardized", "raw")
PAIRS_STORES = ("auto", "memory", "disk", "stream")
CHECKPOINT_FILE = "checkpoint.pt"
FAILURE_MARKER = ".injected_failure"
LOSS_KEYS = ("total", "token", "sid", "pid", "align")
HELDOUT_CACHE_BYTES = 256 * 2**20   # a held-out set up to this size stays in rank 0's memory after the first epoch


@dataclass
class PretrainConfig:
    """Everything one pretraining run depends on. The defaults are the ``default`` recipe (eee_ray/recipes.py);
    ``recipes.pretrain_config(name, ...)`` starts from another one."""

    recipe: str = "default"             # the named recipe the fields started from (eee_ray/recipes.py)
    clips: str = ""                     # ingest output (the folder holding clips/, or clips/ itself)
    output: str = ""                    # checkpoints, ecg_encoder.pt, metrics.json, retrieval.png
    epochs: int = 10
    workers: int = 1                    # Ray Train workers (data parallel)
    preset: str = "tiny"                # model size: tiny (CPU) | paper (GPU)
    resume: bool = False                # continue the run already in ``output``
    lr: float = 1e-3
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    batch_size: int = 8                 # per worker; the contrastive matrix spans workers x batch_size clips
    seed: int = 0
    p_shift: float = 0.3                # share of samples whose ECG is shifted against the echo (M_shift = 1)
    heldout_fraction: float = 0.25      # share of patients held out for retrieval
    shuffle_buffer: int = 256           # clips per worker mixed before batching (clips of one study sit together)
    retrieval_max_clips: int = 2000     # held-out clips ranked each epoch (a seeded sample when there are more)
    echo_tower: str = "train"           # train (the paper) | locked: the echo encoder keeps its seeded init (LiT)
    cls_positive: str = "clip"          # clip (the paper) | study: [CLS] terms pair a clip's ECG with the echo of
    #                                     another clip of its study (needs echo_tower locked); see echo_features.py
    max_mates: int = 8                  # study-level positives: other clips of the study kept per clip
    echo_features: str = "standardized"  # locked tower: standardized per dimension (training clips' stats) | raw
    pixel_norm: str = "motion"          # echo input scaling: motion (each pixel minus its mean over the sub-clip,
    #                                     then standardised) | clip (each sub-clip standardised) | fixed (earlier)
    cls_position: bool = False          # add position 0 of the sinusoid table to the [CLS] (earlier behaviour)
    vit_pool: str = "slots"             # echo ViT readout per sub-clip: slots (patches averaged per time slot) | cls
    vit_norm: str = "batch"             # echo ViT features standardised over the batch's sub-clips: batch | none
    shuffle_pairs: bool = False         # negative control: each clip's ECG comes from another patient (pair_shuffle.py)
    loss: LossConfig = field(default_factory=lambda: LossConfig(objective="info_nce"))
    pairs: PairsConfig = field(default_factory=PairsConfig)
    use_gpu: bool = False               # one GPU per worker, NCCL; else gloo on CPU
    cpus_per_worker: float = 0.0        # 0 = auto: 1, or less so that all workers fit beside one free CPU
    max_failures: int = 3               # worker-group restarts from the last checkpoint
    pairs_store: str = "auto"           # where training samples live between epochs: memory (object store) | disk
    #                                     (the pairs cache, built once) | stream (rebuilt from clips/ every epoch) |
    #                                     auto: memory up to keep_pairs_mb, else disk
    keep_pairs_mb: float = 256.0        # auto: training samples of at most this many MB of pixels stay in memory
    pairs_cache: str = ""               # folder or URI of the pairs cache ("" = <output>/pairs_cache)
    exclude_patients: str = ""          # file of patient IDs whose clips pretraining never reads (e.g. the downstream
    #                                     val and test patients: their echo decides their labels); see pairs.py
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    collapse: CollapseConfig = field(default_factory=CollapseConfig)

    def validate(self) -> None:
        """Every setting checked before Ray starts; an unsupported combination is one line."""
        if self.echo_tower == "frozen":  # the spelling of the previous release
            print("eee-ray: warning: echo_tower 'frozen' is deprecated; use 'locked'", file=sys.stderr)
            self.echo_tower = "locked"
        checks = [(bool(self.clips), "--clips is required"), (bool(self.output), "--output is required"),
                  (self.epochs >= 1, "epochs must be >= 1"), (self.workers >= 1, "workers must be >= 1"),
                  (self.batch_size >= 2, "batch size must be >= 2"),
                  (0.0 <= self.p_shift < 1.0, "p_shift must be in [0, 1)"),
                  (0.0 < self.heldout_fraction < 1.0, "heldout fraction must be in (0, 1)"),
                  (self.lr > 0, "lr must be > 0"), (self.retrieval_max_clips >= 2, "retrieval_max_clips must be >= 2"),
                  (self.echo_tower in ECHO_TOWERS, f"echo_tower must be train or locked, not {self.echo_tower!r}"),
                  (self.cls_positive in ("clip", "study"),
                   f"cls_positive must be clip or study, not {self.cls_positive!r}"),
                  (self.cls_positive == "clip" or self.echo_tower == "locked",
                   "cls_positive study needs echo_tower locked (the study mates' echo features are computed once)"),
                  (self.echo_features in ECHO_FEATURES,
                   f"echo_features must be standardized or raw, not {self.echo_features!r}"),
                  (self.echo_features == "standardized" or self.echo_tower == "locked",
                   "raw echo features (--echo-features raw) need echo_tower locked: a trained tower has no fixed "
                   "features"),
                  (self.max_mates >= 1, "max_mates must be >= 1"),
                  (self.pairs_store in PAIRS_STORES,
                   f"pairs_store must be one of {', '.join(PAIRS_STORES)}, not {self.pairs_store!r}"),
                  (self.pixel_norm in PIXEL_NORMS,
                   f"pixel_norm must be one of {', '.join(PIXEL_NORMS)}, not {self.pixel_norm!r}"),
                  (self.vit_norm in VIT_NORMS,
                   f"vit_norm must be one of {', '.join(VIT_NORMS)}, not {self.vit_norm!r}"),
                  (self.vit_pool in VIT_POOLS,
                   f"vit_pool must be one of {', '.join(VIT_POOLS)}, not {self.vit_pool!r}"),
                  (self.loss.objective in OBJECTIVES,
                   f"loss.objective must be one of {', '.join(OBJECTIVES)}, not {self.loss.objective!r}"),
                  (self.loss.warmup_epochs >= 0, "loss.warmup_epochs must be >= 0")]
        recipes.check(self.recipe)
        for ok, msg in checks:
            if not ok:
                raise UserError(msg)
        storage.check_dir(self.clips, "clips", " (run `eee-ray ingest` first)")
        storage.check_bucket(self.output, "--output")
        if self.exclude_patients:
            read_patient_ids(self.exclude_patients)   # a missing or unreadable list is one line, before Ray starts
        model_config(self)  # unknown preset -> UserError


def model_config(cfg: PretrainConfig) -> ModelConfig:
    """The preset, with the input geometry taken from the pairs config."""
    p = cfg.pairs
    return preset(cfg.preset, token_len=p.token_len, max_tokens=p.max_tokens, frames=p.frames_per_token,
                  image_size=p.image_size, pixel_norm=cfg.pixel_norm, cls_position=cfg.cls_position,
                  vit_pool=cfg.vit_pool, vit_norm=cfg.vit_norm)


# ----------------------------------------------------------------------------------------------- worker side


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (rows may differ per worker) from every worker; gradients flow through the local rows."""
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    counts = [int(s) for s in sizes]
    padded = torch.zeros((max(counts), *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x.detach()
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([x if r == rank else parts[r][: counts[r]] for r in range(world)])


def _maybe_fail(cfg: PretrainConfig, plan: dict[str, str], epoch: int, rank: int, world: int) -> None:
    """Fault injection (``eee_ray.faults``) at the start of an epoch: a hold (every rank), or the highest rank up to 1
    exits once (a marker file remembers it)."""
    hold_at = plan.get("pretrain_hold", "").partition(":")[0]
    exit_at = plan.get("pretrain_worker_exit", "")
    if str(epoch) not in (hold_at, exit_at):
        return
    import ray.train

    # a node lost or a crash right after a report could beat the controller to registering that checkpoint; the test
    # hooks wait so that they always exercise "restart from the last checkpoint"
    ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)
    faults.hold(plan, epoch)
    marker = storage.join(cfg.output, FAILURE_MARKER)
    if str(epoch) != exit_at or rank != min(1, world - 1) or storage.exists(marker):
        return
    atomic_write_text(marker, f"rank {rank} exited at the start of epoch {epoch}\n")
    log.warning("injected failure: rank %d exits at epoch %d", rank, epoch)
    os._exit(1)


def _load_state(model: EEEModel) -> dict[str, Any] | None:
    """The last reported checkpoint of this run (after a restart or on resume), loaded into ``model``."""
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        state = torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return state


def _log_mlflow(client, run_id: str, metrics: dict[str, float], step: int) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


class _StepLog:
    """Rank 0's per-step losses, written to MLflow every ``every_s`` seconds and at the end of each epoch: one
    write per step (about 15 ms into a local sqlite store) would stall every worker of a fast GPU step."""

    MAX_METRICS = 1000   # MLflow's limit per log_batch

    def __init__(self, client, run_id: str, every_s: float = 5.0) -> None:
        self.client, self.run_id, self.every_s = client, run_id, every_s
        self.pending: list = []
        self.last = time.monotonic()

    def add(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(f"step_loss_{k}", float(v), now, step) for k, v in values.items()]
        if time.monotonic() - self.last >= self.every_s or len(self.pending) >= self.MAX_METRICS - len(values):
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.client.log_batch(self.run_id, metrics=self.pending)
        self.pending, self.last = [], time.monotonic()


class _HeldOut:
    """Rank 0's held-out batches: streamed from Ray Data every epoch, or, for a small set, kept after the first pass
    (each pass through Ray Data costs about 0.5 s of executor start-up: half an epoch of a locked-tower run)."""

    def __init__(self, keep: bool) -> None:
        self.keep, self.kept = keep, None

    def batches(self):
        import ray.train

        if self.kept is not None:
            return self.kept
        stream = ray.train.get_dataset_shard("heldout").iter_torch_batches(batch_size=64, collate_fn=Collate())
        if self.keep:
            self.kept = list(stream)
            return self.kept
        return stream


def train_loop(loop: dict[str, Any]) -> None:
    """The Ray Train worker function."""
    import ray.train
    import ray.train.torch

    from eee_ray.runtime import setup_logging

    setup_logging()  # the per-epoch progress lines of rank 0
    storage.adopt(loop.get("filesystems"))
    cfg = from_dict(PretrainConfig, loop["cfg"])
    mcfg = from_dict(ModelConfig, loop["model"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(loop["threads"])
    device = ray.train.torch.get_device()

    model = init_model(mcfg, cfg.seed)
    if cfg.echo_tower == "locked":
        model.lock_echo()
    state = _load_state(model)
    history: list[dict[str, float]] = list(state["history"]) if state else []
    resumed_at: list[int] = list(state["resumed_at"]) + [state["epoch"]] if state else []
    start = state["epoch"] if state else 0
    ddp = ray.train.torch.prepare_model(model)
    opt = torch.optim.AdamW([p for p in ddp.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    if state:
        opt.load_state_dict(state["optimizer"])
    client = None
    if rank == 0:   # only rank 0 logs: the other workers never import MLflow (2 CPU-seconds a process)
        from mlflow.tracking import MlflowClient

        client = MlflowClient(loop["tracking_uri"])
    step_log = _StepLog(client, loop["run_id"]) if client is not None else None
    gather = gather_with_grad if world > 1 else None
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    shard = ray.train.get_dataset_shard("train")
    heldout = _HeldOut(loop["keep_heldout"])
    step = start * loop["steps_per_epoch"]

    for epoch in range(start + 1, cfg.epochs + 1):
        _maybe_fail(cfg, loop["faults"], epoch, rank, world)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 1_009 + rank)
        sums = dict.fromkeys(LOSS_KEYS, 0.0)
        batches = 0
        ddp.train()
        for b in shard.iter_torch_batches(batch_size=loop["batch_size"], collate_fn=Collate(), drop_last=True,
                                          local_shuffle_buffer_size=max(cfg.shuffle_buffer, loop["batch_size"]),
                                          local_shuffle_seed=cfg.seed + epoch):
            ecg, pad, m_shift = misalign(b["ecg"], b["pad_mask"], cfg.p_shift, gen)
            pad = pad.to(device)
            with amp:
                out = ddp(ecg.to(device), echo_input(b, device), pad)
            out = {k: v.float() for k, v in out.items()}
            if cfg.cls_positive == "study":   # the [CLS] terms' echo side: another clip of the same study
                out["echo_cls"] = pick_mates(b["echo_mates"], b["n_mates"], gen).to(device)
            terms = pretraining_losses(out, pad, m_shift.to(device), b["study_id"].to(device),
                                       b["subject_id"].to(device), cfg.loss, gather,
                                       warmup=cfg.loss.info_nce_at(epoch))
            opt.zero_grad(set_to_none=True)
            weighted_total(terms, cfg.loss, contrastive_scale=world).backward()
            torch.nn.utils.clip_grad_norm_(ddp.parameters(), cfg.grad_clip)
            opt.step()
            values = {k: float(v) for k, v in terms.items()}
            values["total"] = float(weighted_total(terms, cfg.loss))
            for k in LOSS_KEYS:
                sums[k] += values[k]
            batches += 1
            step += 1
            if step_log is not None:
                step_log.add(values, step)
        if step_log is not None:
            step_log.flush()

        metrics: dict[str, float] = {"epoch": epoch, **{f"loss_{k}": s / max(batches, 1) for k, s in sums.items()}}
        checkpoint = None
        with tempfile.TemporaryDirectory() as tmp:
            if rank == 0:
                emb = embed(model, heldout.batches(), device)
                metrics.update(retrieval_metrics(emb["ecg"], emb["echo"]))
                metrics.update(spread_metrics(emb))
                history.append(metrics)
                _log_mlflow(client, loop["run_id"], {k: v for k, v in metrics.items() if k != "epoch"}, epoch)
                log.info("epoch %d/%d  loss %.4f  held-out %s; %s", epoch, cfg.epochs, metrics["loss_total"],
                         retrieval_summary(metrics), spread_summary(history))
                atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "config": loop["cfg"],
                                   "model_config": loop["model"], "epoch": epoch, "history": history,
                                   "resumed_at": resumed_at}, Path(tmp) / CHECKPOINT_FILE)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)


# ----------------------------------------------------------------------------------------------- driver side


def _pairs_store(cfg: PretrainConfig, train_bytes: int) -> str:
    """memory, disk or stream. Rebuilding a sample costs about 12 times a tiny CPU training step on it
    (benchmarks/pretrain_streaming.py), so ``auto`` never streams: a set that fits ``keep_pairs_mb`` is built once
    into the object store, a larger one once into the on-disk pairs cache."""
    if cfg.pairs_store != "auto":
        return cfg.pairs_store
    return "memory" if train_bytes <= cfg.keep_pairs_mb * 2**20 else "disk"


def _auto_cpus(workers: int) -> float:
    """One CPU per worker where they fit beside one free CPU (Ray Data, the driver); a share of the rest otherwise."""
    import ray

    total = float(ray.cluster_resources().get("CPU", 1.0))
    return max(0.25, min(1.0, (total - 1.0) / workers))


def _mlflow_run(cfg: PretrainConfig, output: str, params: dict[str, Any]) -> tuple[str, str]:
    """The run of this pretraining: the one recorded in ``output`` on resume, else a new one with its params."""
    from mlflow.tracking import MlflowClient

    from eee_ray.runtime import setup_mlflow
    from eee_ray.tracking import run_tags

    uri, exp_id = setup_mlflow(cfg.mlflow, output, EXPERIMENT)
    client = MlflowClient(uri)
    record = storage.join(output, "mlflow_run.json")
    if cfg.resume and storage.is_file(record):
        run_id = json.loads(storage.read_text(record))["run_id"]
        client.update_run(run_id, status="RUNNING")
        return uri, run_id
    run = client.create_run(exp_id, run_name=f"pretrain-{storage.name(output)}",
                            tags=run_tags("pretrain", "eee-ray pretrain", preset=cfg.preset, echo_tower=cfg.echo_tower))
    for k, v in params.items():
        client.log_param(run.info.run_id, k, v)
    atomic_write_text(record, json.dumps({"run_id": run.info.run_id, "tracking_uri": uri}, indent=2))
    return uri, run.info.run_id


def _log_clips_input(cfg: PretrainConfig, uri: str, run_id: str, n_train: int, n_held: int,
                     held_patients: list) -> None:
    """The ingested clips this run trains on, as the run's MLflow dataset input (digest of the Parquet listing)."""
    from mlflow.tracking import MlflowClient

    from eee_ray.tracking import log_dataset, parquet_listing

    from eee_ray.ingest.pipeline import clips_folder

    clips = clips_folder(cfg.clips)
    log_dataset(MlflowClient(uri), run_id, parquet_listing(clips), "echo-ecg-clips", str(clips), "training",
                {"train_clips": n_train, "heldout_clips": n_held, "heldout_patients": len(held_patients)})


def _check_resume_settings(cfg: PretrainConfig, before: dict[str, Any]) -> None:
    """A resumed run keeps its recipe, its model inputs and its echo settings: a locked tower's optimizer holds fewer
    parameters, and the recipe, the [CLS] positives and the echo features define what the run learns."""
    before = dict(before)
    if "recipe" in before and cfg.recipe != before["recipe"]:   # runs saved before recipes existed: no name to keep
        raise UserError(f"this run was trained with recipe {before['recipe']}; resume it with the same recipe "
                        f"(--recipe {before['recipe']})")
    # a run saved before the model-input fields existed used the earlier scaling and [CLS] positions; every setting
    # that differs is named in the one line, so that one --config file fixes them all
    differ = {name: before.get(name, earlier) for name, earlier in (("pixel_norm", "fixed"), ("cls_position", True),
                                                                     ("vit_pool", "cls"), ("vit_norm", "none"))
              if getattr(cfg, name) != before.get(name, earlier)}
    if differ:
        raise UserError("this run was trained with " + ", ".join(f"{k} {v}" for k, v in differ.items())
                        + "; resume it with the same settings ({" + ", ".join(f"{k}: {v}" for k, v in differ.items())
                        + "} in the --config file)")
    if before.get("echo_tower") == "frozen":  # configs saved by the previous release
        before["echo_tower"] = "locked"
    if "echo_standardize" in before:
        before["echo_features"] = "standardized" if before.pop("echo_standardize") else "raw"
    names = ["echo_tower", "cls_positive", "exclude_patients"] + (["echo_features"] if cfg.echo_tower == "locked"
                                                                   else [])
    for name in names:
        was = before.get(name, getattr(PretrainConfig, name))
        if getattr(cfg, name) != was:
            raise UserError(f"this run was trained with {name} {was}; resume it with the same setting "
                            f"(--{name.replace('_', '-')} {was})")


def _shuffled(ds, embed, seed: int):
    from eee_ray.pair_shuffle import shuffle_pairs

    return shuffle_pairs(embed(ds) if embed else ds, seed)


def run_pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    """Pretrain, evaluate, write the outputs; returns the content of ``<output>/metrics.json``."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from eee_ray.runtime import init_ray
    from eee_ray.train_backend import torch_config

    cfg.validate()
    output = storage.absolute(cfg.output)
    cfg.output = output
    results = storage.join(output, "ray_results")
    if storage.exists(storage.join(results, RUN_NAME)) and not cfg.resume:
        raise UserError(f"{output} already holds a pretraining run; pass --resume to continue it, or pick a new --output")
    if cfg.resume and not storage.exists(storage.join(results, RUN_NAME)):
        raise UserError(f"nothing to resume in {output}")
    if cfg.resume and storage.is_file(storage.join(output, "config.yaml")):
        _check_resume_settings(cfg, load_yaml(storage.join(output, "config.yaml")))
    storage.makedirs(output)
    save(cfg, storage.join(output, "config.yaml"))
    mcfg = model_config(cfg)

    init_ray()
    locked = cfg.echo_tower == "locked"
    # a locked tower embeds every clip once, before the split; the workers build the same weights from the seed
    prepare = functools.partial(embed_echo, model=init_model(mcfg, cfg.seed)) if locked else None
    if cfg.shuffle_pairs:
        log.info("shuffled pairs: every clip's ECG comes from a clip of another patient (negative control)")
        prepare = functools.partial(_shuffled, embed=prepare, seed=cfg.seed)
    if locked:
        log.info("echo tower locked: each clip's echo features are computed once, before training")
    # the split comes from the ID columns; training samples stream to the workers every epoch (pixels are never
    # materialised); retrieval ranks every held-out clip against every other on rank 0 (O(N^2)), so the held-out set
    # is a seeded sample of at most retrieval_max_clips clips, picked before any pixel is read
    exclude = read_patient_ids(cfg.exclude_patients) if cfg.exclude_patients else frozenset()
    data = stream_pairs(cfg.clips, cfg.pairs, cfg.heldout_fraction, cfg.seed, cfg.retrieval_max_clips, prepare,
                        exclude)
    train_ds, held_ds, held_patients = data.train, data.heldout, data.heldout_patients
    if exclude:
        log.info("left out %d clips of %d of the %d patients listed in %s", data.n_excluded_clips,
                 data.n_excluded_patients, len(exclude), cfg.exclude_patients)
    if data.n_heldout < data.n_heldout_all:
        log.info("held-out retrieval on a seeded sample of %d of %d clips", data.n_heldout, data.n_heldout_all)
    pairs_store = "features" if prepare is not None else _pairs_store(cfg, data.train_bytes)
    if pairs_store == "memory":
        log.info("training samples (%.0f MB of pixels) built once and kept in the object store", data.train_bytes / 2**20)
        train_ds = train_ds.materialize()
    elif pairs_store == "disk":
        folder = storage.absolute(cfg.pairs_cache) if cfg.pairs_cache else storage.join(output, "pairs_cache")
        key = cache_key(cfg.clips, cfg.pairs, held_patients, exclude)
        train_ds, how = cached_train_set(data.train, folder, key, data.n_train)
        pairs_store = f"disk ({how})"
    if locked and cfg.echo_features == "standardized":
        stats = feature_stats(train_ds)
        train_ds, held_ds = (standardize_features(d, stats).materialize() for d in (train_ds, held_ds))
    n_train, n_held = data.n_train, data.n_heldout
    if cfg.cls_positive == "study":
        train_ds = attach_study_mates(train_ds, cfg.max_mates, cfg.seed)
    # rank 0 reads the held-out clips every epoch in well under a second; their progress bars outlived the reads and
    # kept redrawing on the driver's console through later stages
    held_ds.context.enable_progress_bars = False
    batch_size = min(cfg.batch_size, n_train // cfg.workers)
    if batch_size < 2:
        raise UserError(f"{n_train} training clips are too few for {cfg.workers} worker(s) (need 2 per worker)")
    steps_per_epoch = (n_train // cfg.workers) // batch_size
    cpus = cfg.cpus_per_worker or _auto_cpus(cfg.workers)
    uri, run_id = _mlflow_run(cfg, output, {**flat_params(cfg), **{f"model.{k}": v for k, v in flat_params(mcfg).items()},
                                            "train_clips": n_train, "heldout_clips": n_held,
                                            "pairs_store_used": pairs_store,
                                            "excluded_patients": data.n_excluded_patients,
                                            "excluded_clips": data.n_excluded_clips})
    _log_clips_input(cfg, uri, run_id, n_train, n_held, held_patients)
    log.info("pretraining %s on %d train / %d held-out clips, %d worker(s) x %.2f CPU, batch %d/worker, MLflow run %s",
             cfg.preset, n_train, n_held, cfg.workers, cpus, batch_size, run_id)

    results_fs, results_fs_path = storage.filesystem(results) if storage.is_uri(results) else (None, results)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"cfg": to_dict(cfg), "model": to_dict(mcfg), "tracking_uri": uri, "run_id": run_id,
                           "batch_size": batch_size, "steps_per_epoch": steps_per_epoch,
                           "threads": max(1, int(cpus)), "keep_heldout": held_ds.size_bytes() <= HELDOUT_CACHE_BYTES,
                           "faults": faults.plan(), "filesystems": storage.carry()},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.use_gpu,
                                               resources_per_worker={"CPU": cpus}),
        torch_config=torch_config(),
        # a bucket: Ray Train writes the checkpoints there through the same file system (keys included)
        run_config=ray.train.RunConfig(name=RUN_NAME, storage_path=results_fs_path,
                                       storage_filesystem=results_fs,
                                       failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
                                       checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
        datasets={"train": train_ds, "heldout": held_ds},
        # one worker reads the training set whole: a split would start a coordinator actor (a process) for nothing
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"] if cfg.workers > 1 else []),
    )
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    try:
        result = trainer.fit()
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    with result.checkpoint.as_directory() as d:
        state = torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    if not storage.is_uri(output):
        atomic_torch_save(state, Path(output) / "checkpoints" / CHECKPOINT_FILE)
        return _finish(cfg, Path(output), mcfg, state, held_ds, held_patients, n_train, client, run_id,
                       pairs_store, data.n_excluded_patients)
    # a bucket: the files are written locally (MLflow logs local files), then uploaded one object each
    with tempfile.TemporaryDirectory(prefix="eee-ray-pretrain-") as tmp:
        local = Path(tmp)
        atomic_torch_save(state, local / "checkpoints" / CHECKPOINT_FILE)
        storage.download(storage.join(output, "config.yaml"), local / "config.yaml")
        metrics = _finish(cfg, local, mcfg, state, held_ds, held_patients, n_train, client, run_id,
                          pairs_store, data.n_excluded_patients)
        for f in ("checkpoints/" + CHECKPOINT_FILE, "ecg_encoder.pt", "retrieval.png", "metrics.json"):
            storage.upload(local / f, storage.join(output, f))   # metrics.json last: the run's completion mark
    return metrics


def _finish(cfg: PretrainConfig, output: Path, mcfg: ModelConfig, state: dict[str, Any], held_ds,
            held_patients: list[int], n_train: int, client, run_id: str, pairs_store: str,
            excluded_patients: int = 0) -> dict[str, Any]:
    """Driver-side outputs of a finished run (in a local folder): encoder hand-over, final retrieval, figure,
    metrics.json, MLflow."""
    model = EEEModel(mcfg)
    model.load_state_dict(state["model"])
    save_pretrained(model.ecg, output / "ecg_encoder.pt", token_len=cfg.pairs.token_len,
                    sample_rate=cfg.pairs.sample_rate, normalization=dict(NORMALIZATION))
    emb = embed(model, held_ds.iter_torch_batches(batch_size=64, collate_fn=Collate()))
    final = retrieval_metrics(emb["ecg"], emb["echo"])
    history = state["history"]
    figure = plot_retrieval(recall_curve(emb["ecg"], emb["echo"]), history, output / "retrieval.png")
    final.update(spread_metrics(emb))
    # clip-level retrieval is what the [CLS] terms train only with clip positives; study positives pair a clip's
    # ECG with its study mates' echo, so its own echo need not rank first
    reason = verdict(final, judge_retrieval=state["epoch"] > cfg.loss.warmup_epochs and cfg.cls_positive == "clip",
                     cfg=cfg.collapse)
    message = (f"COLLAPSED: {reason}. The encoder did not learn; see docs/pretraining.md (recipe {cfg.recipe})"
               if reason else "")
    metrics: dict[str, Any] = {
        **final, "collapsed": bool(reason), "collapse_reason": reason, "collapse_message": message,
        "recipe": cfg.recipe,
        "heldout_clips": len(emb["ecg"]), "train_clips": n_train, "pairs_store": pairs_store, "epochs": state["epoch"],
        "heldout_patients": held_patients, "excluded_patients": excluded_patients,
        "resumed_at": state["resumed_at"], "workers": cfg.workers,
        "preset": cfg.preset, "mlflow_run_id": run_id, "mlflow_tracking_uri": client.tracking_uri,
        **{f"loss_{k}": history[-1][f"loss_{k}"] for k in LOSS_KEYS}, "history": history,
    }
    atomic_write_text(output / "metrics.json", json.dumps(metrics, indent=2))
    client.log_metric(run_id, "collapsed", float(bool(reason)))
    if message:
        log.warning(message)
    for path in (output / "ecg_encoder.pt", output / "checkpoints" / CHECKPOINT_FILE, figure,
                 output / "metrics.json", output / "config.yaml"):
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, status="FINISHED")
    return metrics
