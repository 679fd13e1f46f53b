"""The encoders: shapes, the padding mask really hides padding, presets build, the hand-over file loads safely."""

from __future__ import annotations

import torch

from eee_ray.models.ecg_encoder import ECGEncoder, load_pretrained, save_pretrained
from eee_ray.models.eee import EEEModel, preset


def test_ecg_encoder_padding_is_invisible():
    torch.manual_seed(0)
    enc = ECGEncoder(d_in=50, d_embed=32, n_layers=2, n_heads=4, d_ff=64, dropout=0.0, max_tokens=8).eval()
    x = torch.randn(2, 5, 50)
    pad = torch.tensor([[False, False, False, True, True], [False] * 5])
    cls, tok = enc(x, pad)
    assert cls.shape == (2, 32) and tok.shape == (2, 5, 32)
    # whatever sits in the padded slots, the [CLS] and the valid tokens of sample 0 do not move
    x2 = x.clone()
    x2[0, 3:] = 1000.0
    cls2, tok2 = enc(x2, pad)
    assert torch.allclose(cls[0], cls2[0], atol=1e-5) and torch.allclose(tok[0, :3], tok2[0, :3], atol=1e-5)
    # and equals running the 3 valid tokens alone
    cls3, _ = enc(x[:1, :3], None)
    assert torch.allclose(cls[0], cls3[0], atol=1e-5)
    # a downstream window: 250 samples = 5 tokens of 50
    cls_w, _ = enc(torch.randn(4, 250).view(4, 5, 50))
    assert cls_w.shape == (4, enc.d_embed)


def test_eee_model_outputs_and_echo_padding():
    torch.manual_seed(1)
    cfg = preset("tiny", image_size=32, max_tokens=4, dropout=0.0)
    model = EEEModel(cfg).eval()
    ecg = torch.randn(3, 4, 50)
    echo = torch.randint(0, 255, (3, 4, 8, 32, 32), dtype=torch.uint8)
    pad = torch.tensor([[False, False, True, True], [False] * 4, [False, True, True, True]])
    out = model(ecg, echo, pad)
    assert out["ecg_cls"].shape == (3, cfg.d_embed) and out["echo_tok"].shape == (3, 4, cfg.d_embed)
    assert out["align_logit"].shape == (3,)
    echo2 = echo.clone()
    echo2[0, 2:] = 0
    assert torch.allclose(model(ecg, echo2, pad)["echo_cls"][0], out["echo_cls"][0], atol=1e-5)


def test_presets_build():
    paper = EEEModel(preset("paper"))
    tiny = EEEModel(preset("tiny"))
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(paper) > 20 * n(tiny)
    assert 256 <= paper.cfg.d_embed <= 768 and 4 <= paper.cfg.n_layers <= 12


def test_save_and_load_pretrained_weights_only(tmp_path):
    torch.manual_seed(2)
    enc = ECGEncoder(d_embed=16, n_layers=1, n_heads=2, d_ff=32, dropout=0.0, max_tokens=6).eval()
    path = save_pretrained(enc, tmp_path / "ecg_encoder.pt", token_len=50, sample_rate=100,
                           normalization={"method": "per_clip_zscore"})
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["config"]["d_embed"] == 16 and ckpt["token_len"] == 50 and ckpt["sample_rate"] == 100
    loaded = load_pretrained(path).eval()
    x = torch.randn(2, 6, 50)
    assert torch.allclose(enc(x)[0], loaded(x)[0])
