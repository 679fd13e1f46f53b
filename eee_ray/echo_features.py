"""A locked echo tower (LiT, Zhai et al. 2022) and study-level [CLS] positives (positives across time, as in CLOCS).

With ``echo_tower: locked`` the echo encoder keeps its initial weights, so every clip's echo features are the same in
every epoch: Ray Data computes them once and they replace the pixels in the training data, and a training step runs
the ECG tower only. With ``cls_positive: study`` each clip also carries the echo [CLS] of (up to ``max_mates``)
other clips of its study; the [CLS] terms pair the clip's ECG with one of them, drawn afresh every step. The beat
timing that the ECG and echo of one clip share then no longer solves the task; what a study's clips share (the
heart's anatomy) does.

A randomly initialised tower maps every clip to nearly the same vector (cosines near 1), so the features are
standardised per dimension with the training clips' statistics (``echo_features: standardized``) before any loss sees them:
what tells clips apart is then what the cosine measures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from eee_ray.models.eee import EEEModel, ModelConfig
from eee_ray.pairs import collate

KEPT_COLUMNS = ["ecg", "n_tokens", "subject_id", "study_id"]   # the echo pixels are replaced


def init_model(mcfg: ModelConfig, seed: int) -> EEEModel:
    """The seeded initial model: the driver (echo features) and every worker build the same weights from it."""
    torch.manual_seed(seed)
    return EEEModel(mcfg)


class EchoEmbedder:
    """Ray Data callable class: pixels -> the locked tower's ``echo_cls`` (D) and ``echo_tok`` (T x D) per clip."""

    def __init__(self, echo_state: dict[str, torch.Tensor], mcfg: ModelConfig, threads: int = 1) -> None:
        torch.set_num_threads(threads)
        self.echo = EEEModel(mcfg).echo
        self.echo.load_state_dict(echo_state)
        self.echo.eval()

    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        b = collate(batch)
        cls, tok = self.echo(b["echo"], b["pad_mask"])
        n = np.asarray(batch["n_tokens"])
        tokens = np.empty(len(n), dtype=object)
        tokens[:] = [tok[i, :k].numpy() for i, k in enumerate(n)]
        return {**{k: batch[k] for k in KEPT_COLUMNS}, "echo_cls": cls.numpy(), "echo_tok": tokens}


def embed_echo(ds, model: EEEModel, batch_size: int = 32):
    """Replace the echo pixels of ``ds`` by the locked tower's features (one actor; lazy)."""
    state = {k: v.detach().cpu() for k, v in model.echo.state_dict().items()}
    return ds.map_batches(EchoEmbedder, fn_constructor_kwargs={"echo_state": state, "mcfg": model.cfg},
                          batch_size=batch_size, concurrency=1, num_cpus=1, batch_format="numpy")


def _feature_sums(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    cls = np.stack(list(batch["echo_cls"])).astype(np.float64)
    tok = np.concatenate(list(batch["echo_tok"])).astype(np.float64)
    return {f"{name}_{part}": [value] for name, x in (("cls", cls), ("tok", tok))
            for part, value in (("n", len(x)), ("sum", x.sum(0)), ("sq", (x * x).sum(0)))}


def feature_stats(ds) -> dict[str, np.ndarray]:
    """Per-dimension mean and std of ``echo_cls`` and of all ``echo_tok`` rows of ``ds``: one pass of partial sums."""
    parts = ds.map_batches(_feature_sums, batch_format="numpy").take_all()
    stats = {}
    for name in ("cls", "tok"):
        n = sum(int(p[f"{name}_n"]) for p in parts)
        mean = sum(p[f"{name}_sum"] for p in parts) / n
        var = sum(p[f"{name}_sq"] for p in parts) / n - mean * mean
        stats[f"{name}_mean"] = mean.astype(np.float32)
        stats[f"{name}_std"] = np.sqrt(np.maximum(var, 0.0)).astype(np.float32) + np.float32(1e-6)
    return stats


def _standardize(batch: dict[str, np.ndarray], stats: dict[str, np.ndarray]) -> dict[str, Any]:
    tokens = np.empty(len(batch["echo_tok"]), dtype=object)
    tokens[:] = [(np.asarray(t) - stats["tok_mean"]) / stats["tok_std"] for t in batch["echo_tok"]]
    cls = (np.stack(list(batch["echo_cls"])) - stats["cls_mean"]) / stats["cls_std"]
    return {**batch, "echo_cls": cls.astype(np.float32), "echo_tok": tokens}


def standardize_features(ds, stats: dict[str, np.ndarray]):
    """``echo_cls`` and ``echo_tok`` of ``ds`` centred and scaled per dimension with ``stats`` (lazy)."""
    return ds.map_batches(_standardize, fn_kwargs={"stats": stats}, batch_format="numpy")


def _attach_mates(batch: dict[str, np.ndarray], by_study: dict[int, np.ndarray], max_mates: int) -> dict[str, Any]:
    """For each clip: the echo [CLS] of up to ``max_mates`` other clips of its study (itself when it is alone)."""
    mates = np.empty(len(batch["study_id"]), dtype=object)
    for i, (study, own) in enumerate(zip(batch["study_id"], batch["echo_cls"])):
        study_cls = by_study[int(study)]
        others = study_cls[~np.all(study_cls == np.asarray(own, dtype=np.float32), axis=1)][:max_mates]
        mates[i] = others if len(others) else np.asarray(own, dtype=np.float32)[None]
    return {**batch, "echo_mates": mates}


def attach_study_mates(ds, max_mates: int = 8, seed: int = 0):
    """Add ``echo_mates`` to every clip of ``ds`` (a dataset of echo features); shuffled, materialised.

    The driver collects every clip's (study, echo [CLS]) once (N x D floats: 65 MB for 255k clips at D = 64) and
    hands the per-study tables to one ``map_batches`` pass: no shuffle of the whole data set by study. The global
    shuffle at the end matters: the shuffle buffer alone would leave many clips of one study in one batch, where they
    are negatives of each other although their positives show the same heart.
    """
    table = ds.select_columns(["study_id", "echo_cls"]).to_pandas()
    cls = np.stack(table["echo_cls"].to_numpy()).astype(np.float32)
    rng = np.random.default_rng(seed)
    by_study = {}
    for study, rows in table.groupby("study_id").indices.items():
        by_study[int(study)] = cls[rng.permutation(rows)]   # which mates a clip keeps, when it has more than enough
    return ds.map_batches(_attach_mates, fn_kwargs={"by_study": by_study, "max_mates": max_mates},
                          batch_format="numpy").random_shuffle(seed=seed).materialize()


def pick_mates(mates: torch.Tensor, n_mates: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One of each clip's study mates, uniformly at random: (B, K, D) + counts (B,) -> (B, D)."""
    idx = (torch.rand(len(n_mates), generator=generator) * n_mates).long().clamp(max=mates.shape[1] - 1)
    return mates[torch.arange(len(n_mates)), idx]
