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


def test_default_echo_tower_sees_the_motion_and_standardises_its_features_over_the_batch():
    """The default echo tower sees what changes within a sub-clip (pixel_norm "motion"), reads its time
    slots in order (vit_pool "slots") and standardises the sub-clip features over the batch (vit_norm "batch"); a
    model config saved before these options existed rebuilds the earlier tower (same weights, so old files load)."""
    from eee_ray.models.echo_encoder import normalize_pixels
    from eee_ray.models.eee import ModelConfig

    torch.manual_seed(3)
    clips = torch.randint(0, 200, (5, 8, 32, 32), dtype=torch.uint8)
    motion = normalize_pixels(clips, "motion")
    assert torch.allclose(motion.mean(dim=1), torch.zeros(5, 32, 32), atol=1e-5)        # no static content left
    anatomy = torch.randint(0, 50, (1, 1, 32, 32), dtype=torch.uint8)                     # the same on every frame
    assert torch.allclose(normalize_pixels(clips + anatomy, "motion"), motion, atol=1e-4)
    still = normalize_pixels(anatomy.expand(1, 8, 32, 32), "motion")
    assert torch.isfinite(still).all() and still.abs().max() < 1e-3

    model = EEEModel(preset("tiny", image_size=32, max_tokens=4, pixel_norm="motion", vit_pool="slots",
                            vit_norm="batch")).eval()
    feats = []
    model.echo.temporal.register_forward_pre_hook(lambda mod, args: feats.append(args[0]))
    pad = torch.tensor([[False, False, True], [False] * 3, [False, True, True]])
    out = model(torch.randn(3, 3, 50), torch.randint(0, 255, (3, 3, 8, 32, 32), dtype=torch.uint8), pad)
    valid = feats[0][~pad]                                   # the 6 sub-clips' features as the temporal stage gets them
    assert torch.allclose(valid.mean(0), torch.zeros(valid.shape[1]), atol=1e-4)
    assert torch.allclose(valid.std(0, unbiased=False), torch.ones(valid.shape[1]), atol=1e-2)
    assert torch.isfinite(out["echo_cls"]).all()
    one = model(torch.randn(1, 1, 50), torch.randint(0, 255, (1, 1, 8, 32, 32), dtype=torch.uint8),
                torch.tensor([[False]]))                     # a single sub-clip: nothing to standardise over
    assert torch.isfinite(one["echo_cls"]).all()
    old = set(EEEModel(ModelConfig(image_size=32, max_tokens=4)).state_dict())
    assert not any("slot_proj" in k or "feature_norm" in k for k in old)
    assert old == set(EEEModel(preset("tiny", image_size=32, max_tokens=4, pixel_norm="clip", cls_position=True,
                                      vit_pool="cls", vit_norm="none")).state_dict())
