"""The ECG encoder (paper section 3.3.1): token projection, learnable [CLS], sinusoidal positions, Transformer.

The same class, with ``d_in`` set to the ViT width, is the echo encoder's temporal stage ("identical in design").
``save_pretrained`` / ``load_pretrained`` are the hand-over to the downstream benchmark: plain tensors and dicts only,
so the file loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eee_ray.io import atomic_torch_save


def sinusoidal_positions(n: int, d: int) -> torch.Tensor:
    """(n, d) fixed sine/cosine table of Vaswani et al.; works for odd ``d`` too."""
    pos = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(n, d)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return table


def transformer_stack(d_embed: int, n_layers: int, n_heads: int, d_ff: int, dropout: float) -> nn.TransformerEncoder:
    """Pre-norm Transformer encoder layers (stable without warm-up at small batch sizes)."""
    layer = nn.TransformerEncoderLayer(d_embed, n_heads, d_ff, dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)


class ECGEncoder(nn.Module):
    """(B, T, d_in) tokens + (B, T) padding mask (True = padding) -> [CLS] (B, D) and tokens (B, T, D)."""

    def __init__(self, d_in: int = 50, d_embed: int = 64, n_layers: int = 2, n_heads: int = 4, d_ff: int = 128,
                 dropout: float = 0.1, max_tokens: int = 64):
        super().__init__()
        self.d_in, self.d_embed, self.max_tokens = d_in, d_embed, max_tokens
        self.proj = nn.Linear(d_in, d_embed)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_embed))
        nn.init.normal_(self.cls, std=0.02)
        self.register_buffer("pos", sinusoidal_positions(max_tokens + 1, d_embed), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.blocks = transformer_stack(d_embed, n_layers, n_heads, d_ff, dropout)
        self.norm = nn.LayerNorm(d_embed)

    def forward(self, tokens: torch.Tensor, pad_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _ = tokens.shape
        if t > self.max_tokens:
            raise ValueError(f"ECGEncoder got {t} tokens, built for at most {self.max_tokens}")
        x = torch.cat([self.cls.expand(b, -1, -1), self.proj(tokens)], dim=1) + self.pos[: t + 1]
        mask = None
        if pad_mask is not None:
            mask = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=pad_mask.device), pad_mask.bool()], dim=1)
        x = self.norm(self.blocks(self.drop(x), src_key_padding_mask=mask))
        return x[:, 0], x[:, 1:]


def encoder_config(encoder: ECGEncoder) -> dict[str, Any]:
    """The constructor kwargs that rebuild ``encoder`` (stored beside its weights)."""
    layer = encoder.blocks.layers[0]
    return dict(d_in=encoder.d_in, d_embed=encoder.d_embed, n_layers=len(encoder.blocks.layers),
                n_heads=layer.self_attn.num_heads, d_ff=layer.linear1.out_features, dropout=layer.dropout.p,
                max_tokens=encoder.max_tokens)


def save_pretrained(encoder: ECGEncoder, path: str | Path, **meta: Any) -> Path:
    """Write ``{"state_dict", "config", **meta}`` atomically (meta: token_len, sample_rate, normalization, ...)."""
    state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    return atomic_torch_save({"state_dict": state, "config": encoder_config(encoder), **meta}, path)


def load_pretrained(path: str | Path) -> ECGEncoder:
    """Rebuild the encoder written by ``save_pretrained`` (safe load: weights and plain containers only)."""
    from eee_ray.errors import UserError
    from eee_ray.safe_load import check_state_dict, fit_mismatch, load_weights

    ckpt = load_weights(path, f"pretrained encoder {path}")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict) or "state_dict" not in ckpt:
        raise UserError(f"{path} is not an ecg_encoder.pt from `eee-ray pretrain` (needs state_dict and config)")
    state = check_state_dict(ckpt["state_dict"], f"pretrained encoder {path}")
    try:
        encoder = ECGEncoder(**ckpt["config"])
    except (TypeError, ValueError) as e:
        raise UserError(f"{path}: its config does not build an ECG encoder: {str(e)[:120]}") from None
    mismatch = fit_mismatch(encoder.state_dict(), state)
    if mismatch:
        raise UserError(f"{path}: weights do not fit the encoder its config describes: {mismatch}")
    encoder.load_state_dict(state)
    return encoder
