"""Typed configuration machinery shared by every stage.

Each stage keeps its own dataclass next to its code (defaults from SPEC.md); this module resolves it from defaults,
an optional YAML file (``--config FILE``, read with ``yaml.safe_load``) and CLI overrides, in that order, and saves the
resolved result beside the stage's output so every output says how it was made.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from eee_ray.errors import UserError
from eee_ray.io import atomic_write_text

C = TypeVar("C")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested dataclass -> plain dict (JSON/YAML/MLflow friendly)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def flat_params(cfg: Any) -> dict[str, Any]:
    """A (nested) config as MLflow params: ``{"trace.max_gap_px": 12, ...}``."""
    def flat(d: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, Mapping) else {f"{prefix}{k}": v})
        return out

    return flat(to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg, "")


def _coerce(value: Any, typ: Any, name: str) -> Any:
    origin = typing.get_origin(typ)
    if dataclasses.is_dataclass(typ) and isinstance(value, Mapping):
        return from_dict(typ, value)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        args = typing.get_args(typ)
        inner = args[0] if args else Any
        out = [_coerce(v, inner, name) for v in value]
        return tuple(out) if origin is tuple else out
    if typ in (int, float, str, bool) and value is not None:
        if typ is bool and isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise UserError(f"config field {name!r}: expected true/false, got {value!r}")
        try:
            return typ(value)
        except (TypeError, ValueError):
            raise UserError(f"config field {name!r}: expected {typ.__name__}, got {value!r}") from None
    return value


def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """Build ``cls`` from a mapping, refusing unknown keys so a typo in a YAML file is an error, not a silent default."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    kwargs = {k: _coerce(v, hints[k], k) for k, v in data.items()}
    return cls(**kwargs)


def load_yaml(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"config file {p} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a mapping of field: value")
    return data


def resolve(cls: type[C], yaml_path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
            section: str | None = None) -> C:
    """Defaults < YAML file (optionally one ``section`` of it) < explicit overrides (None values are ignored)."""
    data = load_yaml(yaml_path)
    if section is not None and section in data and isinstance(data[section], dict):
        data = data[section]
    merged = dict(data)
    for k, v in (overrides or {}).items():
        if v is not None:
            merged[k] = v
    return from_dict(cls, merged)


def save(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML, atomically."""
    p = Path(path)
    atomic_write_text(p, yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return p
