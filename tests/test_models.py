"""Downstream model zoo (docs/contract.md, Downstream benchmark): shapes, the feature/head split, paper sizes, S4D
against an explicit recurrence, XResNet's zero-init identity blocks, linear-probe freezing, a learnable synthetic task,
registry errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from eee_ray.errors import UserError
from eee_ray.models.registry import build_model, list_models, model_spec, param_groups

FS = 100
NORMALIZATION = {"mean": 0.1, "std": 0.5}
# (registry name, extra kwargs); "pretrained" is filled with a saved checkpoint path by the fixture
VARIANTS = {
    "xresnet1d50": ("xresnet1d50", {}),
    "s4": ("s4", {}),
    "st_mem": ("st_mem", {}),
    "eee_finetune": ("eee", {"strategy": "finetune", "pretrained": True}),
    "eee_linear_probe": ("eee", {"strategy": "linear_probe", "pretrained": True}),
    "eee_random": ("eee_random", {}),
}


@pytest.fixture(scope="module")
def encoder_ckpt(tmp_path_factory):
    """A 'pretrained' tiny encoder saved in the pretraining checkpoint format (weights are random but fixed)."""
    from eee_ray.models.ecg_encoder import ECGEncoder, save_pretrained
    from eee_ray.models.eee_classifier import encoder_preset

    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("enc") / "ecg_encoder.pt"
    save_pretrained(ECGEncoder(**encoder_preset("tiny")), path, token_len=50, sample_rate=100,
                    normalization=NORMALIZATION)
    return str(path)


def make(variant: str, n_leads: int, n_classes: int, preset: str = "tiny", ckpt: str | None = None) -> nn.Module:
    name, kwargs = VARIANTS[variant]
    kwargs = dict(kwargs)
    if kwargs.pop("pretrained", False):
        kwargs["pretrained"] = ckpt
    return build_model(name, n_leads, n_classes, preset, **kwargs)


def synthetic_ecg(n: int, n_leads: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """10 s records at 100 Hz of Gaussian P-QRS-T beats at 60-100 bpm. Label 0: tall QRS (1.6 vs 0.8);
    label 1: inverted T wave. Every lead is the same beat with a lead-specific gain, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n, 2), generator=g).float()
    t = torch.arange(10 * FS) / FS
    x = torch.zeros(n, 10 * FS)
    period = 60.0 / (60 + 40 * torch.rand(n, generator=g))
    phase = torch.rand(n, generator=g) * period
    qrs_amp = torch.where(y[:, 0] > 0, 1.6, 0.8)
    t_amp = torch.where(y[:, 1] > 0, -0.35, 0.35)
    for k in range(14):
        beat = (phase + k * period)[:, None]
        for offset, width, amp in ((-0.16, 0.025, 0.15), (0.0, 0.012, qrs_amp[:, None]), (0.25, 0.045, t_amp[:, None])):
            x += amp * torch.exp(-0.5 * ((t - beat - offset) / width) ** 2)
    gains = 0.5 + torch.rand(n_leads, generator=g)
    x = x[:, None, :] * gains[None, :, None] + 0.05 * torch.randn(n, n_leads, 10 * FS, generator=g)
    return x, y


def crop(x: torch.Tensor, window: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, x.shape[-1] - window + 1, (x.shape[0],), generator=g)
    return torch.stack([r[:, s:s + window] for r, s in zip(x, starts.tolist())])


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("n_leads", [1, 12])
def test_shapes_and_feature_head_split(variant, n_leads, encoder_ckpt):
    torch.manual_seed(0)
    model = make(variant, n_leads, 5, ckpt=encoder_ckpt).eval()
    x = torch.randn(3, n_leads, model.window)
    with torch.no_grad():
        z = model.forward_features(x)
        logits = model(x)
    assert z.shape == (3, model.feature_dim)
    assert logits.shape == (3, 5)
    torch.testing.assert_close(model.forward_head(z), logits)
    expected_window = 1000 if variant == "st_mem" else 250
    assert model.window == expected_window
    with pytest.raises(ValueError, match="expects"):
        model(torch.randn(3, n_leads, model.window - 1))


@pytest.mark.parametrize("variant, lo, hi, run_forward", [
    ("xresnet1d50", 15e6, 22e6, True),    # ResNet-50 widths, 1-D kernel 5: 18.6 M
    ("s4", 2.0e6, 3.0e6, True),           # d_model 512 x 4 layers: 2.5 M
    ("st_mem", 80e6, 90e6, False),        # ViT-B: 85 M (a CPU forward costs seconds; the tiny one checks the code)
    ("eee_random", 1.5e6, 4.0e6, True),   # paper encoder preset
])
def test_paper_preset_sizes_and_forward(variant, lo, hi, run_forward):
    model = make(variant, 12, 20, preset="paper").eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert lo < n_params < hi, n_params
    if run_forward:
        with torch.no_grad():
            assert model(torch.randn(2, 12, model.window)).shape == (2, 20)


