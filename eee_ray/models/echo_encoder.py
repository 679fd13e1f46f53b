"""The echo encoder (paper section 3.3.2): a ViT over 3D tubelets of each sub-clip, then a temporal Transformer.

Only valid (unpadded) sub-clips go through the ViT, which is where almost all the compute is; padded positions get a
zero vector and are masked in the temporal stage, which is an ``ECGEncoder`` over the ViT features.
"""

from __future__ import annotations

import torch
from torch import nn

from eee_ray.models.ecg_encoder import ECGEncoder, transformer_stack

PIXEL_MEAN, PIXEL_STD = 0.5, 0.25  # pixel_norm "fixed": grey levels / 255 -> (x - 0.5) / 0.25 (the earlier scaling)
PIXEL_EPS = 1.0 / 255.0            # pixel_norm "clip": floor of a sub-clip's std (a blank sub-clip stays finite)
PIXEL_NORMS = ("clip", "fixed", "motion")
VIT_POOLS = ("slots", "cls")
VIT_NORMS = ("batch", "none")


def normalize_pixels(clips: torch.Tensor, method: str) -> torch.Tensor:
    """uint8 sub-clips (N, F, H, W) -> float input of the tubelet embedding.

    "clip": each sub-clip standardised by its own mean and std, like the per-clip z-score of the ECG. Echo frames are
    mostly black sector background (synthetic: mean 0.056, std 0.10 of full scale), so the fixed (x - 0.5) / 0.25
    shifted every pixel by about -2 and left the content a fifth of the offset: every patch embedding, and so every
    clip's embedding, started as nearly the same vector (cosine 0.9995 between clips' ViT [CLS]).
    "fixed": the earlier constants, kept to reproduce runs made with them.
    """
    x = clips.float() / 255.0
    if method == "fixed":
        return (x - PIXEL_MEAN) / PIXEL_STD
    if method == "motion":
        x = x - x.mean(dim=1, keepdim=True)
        return x / x.std(dim=(1, 2, 3), keepdim=True).clamp(min=PIXEL_EPS)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True).clamp(min=PIXEL_EPS)
    return (x - mean) / std


class TubeletViT(nn.Module):
    """(N, F, H, W) sub-clips (C = 1) -> (N, D_vit) vectors.

    ``pool``: how the sub-clip's vector is read off the last layer.

    - "cls": the [CLS] token (the standard ViT; the earlier behaviour).
    - "slots": the patch tokens averaged over space within each temporal slot of the tubelet grid (F / 2 slots),
      the slots concatenated in order and projected back to D_vit (a factorised space-then-time readout, as in
      ViViT's factorised encoder). What a sub-clip shares with its ECG token is when in it the ventricle contracts:
      the frame-by-frame course of the contraction. A linear read of the pixels recovers it (held-out R^2 0.95 on
      synthetic sub-clips) and of the slots (0.70 at init), but the [CLS], whose attention starts uniform over all
      patches and times, does not carry it and does not learn it in the steps of a small run (R^2 about 0 after 130
      supervised steps, 0.55 with "slots"; benchmarks/echo_readout.py).
    """

    def __init__(self, frames: int = 8, image_size: int = 112, tubelet: tuple[int, int, int] = (2, 16, 16),
                 d_vit: int = 64, n_layers: int = 2, n_heads: int = 4, d_ff: int = 128, dropout: float = 0.1,
                 pixel_norm: str = "fixed", pool: str = "cls"):
        super().__init__()
        if pixel_norm not in PIXEL_NORMS:
            raise ValueError(f"pixel_norm must be one of {PIXEL_NORMS}, not {pixel_norm!r}")
        if pool not in VIT_POOLS:
            raise ValueError(f"pool must be one of {VIT_POOLS}, not {pool!r}")
        self.pixel_norm, self.pool = pixel_norm, pool
        tf, th, tw = tubelet
        if frames % tf or image_size % th or image_size % tw:
            raise ValueError(f"tubelet {tubelet} must divide the sub-clip {frames}x{image_size}x{image_size}")
        n_patches = (frames // tf) * (image_size // th) * (image_size // tw)
        self.embed = nn.Conv3d(1, d_vit, kernel_size=tubelet, stride=tubelet)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_vit))
        self.pos = nn.Parameter(torch.zeros(1, n_patches + 1, d_vit))
        nn.init.normal_(self.cls, std=0.02)
        nn.init.normal_(self.pos, std=0.02)
        self.n_slots = frames // tf
        if pool == "slots":
            self.slot_proj = nn.Linear(self.n_slots * d_vit, d_vit)
        self.blocks = transformer_stack(d_vit, n_layers, n_heads, d_ff, dropout)
        self.norm = nn.LayerNorm(d_vit)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = normalize_pixels(clips, self.pixel_norm)
        x = self.embed(x.unsqueeze(1)).flatten(2).transpose(1, 2)  # (N, patches, D)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.norm(self.blocks(x))
        if self.pool == "cls":
            return x[:, 0]
        slots = x[:, 1:].reshape(x.shape[0], self.n_slots, -1, x.shape[-1]).mean(2)   # patches are (t, h, w)-ordered
        return self.slot_proj(slots.flatten(1))


class EchoEncoder(nn.Module):
    """(B, T, F, H, W) sub-clips + (B, T) padding mask -> [CLS] (B, D) and tokens (B, T, D).

    ``vit_norm``: "batch" standardises each dimension of the ViT's sub-clip features over the valid sub-clips of the
    batch (a BatchNorm without affine parameters that always uses the batch's own statistics, in training and in
    evaluation) before the temporal stage. Every sub-clip shows the same sector, text and ventricle, so a randomly
    initialised ViT maps them all to nearly one vector (mean cosine 0.92-1.0) and the temporal stage sees almost no
    difference between clips: the echo tower's [CLS] starts, and stays for several epochs, at a mean cosine of 1.00.
    Removing the shared part and scaling up what differs is what standardising a locked tower's features does
    (eee_ray/echo_features.py); here it happens inside the trained tower. An echo embedding then depends on the
    other clips of its batch: embed clips in batches of many (retrieval uses up to 64 clips a batch). "none": off
    (the paper, and the earlier behaviour).
    """

    def __init__(self, vit: TubeletViT, temporal: ECGEncoder, vit_norm: str = "none"):
        super().__init__()
        if vit_norm not in VIT_NORMS:
            raise ValueError(f"vit_norm must be one of {VIT_NORMS}, not {vit_norm!r}")
        self.vit, self.temporal, self.vit_norm = vit, temporal, vit_norm
        self.d_embed = temporal.d_embed
        if vit_norm == "batch":
            self.feature_norm = nn.BatchNorm1d(temporal.d_in, affine=False, track_running_stats=False)

    def forward(self, clips: torch.Tensor, pad_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, t = clips.shape[:2]
        valid = torch.ones(b, t, dtype=torch.bool, device=clips.device) if pad_mask is None else ~pad_mask.bool()
        feats = self.vit(clips[valid])
        if self.vit_norm == "batch" and feats.shape[0] > 1:
            feats = self.feature_norm(feats)
        seq = feats.new_zeros(b, t, feats.shape[-1])
        seq[valid] = feats
        return self.temporal(seq, pad_mask)
