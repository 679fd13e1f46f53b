"""S4D: diagonal structured state-space layers (Gu, Gupta, Goel, Re, NeurIPS 2022).

Each of H channels runs a continuous SSM x' = A x + B u, y = C x + D u with a diagonal complex A (N/2 conjugate pairs,
only one of each pair is stored and the real part of the sum is doubled). Zero-order hold with a learned step dt gives
A_bar = exp(dt A), B_bar = (exp(dt A) - 1) / A * B, so the layer is a convolution with K[l] = 2 Re(C A_bar^l B_bar),
computed for all l at once as a Vandermonde product and applied with an FFT in O(L log L). Bidirectional: a second
kernel runs over the reversed sequence. Initialisation: S4D-Lin (A_n = -1/2 + i pi n) or S4D-Inv
(A_n = -1/2 + i N/pi (N/(2n+1) - 1)); dt log-uniform in [dt_min, dt_max].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from eee_ray.models.base import DownstreamModel


@dataclass(frozen=True)
class S4Config:
    d_model: int = 512        # paper section 4.3: hidden 512
    n_layers: int = 4         # paper section 4.3: 4 layers
    d_state: int = 64         # N (N/2 complex modes stored)
    init: str = "lin"         # "lin" (S4D-Lin) or "inv" (S4D-Inv)
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    dropout: float = 0.1
    prenorm: bool = False
    bidirectional: bool = True
    window: int = 250         # 2.5 s at 100 Hz


PRESETS = {
    "paper": S4Config(),
    "tiny": S4Config(d_model=32, n_layers=2, d_state=16),
}

SSM_PARAM_NAMES = ("log_dt", "log_A_real", "A_imag")  # trained with a small lr and no weight decay (S4 convention)


class S4DKernel(nn.Module):
    """Learns dt, A, C (B fixed to 1, as S4D-Lin) and produces the ``(n_kernels, H, L)`` convolution kernels."""

    def __init__(self, d_model: int, d_state: int, n_kernels: int, init: str, dt_min: float, dt_max: float):
        super().__init__()
        if init not in ("lin", "inv"):
            raise ValueError(f"S4D init must be 'lin' or 'inv', got {init!r}")
        n_modes = d_state // 2
        n = torch.arange(n_modes, dtype=torch.float32)
        if init == "lin":
            a_imag = math.pi * n
        else:
            a_imag = d_state / math.pi * (d_state / (2 * n + 1) - 1)
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(d_model, n_modes)))
        self.A_imag = nn.Parameter(a_imag.repeat(d_model, 1))
        log_dt = torch.rand(d_model) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        c = torch.randn(n_kernels, d_model, n_modes, dtype=torch.cfloat) * math.sqrt(0.5)
        self.C = nn.Parameter(torch.view_as_real(c))

    def discretize(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ZOH: (dt A (H, N/2), B_bar (H, N/2), C (n_kernels, H, N/2)), all complex; A_bar = exp(dt A)."""
        A = -torch.exp(self.log_A_real) + 1j * self.A_imag
        dtA = A * torch.exp(self.log_dt)[:, None]
        B_bar = (torch.exp(dtA) - 1.0) / A
        return dtA, B_bar, torch.view_as_complex(self.C)

    def forward(self, length: int) -> torch.Tensor:
        dtA, B_bar, C = self.discretize()
        vandermonde = torch.exp(dtA[..., None] * torch.arange(length, device=dtA.device))   # A_bar^l, (H, N/2, L)
        return 2.0 * torch.einsum("khn,hnl->khl", C * B_bar, vandermonde).real


class S4DLayer(nn.Module):
    """SSM convolution (+ D skip) -> GELU -> dropout -> 1x1 conv to 2H -> GLU, on ``(B, H, L)``."""

    def __init__(self, cfg: S4Config):
        super().__init__()
        self.bidirectional = cfg.bidirectional
        self.kernel = S4DKernel(cfg.d_model, cfg.d_state, 2 if cfg.bidirectional else 1, cfg.init, cfg.dt_min,
                                cfg.dt_max)
        self.D = nn.Parameter(torch.randn(cfg.d_model))
        self.post = nn.Sequential(nn.GELU(), nn.Dropout(cfg.dropout), nn.Conv1d(cfg.d_model, 2 * cfg.d_model, 1),
                                  nn.GLU(dim=1))

    def convolve(self, u: torch.Tensor) -> torch.Tensor:
        """y = K * u + D u. Bidirectional: the reversed kernel sits at negative lags -1..-L of a 2L circular conv."""
        length = u.shape[-1]
        k = self.kernel(length)
        if self.bidirectional:
            k = nn.functional.pad(k[0], (0, length)) + nn.functional.pad(k[1].flip(-1), (length, 0))
        else:
            k = nn.functional.pad(k[0], (0, length))
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * length) * torch.fft.rfft(k, n=2 * length), n=2 * length)
        return y[..., :length] + u * self.D[:, None]

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.post(self.convolve(u))


class S4Model(DownstreamModel):
    """Linear encoder -> n_layers x (S4D layer, dropout, residual, LayerNorm) -> mean over time = features -> linear."""

    def __init__(self, n_leads: int, n_classes: int, cfg: S4Config = S4Config()):
        super().__init__()
        self.n_leads, self.window, self.cfg = n_leads, cfg.window, cfg
        self.encoder = nn.Linear(n_leads, cfg.d_model)
        self.layers = nn.ModuleList(S4DLayer(cfg) for _ in range(cfg.n_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.d_model) for _ in range(cfg.n_layers))
        self.dropout = nn.Dropout(cfg.dropout)
        self.feature_dim = cfg.d_model
        self.head = nn.Linear(cfg.d_model, n_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        h = self.encoder(x.transpose(1, 2))                  # (B, L, H)
        for layer, norm in zip(self.layers, self.norms):
            z = norm(h) if self.cfg.prenorm else h
            h = h + self.dropout(layer(z.transpose(1, 2)).transpose(1, 2))
            if not self.cfg.prenorm:
                h = norm(h)
        return h.mean(dim=1)