def test_paper_architecture_details():
    from eee_ray.models.xresnet1d import Bottleneck

    xr = build_model("xresnet1d50", 1, 5)
    blocks = [m for m in xr.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 3 + 4 + 6 + 3
    assert sum(isinstance(m, nn.AvgPool1d) for m in xr.modules()) == 3  # ResNet-D: one per downsampling stage
    assert sum(isinstance(m, nn.Conv1d) for m in xr.stem.modules()) == 3
    assert xr.feature_dim == 2 * 2048  # concat max + avg pooling
    s4m = build_model("s4", 1, 5)
    assert (s4m.cfg.d_model, s4m.cfg.n_layers, s4m.cfg.bidirectional) == (512, 4, True)


def test_s4d_fft_convolution_equals_explicit_recurrence():
    """Ground truth: run the ZOH-discretised SSM x_t = A_bar x_{t-1} + B_bar u_t, y_t = 2 Re(C x_t) step by step
    (and, for the backward kernel, over the reversed sequence, covering the strictly future samples)."""
    from eee_ray.models.s4 import S4Config, S4DLayer

    torch.manual_seed(0)
    for init in ("lin", "inv"):
        layer = S4DLayer(S4Config(d_model=3, d_state=8, init=init, dt_min=0.05, dt_max=0.5)).double()
        u = torch.randn(2, 3, 40, dtype=torch.float64)
        dtA, B_bar, C = layer.kernel.discretize()
        A_bar = torch.exp(dtA)

        def recurrence(c: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            state = torch.zeros(v.shape[0], 3, 4, dtype=torch.complex128)
            out = []
            for step in range(v.shape[-1]):
                state = A_bar * state + B_bar * v[..., step, None]
                out.append(2 * (c * state).sum(-1).real)
            return torch.stack(out, dim=-1)

        forward = recurrence(C[0], u)
        backward_incl = recurrence(C[1], u.flip(-1)).flip(-1)          # sum_j K1[j] u[t + j]
        backward = nn.functional.pad(backward_incl[..., 1:], (0, 1))   # strictly future: u[t + 1 + j]
        expected = forward + backward + layer.D[:, None] * u
        torch.testing.assert_close(layer.convolve(u), expected, rtol=1e-9, atol=1e-9)


def test_xresnet_zero_init_makes_every_block_its_shortcut():
    from eee_ray.models.xresnet1d import Bottleneck

    torch.manual_seed(0)
    model = build_model("xresnet1d50", 12, 3, "tiny", layers=[1, 2, 1, 1]).train()  # block 2: a pure identity one
    seen = []

    def check(block, inputs, output):
        seen.append(block)
        torch.testing.assert_close(output, torch.relu(block.shortcut(inputs[0])))
        if len(block.shortcut) == 0:
            torch.testing.assert_close(output, inputs[0])  # identity block: input is post-ReLU, so relu(x) = x

    for m in model.modules():
        if isinstance(m, Bottleneck):
            m.register_forward_hook(check)
    with torch.no_grad():
        model(torch.randn(4, 12, 250))
    assert len(seen) == 5 and [len(b.shortcut) == 0 for b in seen] == [False, False, True, False, False]


def test_linear_probe_trains_only_the_head(encoder_ckpt):
    torch.manual_seed(0)
    model = make("eee_linear_probe", 12, 3, ckpt=encoder_ckpt).train()
    assert not model.encoder.training  # frozen encoder stays in eval mode (no dropout)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    x, y = torch.randn(8, 12, 250), torch.randint(0, 2, (8, 3)).float()
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    feats = model.forward_features(x).detach()
    head_before = model.head.weight.detach().clone()
    opt = torch.optim.AdamW(param_groups(model, lr=1e-2, weight_decay=0.1))
    nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.head.weight.grad is not None
    opt.step()
    for k, v in model.encoder.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    torch.testing.assert_close(model.forward_features(x), feats, rtol=0, atol=0)
    assert not torch.equal(model.head.weight, head_before)

    finetune = make("eee_finetune", 12, 3, ckpt=encoder_ckpt).train()
    nn.functional.binary_cross_entropy_with_logits(finetune(x), y).backward()
    assert all(p.grad is not None for p in finetune.encoder.parameters())
    # --encoder-lr-scale: the encoder's parameters in their own group at lr x scale, the head at lr
    groups = param_groups(finetune, lr=1e-3, weight_decay=0.0, encoder_lr_scale=0.1)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert all(lr_of[id(p)] == pytest.approx(1e-4) for p in finetune.encoder.parameters())
    assert {lr_of[id(p)] for p in finetune.head.parameters()} == {1e-3}


def test_eee_loads_pretrained_weights_and_normalization(encoder_ckpt):
    from eee_ray.models.ecg_encoder import load_pretrained

    saved = load_pretrained(encoder_ckpt).state_dict()
    model = make("eee_finetune", 1, 2, ckpt=encoder_ckpt)
    for k, v in model.encoder.state_dict().items():
        torch.testing.assert_close(v, saved[k], rtol=0, atol=0)
    control = build_model("eee_random", 1, 2, "tiny", pretrained=encoder_ckpt)
    assert control.encoder.state_dict().keys() == saved.keys()
    assert not all(torch.equal(v, saved[k]) for k, v in control.encoder.state_dict().items())
    # the checkpoint's normalisation is applied: raw x through the model == standardised x through the bare encoder
    model.eval()
    x = torch.randn(4, 1, 250)
    tokens = ((x - NORMALIZATION["mean"]) / NORMALIZATION["std"]).reshape(4, 5, 50)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), model.encoder(tokens, None)[0])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_model_spec_rebuilds_the_same_model(variant, encoder_ckpt):
    torch.manual_seed(0)
    model = make(variant, 12, 4, ckpt=encoder_ckpt).eval()
    spec = json.loads(json.dumps(model_spec(model)))  # a checkpoint stores it as plain JSON
    assert "pretrained" not in spec                    # rebuilding must not need the pretraining file
    rebuilt = build_model(**spec).eval()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 12, model.window)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    assert [n for n, p in rebuilt.named_parameters() if p.requires_grad] == \
        [n for n, p in model.named_parameters() if p.requires_grad]


