"""The contract every downstream model of the benchmark keeps (docs/contract.md: Downstream benchmark, Analysis and
inference).

The benchmark trains ``forward`` on windows, the LDA stage reads ``forward_features`` (the penultimate embedding), and
a checkpoint rebuilds the model from ``registry.model_spec``; one base class keeps those three uses consistent.
"""

from __future__ import annotations

import torch
from torch import nn


class DownstreamModel(nn.Module):
    """Base: input ``(B, n_leads, window)`` float32 -> ``forward_features`` ``(B, feature_dim)`` -> logits."""

    n_leads: int
    window: int
    feature_dim: int
    head: nn.Module

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse a wrongly shaped batch loudly: a silent broadcast would train on garbage."""
        if x.ndim != 3 or x.shape[1] != self.n_leads or x.shape[2] != self.window:
            raise ValueError(f"{type(self).__name__} expects (B, {self.n_leads}, {self.window}), got {tuple(x.shape)}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What an optimizer should see (a linear probe freezes its encoder)."""
        return [p for p in self.parameters() if p.requires_grad]
