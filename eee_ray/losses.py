"""Pretraining losses (paper section 3.4, docs/contract.md, Loss): dual-margin contrastive at three levels plus the
alignment BCE.

The contrastive loss keeps, for each anchor row, only the semi-hard negatives that sit just below the positive: a
narrow band for negatives of the same identifier (same study/patient look alike, so only the closest ones teach
anything) and a wider band for other identifiers. Everything is tensor ops; no Python loop over pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

MASK_VALUE = -1.0e4  # masked-out logit: exp() underflows to exactly 0 in float32 and still fits in float16


def dual_margin_contrastive(f_a: torch.Tensor, f_b: torch.Tensor, ids: torch.Tensor, tau: float = 0.07,
                            m: float = 0.5, m_same: float = 0.2) -> torch.Tensor:
    """Symmetric InfoNCE over cosine similarities / ``tau`` restricted to the diagonal and dual-margin negatives.

    ``f_a, f_b``: (N, D) un-normalised features, row i of each is a positive pair; ``ids``: (N,) integer identifiers.
    Margins are in cosine units. The mask is computed once from the rows (anchor i of ``f_a``) and used for both
    directions; it carries no gradient.
    """
    n = f_a.shape[0]
    if n == 0:
        return (f_a.sum() + f_b.sum()) * 0.0
    s = F.normalize(f_a, dim=-1) @ F.normalize(f_b, dim=-1).T / tau
    with torch.no_grad():
        pos = s.diagonal().unsqueeze(1)
        eye = torch.eye(n, dtype=torch.bool, device=s.device)
        same = ids.view(-1, 1) == ids.view(1, -1)
        lower = torch.where(same, pos - m_same / tau, pos - m / tau)
        keep = eye | ((s < pos) & (s > lower))
    masked = s.masked_fill(~keep, MASK_VALUE)
    target = torch.arange(n, device=s.device)
    return 0.5 * (F.cross_entropy(masked, target) + F.cross_entropy(masked.T, target))


def info_nce(f_a: torch.Tensor, f_b: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """Plain symmetric InfoNCE (every other row is a negative): the warm-up objective. The dual-margin mask ignores
    negatives that already score above the positive, so from a collapsed start (all similarities tied) it has
    nothing to push against; a few epochs of full negatives spread the embeddings first."""
    if f_a.shape[0] == 0:
        return (f_a.sum() + f_b.sum()) * 0.0
    s = F.normalize(f_a, dim=-1) @ F.normalize(f_b, dim=-1).T / tau
    target = torch.arange(s.shape[0], device=s.device)
    return 0.5 * (F.cross_entropy(s, target) + F.cross_entropy(s.T, target))


@dataclass
class LossConfig:
    """Temperature, margins (cosine units) and the weight of each term of L_total."""

    tau: float = 0.07
    m: float = 0.5
    m_same: float = 0.2
    w_token: float = 1.0
    w_sid: float = 1.0
    w_pid: float = 1.0
    w_align: float = 1.0
    warmup_epochs: int = 0    # first epochs trained with plain InfoNCE instead of dual-margin (0 = the paper's recipe)


CONTRASTIVE_TERMS = ("token", "sid", "pid")


def pretraining_losses(out: dict[str, torch.Tensor], pad_mask: torch.Tensor, m_shift: torch.Tensor,
                       study_id: torch.Tensor, subject_id: torch.Tensor, cfg: LossConfig,
                       gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
                       warmup: bool = False) -> dict[str, torch.Tensor]:
    """The four terms of L_total (unweighted) for one (local) batch.

    Contrastive terms use aligned samples only (``m_shift == 0``) and valid tokens only; ``gather`` (identity on one
    worker) concatenates those features across workers so that negatives span the global batch. ``warmup`` swaps
    the dual-margin loss for plain InfoNCE.
    """
    gather = gather or (lambda x: x)
    aligned = m_shift == 0
    valid = (~pad_mask) & aligned.unsqueeze(1)
    tok_ids = study_id.unsqueeze(1).expand_as(pad_mask)
    if warmup:
        def contrastive_loss(a, b, _ids):
            return info_nce(a, b, cfg.tau)
    else:
        def contrastive_loss(a, b, ids):
            return dual_margin_contrastive(a, b, ids, tau=cfg.tau, m=cfg.m, m_same=cfg.m_same)
    ecg_cls, echo_cls = gather(out["ecg_cls"][aligned]), gather(out["echo_cls"][aligned])
    terms = {
        "token": contrastive_loss(gather(out["ecg_tok"][valid]), gather(out["echo_tok"][valid]),
                                  gather(tok_ids[valid])),
        "sid": contrastive_loss(ecg_cls, echo_cls, gather(study_id[aligned])),
        "pid": contrastive_loss(ecg_cls, echo_cls, gather(subject_id[aligned])),
        "align": F.binary_cross_entropy_with_logits(out["align_logit"], m_shift.float()),
    }
    return terms


def weighted_total(terms: dict[str, torch.Tensor], cfg: LossConfig, contrastive_scale: float = 1.0) -> torch.Tensor:
    """L_total = sum of weighted terms. ``contrastive_scale`` = world size makes DDP's gradient average exact for
    the gathered (global) contrastive terms, whose gradient each worker only sees through its local rows."""
    total = cfg.w_align * terms["align"]
    for name in CONTRASTIVE_TERMS:
        total = total + contrastive_scale * getattr(cfg, f"w_{name}") * terms[name]
    return total
