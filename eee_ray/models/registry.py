"""One registry for the downstream models of the benchmark (timm-style).

``build_model(name, n_leads, n_classes, preset, **kwargs)`` builds any of them; ``model_spec(model)`` returns the
arguments that rebuild the same architecture (a checkpoint stores it next to the state_dict, so loading needs neither
the code path that trained it nor, for EEE, the pretraining file). kwargs override fields of the preset's config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from torch import nn

from eee_ray.config import from_dict
from eee_ray.errors import UserError
from eee_ray.models import s4, st_mem, xresnet1d
from eee_ray.models.base import DownstreamModel

Builder = Callable[..., DownstreamModel]
_REGISTRY: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: ``builder(n_leads, n_classes, preset, **kwargs) -> DownstreamModel`` becomes ``build_model(name)``."""

    def wrap(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = builder
        return builder

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, n_leads: int, n_classes: int, preset: str = "paper", **kwargs: Any) -> DownstreamModel:
    """Build a registered model; the returned module remembers its spec for ``model_spec``."""
    if name not in _REGISTRY:
        raise UserError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    if n_leads < 1 or n_classes < 1:
        raise UserError(f"model {name!r} needs n_leads >= 1 and n_classes >= 1, got {n_leads} and {n_classes}")
    model = _REGISTRY[name](n_leads, n_classes, preset, **kwargs)
    model.spec = {"name": name, "n_leads": n_leads, "n_classes": n_classes, "preset": preset,
                  **getattr(model, "spec_kwargs", kwargs)}
    return model


def model_spec(model: nn.Module) -> dict[str, Any]:
    """``{"name", "n_leads", "n_classes", "preset", **kwargs}``, JSON-friendly: ``build_model(**model_spec(m))``
    rebuilds the architecture of ``m`` (its weights come from its state_dict)."""
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ValueError(f"{type(model).__name__} was not built by build_model, it has no spec")
    return dict(spec)


def param_groups(model: nn.Module, lr: float, weight_decay: float, ssm_lr: float = 1e-3,
                 encoder_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """Optimizer groups over trainable parameters only; S4D's dt and A train with lr <= ``ssm_lr`` and no weight
    decay, as in the S4 papers (a large step on them makes the SSM unstable). With ``encoder_lr_scale`` != 1 the
    parameters under ``model.encoder`` (EEE fine-tuned) train at lr x that scale."""
    ssm, enc, rest = [], [], []
    for pname, p in model.named_parameters():
        if p.requires_grad:
            if pname.rsplit(".", 1)[-1] in s4.SSM_PARAM_NAMES:
                ssm.append(p)
            elif encoder_lr_scale != 1.0 and pname.startswith("encoder."):
                enc.append(p)
            else:
                rest.append(p)
    groups = [{"params": rest, "lr": lr, "weight_decay": weight_decay}]
    if enc:
        groups.append({"params": enc, "lr": lr * encoder_lr_scale, "weight_decay": weight_decay})
    if ssm:
        groups.append({"params": ssm, "lr": min(lr, ssm_lr), "weight_decay": 0.0})
    return groups


def _config(presets: dict[str, Any], preset: str, model: str, overrides: dict[str, Any]) -> Any:
    if preset not in presets:
        raise UserError(f"unknown preset {preset!r} for model {model!r}; known: {', '.join(sorted(presets))}")
    return from_dict(type(presets[preset]), {**dataclasses.asdict(presets[preset]), **overrides})


@register_model("xresnet1d50")
def _xresnet1d50(n_leads: int, n_classes: int, preset: str, **kwargs: Any) -> DownstreamModel:
    return xresnet1d.XResNet1D(n_leads, n_classes, _config(xresnet1d.PRESETS, preset, "xresnet1d50", kwargs))


@register_model("s4")
def _s4(n_leads: int, n_classes: int, preset: str, **kwargs: Any) -> DownstreamModel:
    return s4.S4Model(n_leads, n_classes, _config(s4.PRESETS, preset, "s4", kwargs))


@register_model("st_mem")
def _st_mem(n_leads: int, n_classes: int, preset: str, **kwargs: Any) -> DownstreamModel:
    return st_mem.STMEM(n_leads, n_classes, _config(st_mem.PRESETS, preset, "st_mem", kwargs))


def _read_pretrained(path: str) -> dict[str, Any]:
    """The pretraining checkpoint's metadata (config, normalisation), checked against what EEE tokens assume."""
    if not Path(path).is_file():
        raise UserError(f"pretrained ECG encoder not found: {path}")
    from eee_ray.safe_load import load_weights

    ckpt = load_weights(path, f"pretrained encoder {path}")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict) or "state_dict" not in ckpt:
        raise UserError(f"{path} is not an ecg_encoder.pt from `eee-ray pretrain` (needs state_dict and config)")
    if ckpt.get("token_len") != 50 or ckpt.get("sample_rate") != 100:
        raise UserError(f"{path}: expected 50-sample tokens at 100 Hz, got token_len={ckpt.get('token_len')} "
                        f"sample_rate={ckpt.get('sample_rate')}")
    return ckpt


def _build_eee(n_leads: int, n_classes: int, preset: str, pretrained: str | None, load_weights: bool,
               encoder_config: dict[str, Any] | None, normalization: dict[str, Any] | None,
               strategy: str) -> DownstreamModel:
    from eee_ray.models import eee_classifier as eee
    from eee_ray.models.ecg_encoder import ECGEncoder, load_pretrained

    if strategy not in eee.STRATEGIES:
        raise UserError(f"unknown EEE strategy {strategy!r}; known: {', '.join(eee.STRATEGIES)}")
    if pretrained is not None:
        ckpt = _read_pretrained(pretrained)
        encoder_config, normalization = dict(ckpt["config"]), ckpt.get("normalization")
        encoder = load_pretrained(pretrained) if load_weights else ECGEncoder(**encoder_config)
    else:
        encoder_config = encoder_config or eee.encoder_preset(preset)
        encoder = ECGEncoder(**encoder_config)
    model = eee.EEEClassifier(n_leads, n_classes, encoder, normalization, eee.EEEClassifierConfig(strategy=strategy))
    model.spec_kwargs = {"strategy": strategy, "encoder_config": encoder_config, "normalization": normalization}
    return model


@register_model("eee")
def _eee(n_leads: int, n_classes: int, preset: str, pretrained: str | None = None, strategy: str = "finetune",
         encoder_config: dict[str, Any] | None = None, normalization: dict[str, Any] | None = None) -> DownstreamModel:
    """The echo-pretrained encoder (``pretrained``: path to ecg_encoder.pt) + linear head."""
    return _build_eee(n_leads, n_classes, preset, pretrained, True, encoder_config, normalization, strategy)


@register_model("eee_random")
def _eee_random(n_leads: int, n_classes: int, preset: str, pretrained: str | None = None,
                strategy: str = "finetune", encoder_config: dict[str, Any] | None = None,
                normalization: dict[str, Any] | None = None) -> DownstreamModel:
    """Control: the same architecture (and normalisation, when ``pretrained`` is given) without the pretrained weights."""
    return _build_eee(n_leads, n_classes, preset, pretrained, False, encoder_config, normalization, strategy)
