"""The EEE downstream classifier: the echo-pretrained ECG encoder plus one linear layer (paper section 4.3).

A window of 250 samples per lead (2.5 s at 100 Hz) is cut into 0.5 s tokens of 50 samples, the token length the
encoder was pretrained on. The encoder has no notion of leads (it was pretrained on single ECG token streams), so each
lead runs through it separately with shared weights (leads folded into the batch) and the per-lead [CLS] embeddings are
*concatenated*, not averaged: a mean would throw away which lead said what, and the linear head could no longer weigh
leads differently. ``feature_dim = n_leads * d_embed``.

Strategies: ``finetune`` trains everything; ``linear_probe`` freezes the encoder and keeps it in eval mode (no
dropout) whatever ``train()`` is called with, so only the head learns. A randomly initialised encoder of the same
architecture (``eee_random``) is the control that shows what the pretraining itself buys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from eee_ray.errors import UserError
from eee_ray.models.base import DownstreamModel
from eee_ray.models.ecg_encoder import ECGEncoder

STRATEGIES = ("finetune", "linear_probe")


@dataclass(frozen=True)
class EEEClassifierConfig:
    token_len: int = 50       # 0.5 s at 100 Hz, fixed by pretraining
    n_tokens: int = 5         # window = 5 x 50 = 250 samples
    strategy: str = "finetune"


NORMALIZATION_KEYS = ("mean", "std")


def encoder_preset(name: str) -> dict[str, Any]:
    """ECGEncoder kwargs of a pretraining preset, so the no-checkpoint and random controls match what pretrains."""
    from eee_ray.models.eee import PRESETS

    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r} for EEE; known: {', '.join(sorted(PRESETS))}")
    cfg = PRESETS[name]
    return dict(d_in=cfg.token_len, d_embed=cfg.d_embed, n_layers=cfg.n_layers, n_heads=cfg.n_heads, d_ff=cfg.d_ff,
                dropout=cfg.dropout, max_tokens=cfg.max_tokens, cls_position=cfg.cls_position)


class Standardize(nn.Module):
    """Applies the pretraining checkpoint's input normalisation, so downstream windows look like pretraining tokens.

    Two forms: ``{"method": "per_clip_zscore", "eps": e}`` (what ``eee-ray pretrain`` writes: each window, per lead,
    centred on its median and divided by its standard deviation, as ``eee_ray.pairs.normalize_ecg`` does per clip)
    and a global ``{"mean": m, "std": s}``. Anything else is refused: a normalisation this code does not understand
    must not be silently skipped.
    """

    def __init__(self, normalization: Mapping[str, Any] | None):
        super().__init__()
        norm = dict(normalization or {})
        self.per_window = norm.get("method") == "per_clip_zscore"
        if self.per_window:
            self.eps = float(norm.get("eps", 1e-6))
        else:
            unknown = sorted(set(norm) - set(NORMALIZATION_KEYS))
            if unknown or "method" in norm:
                raise UserError(f"unsupported ECG normalization {norm!r}; known: method 'per_clip_zscore' "
                                f"or keys {', '.join(NORMALIZATION_KEYS)}")
        self.register_buffer("mean", torch.as_tensor(float(norm.get("mean", 0.0))))
        self.register_buffer("std", torch.as_tensor(float(norm.get("std", 1.0))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_window:
            center = torch.quantile(x, 0.5, dim=-1, keepdim=True)
            scale = x.std(dim=-1, unbiased=False, keepdim=True).clamp_min(self.eps)
            return (x - center) / scale
        return (x - self.mean) / self.std


class EEEClassifier(DownstreamModel):
    """Per-lead tokens -> shared ECG encoder -> concatenated per-lead [CLS] = features -> linear head."""

    def __init__(self, n_leads: int, n_classes: int, encoder: ECGEncoder, normalization: Mapping[str, Any] | None,
                 cfg: EEEClassifierConfig = EEEClassifierConfig()):
        super().__init__()
        if cfg.strategy not in STRATEGIES:
            raise ValueError(f"EEE strategy must be one of {STRATEGIES}, got {cfg.strategy!r}")
        self.n_leads, self.cfg = n_leads, cfg
        self.window = cfg.token_len * cfg.n_tokens
        self.standardize = Standardize(normalization)
        self.encoder = encoder
        self.feature_dim = n_leads * encoder.d_embed
        self.head = nn.Linear(self.feature_dim, n_classes)
        self.frozen = cfg.strategy == "linear_probe"
        if self.frozen:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> "EEEClassifier":
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        b = x.shape[0]
        tokens = self.standardize(x).reshape(b * self.n_leads, self.cfg.n_tokens, self.cfg.token_len)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            cls, _ = self.encoder(tokens, None)
        return cls.reshape(b, self.feature_dim)
