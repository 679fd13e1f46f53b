"""Named pretraining recipes (``eee-ray pretrain --recipe NAME``): sets of ``PretrainConfig`` fields.

A recipe is the starting point of a run's configuration: defaults < recipe < ``--config`` YAML < CLI flags. The
``PretrainConfig`` defaults are the ``default`` recipe; the others list what they change against it. The recipe's
name is stored with the run, and ``--resume`` refuses a different one.

- ``default``: learns cross-modal retrieval out of the box. Against the paper: plain InfoNCE (every other clip of
  the global batch a negative) for the contrastive terms throughout, instead of the dual-margin loss; 8 clips per
  worker and step instead of 16; an echo tower that reads the beat timing: each pixel minus its mean over the
  sub-clip, the ViT read per time slot instead of its [CLS], its features standardised over the batch. The paper's
  dual-margin mask keeps only the negatives that already score below the positive, so a negative ranked above its
  positive teaches nothing and a collapsed embedding (all similarities tied) is a zero-loss optimum: it refines an
  embedding in which the positives already rank first, it cannot build one. With the ViT [CLS] the echo embedding
  learns only the clip length (which both towers see through the padding mask) (docs/pretraining.md).
- ``paper``: the paper's objective from step 1 (dual-margin loss, no warm-up), 16 clips per worker, the ViT [CLS]
  per sub-clip, each sub-clip standardised.
- ``cls-tower``: ``default`` with the paper's echo readout (the ViT [CLS] per sub-clip, each sub-clip
  standardised, no batch standardisation): the comparison that shows what the echo tower of ``default`` adds.
- ``locked-study``: puts wall thickness into the ECG embedding (the synthetic world of tests/probe.py). Against the
  paper: the echo tower locked at its seeded init and its features standardised per dimension; [CLS] positives from
  another clip of the same study; [CLS] terms only (no token or alignment term, so no shifted samples); plain
  InfoNCE; 64 clips per step, 64 px sub-clips, 40 epochs. It keeps the earlier input scaling and [CLS] positions
  (``pixel_norm: fixed``, ``cls_position: true``), with which its effect was measured; the standardisation of the
  locked tower's features makes the scaling matter little there.

``default``, ``paper`` and ``cls-tower`` give the [CLS] no position row (``cls_position: false``); the paper does
not specify it.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from typing import Any, Mapping

from eee_ray.errors import UserError

DEFAULT = "default"

RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "paper": {"batch_size": 16, "pixel_norm": "clip", "vit_pool": "cls", "vit_norm": "none",
              "loss": {"objective": "dual_margin", "warmup_epochs": 0}},
    "cls-tower": {"pixel_norm": "clip", "vit_pool": "cls", "vit_norm": "none"},
    "echo-motion": {},   # deprecated: the default's echo tower under its earlier recipe name
    "locked-study": {"epochs": 40, "batch_size": 64, "pairs": {"image_size": 64}, "echo_tower": "locked",
                     "cls_positive": "study", "echo_features": "standardized", "p_shift": 0.0, "pixel_norm": "fixed",
                     "cls_position": True, "vit_pool": "cls", "vit_norm": "none",
                     "loss": {"w_token": 0.0, "w_align": 0.0, "objective": "info_nce", "warmup_epochs": 0}},
}


DEPRECATED = {"echo-motion": "default"}


def check(name: str) -> None:
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``over``; nested mappings (``loss``, ``pairs``) merge field by field."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def recipe_fields(name: str) -> dict[str, Any]:
    """The ``PretrainConfig`` fields (nested dicts for ``loss`` and ``pairs``) that recipe ``name`` sets."""
    check(name)
    if name in DEPRECATED:
        print(f"eee-ray: warning: recipe {name} is deprecated and will be removed; it is now {DEPRECATED[name]}",
              file=sys.stderr)
    return {**copy.deepcopy(RECIPES[name]), "recipe": name}


def pretrain_config(recipe: str = DEFAULT, **fields: Any):
    """A ``PretrainConfig`` from recipe ``recipe`` with ``fields`` on top. A dict for ``loss`` or ``pairs`` changes
    only the fields it names; a ``LossConfig`` / ``PairsConfig`` instance replaces the recipe's whole section."""
    from eee_ray.config import from_dict
    from eee_ray.pretrain import PretrainConfig

    given = {k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v) for k, v in fields.items()}
    data = recipe_fields(recipe)
    for k, v in given.items():
        data[k] = merge(data[k], v) if isinstance(v, Mapping) and not dataclasses.is_dataclass(fields[k]) \
            and isinstance(data.get(k), Mapping) else v
    data["recipe"] = recipe
    return from_dict(PretrainConfig, data)   # validated by run_pretrain


def resolve_pretrain(yaml_data: Mapping[str, Any], overrides: Mapping[str, Any]):
    """A ``PretrainConfig``: dataclass defaults < recipe (``overrides["recipe"]``, else the YAML's ``recipe``, else
    ``default``) < YAML fields < ``overrides`` (keys may be dotted paths such as ``pairs.image_size``; None values
    are ignored), then ``validate()``."""
    from eee_ray.config import _set_path, from_dict
    from eee_ray.pretrain import PretrainConfig

    name = overrides.get("recipe") or yaml_data.get("recipe") or DEFAULT
    check(name)
    data = merge(recipe_fields(name), yaml_data)
    for k, v in overrides.items():
        if v is not None:
            _set_path(data, k, v)
    data["recipe"] = name
    cfg = from_dict(PretrainConfig, data)
    cfg.validate()
    return cfg


def resolve_cli_recipe(args: Any):
    """``eee-ray pretrain``'s configuration from its parsed command line (options' ``dest`` = dotted field paths)."""
    from eee_ray.config import CLI_ONLY, load_yaml

    given = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in CLI_ONLY}
    return resolve_pretrain(load_yaml(getattr(args, "config", None)), given)
