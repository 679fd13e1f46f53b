"""The two-tower EEE pretraining model (paper section 3.3): ECG encoder, echo encoder, alignment head, presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from eee_ray.errors import UserError
from eee_ray.models.ecg_encoder import ECGEncoder
from eee_ray.models.echo_encoder import EchoEncoder, TubeletViT


@dataclass
class ModelConfig:
    """Sizes of both towers. The temporal echo stage shares the ECG encoder's width, depth and heads."""

    d_embed: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 128
    dropout: float = 0.1
    token_len: int = 50        # D_ecg: ECG samples per token
    max_tokens: int = 16       # T_max
    frames: int = 8            # F: frames per echo sub-clip
    image_size: int = 112      # H = W
    tubelet: list[int] = field(default_factory=lambda: [2, 16, 16])
    d_vit: int = 64
    vit_layers: int = 2
    vit_heads: int = 4
    vit_d_ff: int = 128
    # input scaling and [CLS] positions (see normalize_pixels and ECGEncoder); a model_config saved before these
    # fields existed reads back with the earlier behaviour ("fixed", True), its presets use the corrected one
    pixel_norm: str = "fixed"
    cls_position: bool = True
    vit_pool: str = "cls"      # the echo ViT's readout per sub-clip: cls | slots (see TubeletViT)
    vit_norm: str = "none"     # the ViT features standardised over the batch before the temporal stage: none | batch


PRESETS: dict[str, ModelConfig] = {
    # CPU: tests, demo, learning proof
    "tiny": ModelConfig(pixel_norm="clip", cls_position=False),
    # GPU scale (docs/contract.md, Model: D_embed 256-768, 4-12 layers)
    "paper": ModelConfig(d_embed=256, n_layers=4, n_heads=8, d_ff=1024, dropout=0.1, d_vit=384, vit_layers=6,
                         vit_heads=6, vit_d_ff=1536, pixel_norm="clip", cls_position=False),
}


def preset(name: str, **overrides) -> ModelConfig:
    if name not in PRESETS:
        raise UserError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


class EEEModel(nn.Module):
    """Both towers plus ``Linear([z_ecg_cls, z_echo_cls]) -> 1`` predicting whether a pair was shifted."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        temporal = dict(d_embed=cfg.d_embed, n_layers=cfg.n_layers, n_heads=cfg.n_heads, d_ff=cfg.d_ff,
                        dropout=cfg.dropout, max_tokens=cfg.max_tokens, cls_position=cfg.cls_position)
        self.ecg = ECGEncoder(d_in=cfg.token_len, **temporal)
        vit = TubeletViT(cfg.frames, cfg.image_size, tuple(cfg.tubelet), cfg.d_vit, cfg.vit_layers, cfg.vit_heads,
                         cfg.vit_d_ff, cfg.dropout, cfg.pixel_norm, cfg.vit_pool)
        self.echo = EchoEncoder(vit, ECGEncoder(d_in=cfg.d_vit, **temporal), cfg.vit_norm)
        self.align_head = nn.Linear(2 * cfg.d_embed, 1)

    def lock_echo(self) -> None:
        """Freeze the echo tower (LiT): only the ECG tower and the alignment head learn."""
        for p in self.echo.parameters():
            p.requires_grad_(False)

    def forward(self, ecg: torch.Tensor, echo: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                pad_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """``echo``: sub-clip pixels, or the ``(echo_cls, echo_tok)`` a locked echo tower computed once."""
        ecg_cls, ecg_tok = self.ecg(ecg, pad_mask)
        echo_cls, echo_tok = echo if isinstance(echo, tuple) else self.echo(echo, pad_mask)
        logit = self.align_head(torch.cat([ecg_cls, echo_cls], dim=-1)).squeeze(-1)
        return {"ecg_cls": ecg_cls, "ecg_tok": ecg_tok, "echo_cls": echo_cls, "echo_tok": echo_tok,
                "align_logit": logit}
