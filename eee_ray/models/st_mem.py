"""ST-MEM-style ViT over per-lead patches (Na et al., "Guiding Masked Representation Learning to Capture
Spatio-Temporal Relationship of Electrocardiogram", ICLR 2024), trained end to end (no masked pretraining, like the
EEE paper).

Each lead of the whole 10 s record is cut into non-overlapping patches embedded by one shared linear map. A learnable
SEP token opens and closes each lead's sequence; a positional embedding shared by all leads says *when* a patch is, a
learnable lead embedding says *which lead* it is; all leads' tokens go through one Transformer encoder (spatio-temporal
attention) and the non-SEP outputs are mean-pooled.

Patch size: ST-MEM uses 75 samples at 250 Hz (0.3 s); 75 does not divide the 1000 samples of 10 s at 100 Hz, so this
uses 50 samples (0.5 s, the EEE token length): 20 patches per lead, 12 x 22 = 264 tokens for 12 leads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from eee_ray.models.base import DownstreamModel


@dataclass(frozen=True)
class STMEMConfig:
    patch_size: int = 50
    dim: int = 768            # ViT-B, ST-MEM's main encoder
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    dropout: float = 0.1
    window: int = 1000        # the whole 10 s at 100 Hz (paper section 4.3)


PRESETS = {
    "paper": STMEMConfig(),
    "tiny": STMEMConfig(dim=32, depth=2, heads=4, mlp_dim=64),
}


class STMEM(DownstreamModel):
    """Per-lead patch tokens + SEP + shared positions + lead embeddings -> Transformer -> mean of patch outputs."""

    def __init__(self, n_leads: int, n_classes: int, cfg: STMEMConfig = STMEMConfig()):
        super().__init__()
        if cfg.window % cfg.patch_size:
            raise ValueError(f"ST-MEM window {cfg.window} is not a multiple of patch_size {cfg.patch_size}")
        self.n_leads, self.window, self.cfg = n_leads, cfg.window, cfg
        self.n_patches = cfg.window // cfg.patch_size
        self.patch_embed = nn.Linear(cfg.patch_size, cfg.dim)
        self.sep = nn.Parameter(torch.zeros(cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(self.n_patches + 2, cfg.dim))
        self.lead_embed = nn.Parameter(torch.zeros(n_leads, cfg.dim))
        for p in (self.sep, self.pos_embed, self.lead_embed):
            nn.init.trunc_normal_(p, std=0.02)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, cfg.mlp_dim, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.feature_dim = cfg.dim
        self.head = nn.Linear(cfg.dim, n_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        b = x.shape[0]
        patches = self.patch_embed(x.reshape(b, self.n_leads, self.n_patches, self.cfg.patch_size))
        sep = self.sep.expand(b, self.n_leads, 1, -1)
        tokens = torch.cat([sep, patches, sep], dim=2) + self.pos_embed + self.lead_embed[:, None, :]
        h = self.transformer(tokens.reshape(b, self.n_leads * (self.n_patches + 2), -1))
        h = h.reshape(b, self.n_leads, self.n_patches + 2, -1)[:, :, 1:-1]
        return self.norm(h.mean(dim=(1, 2)))