# a lone linear layer takes (and needs) a larger step; S4 models train at 1e-2 (the S4 papers' default; dt and A
# stay at <= 1e-3 through param_groups)
LEARNING_RATES = {"eee_linear_probe": 3e-2, "s4": 1e-2}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_tiny_training_learns_the_synthetic_task(variant, encoder_ckpt):
    """Tall QRS / inverted T are learnable from one lead: 50 Adam steps must cut the held-out BCE well below chance."""
    torch.manual_seed(0)
    model = make(variant, 1, 2, ckpt=encoder_ckpt)
    x_train, y_train = synthetic_ecg(256, 1, seed=1)
    x_test, y_test = synthetic_ecg(128, 1, seed=2)
    x_test = crop(x_test, model.window, seed=3)

    def held_out_loss() -> float:
        model.eval()
        with torch.no_grad():
            return nn.functional.binary_cross_entropy_with_logits(model(x_test), y_test).item()

    initial = held_out_loss()
    lr = LEARNING_RATES.get(variant, 3e-3)
    opt = torch.optim.AdamW(param_groups(model, lr=lr, weight_decay=1e-4))
    g = torch.Generator().manual_seed(4)
    for step in range(50):
        idx = torch.randint(0, 256, (24,), generator=g)
        model.train()
        loss = nn.functional.binary_cross_entropy_with_logits(model(crop(x_train[idx], model.window, step)),
                                                              y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = held_out_loss()
    print(f"{variant}: held-out BCE {initial:.3f} -> {final:.3f}")
    assert final < 0.6 * math.log(2) and final < 0.8 * initial


def test_registry_errors(encoder_ckpt, tmp_path):
    assert list_models() == ["eee", "eee_random", "s4", "st_mem", "xresnet1d50"]
    with pytest.raises(UserError, match="unknown model 'resnet'.*eee, eee_random, s4, st_mem, xresnet1d50"):
        build_model("resnet", 12, 5)
    with pytest.raises(UserError, match="unknown preset 'huge'.*paper, tiny"):
        build_model("s4", 12, 5, preset="huge")
    with pytest.raises(UserError, match="unknown S4Config field"):
        build_model("s4", 12, 5, preset="tiny", d_modl=64)
    with pytest.raises(UserError, match="pretrained ECG encoder not found"):
        build_model("eee", 12, 5, pretrained=str(tmp_path / "missing.pt"))
    with pytest.raises(UserError, match="unknown EEE strategy 'probe'"):
        build_model("eee", 12, 5, "tiny", strategy="probe")
    assert build_model("s4", 12, 5, "tiny", d_model=16).feature_dim == 16  # kwargs override the preset


def test_eee_applies_pretraining_per_window_zscore(tmp_path):
    """The normalisation `eee-ray pretrain` writes is applied per window and lead, exactly as pairs does per clip."""
    import numpy as np

    from eee_ray.models.ecg_encoder import ECGEncoder, save_pretrained
    from eee_ray.models.eee_classifier import encoder_preset
    from eee_ray.pairs import NORMALIZATION as PRETRAIN_NORMALIZATION, normalize_ecg

    path = tmp_path / "ecg_encoder.pt"
    save_pretrained(ECGEncoder(**encoder_preset("tiny")), path, token_len=50, sample_rate=100,
                    normalization=dict(PRETRAIN_NORMALIZATION))
    model = build_model("eee", 2, 3, "tiny", pretrained=str(path), strategy="finetune").eval()
    x = torch.randn(3, 2, 250) * 40 + 7  # pixel-like scale and offset
    expected = np.stack([[normalize_ecg(lead) for lead in rec] for rec in x.numpy()])
    torch.testing.assert_close(model.standardize(x), torch.from_numpy(expected), rtol=1e-4, atol=1e-4)
    with pytest.raises(UserError, match="unsupported ECG normalization"):
        build_model("eee", 1, 2, "tiny", encoder_config=encoder_preset("tiny"), normalization={"method": "minmax"})
