"""Typed configuration machinery shared by every stage.

Each stage keeps its own dataclass next to its code (defaults from docs/contract.md); this module resolves it from
defaults, an optional YAML file (``--config FILE``, read with ``yaml.safe_load``) and CLI options, in that order,
validates it (the dataclass's ``validate()`` method, the one place a stage checks its settings), and saves the
resolved result beside the stage's output so every output says how it was made.

CLI wiring is the same in every stage: a command's options have the config field's dotted path as their ``dest``
(``--image-size`` -> ``pairs.image_size``) and no argparse default, so an option that was not given is absent and
the YAML or dataclass value stands (``resolve_cli``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from dataclasses import dataclass
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


@dataclass
class MlflowConfig:
    """Where a stage records its runs: one store shared by every stage of a work directory.

    ``MLFLOW_TRACKING_URI`` wins when set (a cluster's ``mlflow server``); else the sqlite store ``<dir>/mlflow.db``
    with artifacts in ``<dir>/mlartifacts``. Stages whose outputs sit side by side in one folder share that folder's
    store, so ``ingest``, ``pretrain``, ``benchmark`` and ``analyze`` run one by one show up together in the UI.
    """

    dir: str = ""         # empty: the parent folder of the stage's output
    experiment: str = ""  # empty: the stage's own experiment (eee-ingest, eee-pretrain, eee-benchmark)


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for p in parents:
        child = data.get(p)
        data[p] = child = dict(child) if isinstance(child, Mapping) else {}
        data = child
    data[leaf] = value


def resolve(cls: type[C], yaml_path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
            section: str | None = None) -> C:
    """Defaults < YAML file (optionally one ``section`` of it) < explicit overrides, then ``validate()``.

    Override keys may be dotted paths into nested configs (``pairs.image_size``); None values are ignored."""
    data = load_yaml(yaml_path)
    if section is not None and section in data and isinstance(data[section], dict):
        data = data[section]
    merged = dict(data)
    for k, v in (overrides or {}).items():
        if v is not None:
            _set_path(merged, k, v)
    cfg = from_dict(cls, merged)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


CLI_ONLY = frozenset({"command", "verbose", "config"})  # parser-level options that are not config fields


def resolve_cli(cls: type[C], args: Any, **fixed: Any) -> C:
    """The stage config from a parsed command line: defaults < ``--config`` YAML < the options given < ``fixed``.

    Every option of a stage's parser has its config field's dotted path as ``dest``; options that start with ``_``
    are the command's own (not config)."""
    given = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in CLI_ONLY}
    return resolve(cls, getattr(args, "config", None), {**given, **fixed})


class DeprecatedAlias(argparse.Action):
    """An old option name kept for one release: it still works, and says once which name replaces it."""

    def __init__(self, option_strings, dest, replacement: str = "", const=None, nargs=None, **kwargs):
        self.replacement = replacement
        super().__init__(option_strings, dest, nargs=0 if const is not None else nargs, const=const, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"eee-ray: warning: {option_string} is deprecated and will be removed; use {self.replacement}",
              file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.const is not None else values)


def add_common_arguments(parser: argparse.ArgumentParser, config_cls: type, experiment: str) -> None:
    """The options every stage shares: ``--config``, ``--mlflow-dir`` and ``--experiment``."""
    parser.add_argument("--config", metavar="FILE", help=f"YAML file with {config_cls.__name__} fields (options "
                                                         "given on the command line win)")
    parser.add_argument("--mlflow-dir", dest="mlflow.dir", metavar="DIR",
                        help="folder of the local MLflow store (mlflow.db); default: the parent of the output folder "
                             "(analyze: the benchmark's store); "
                             "ignored when MLFLOW_TRACKING_URI is set")
    parser.add_argument("--experiment", dest="mlflow.experiment", metavar="NAME",
                        help=f"MLflow experiment (default {experiment})")


def save(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML, atomically."""
    p = Path(path)
    atomic_write_text(p, yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return p
