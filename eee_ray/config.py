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
import types
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


MAX_CONFIG_BYTES = 1 << 20  # a config is a few KiB; a larger file is not a config (and would stall the parser)
MAX_CONFIG_NODES = 10_000  # values in one config, aliases counted each time they are used (YAML "billion laughs")
_SCALARS = (int, float, str, bool)


def _scalar(value: Any, typ: type, name: str) -> Any:
    """One scalar field: the value as ``typ``, or a ``UserError``; never a silent change of meaning (``3.7`` is not
    an int, ``true`` is not a number, a list is not a string)."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise UserError(f"config field {name!r}: expected true/false, got {_show(value)}")
    if typ is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"config field {name!r}: expected a string, got {_show(value)}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UserError(f"config field {name!r}: expected {typ.__name__}, got {_show(value)}")
    try:
        number = float(value) if typ is float else int(value) if not isinstance(value, float) else value
    except (TypeError, ValueError):
        raise UserError(f"config field {name!r}: expected {typ.__name__}, got {_show(value)}") from None
    if typ is int and isinstance(number, float):
        if not number.is_integer():
            raise UserError(f"config field {name!r}: expected int, got {_show(value)}")
        number = int(number)
    return number


def _show(value: Any) -> str:
    kind = "null" if value is None else type(value).__name__
    return f"{kind} {str(value)[:40]!r}" if value is not None else kind


def _coerce(value: Any, typ: Any, name: str) -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        return _coerce(value, arms[0], name) if len(arms) == 1 else value
    if dataclasses.is_dataclass(typ):
        if isinstance(value, typ):
            return value
        if not isinstance(value, Mapping):
            raise UserError(f"config field {name!r}: expected a mapping of {typ.__name__} fields, got {_show(value)}")
        return from_dict(typ, value, f"{name}.")
    if origin in (list, tuple) or typ in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config field {name!r}: expected a list, got {_show(value)}")
        if origin is tuple and len(args) > 0 and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise UserError(f"config field {name!r}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, name) for v, a in zip(value, args))
        inner = args[0] if args else Any
        out = [_coerce(v, inner, name) for v in value]
        return tuple(out) if (origin or typ) is tuple else out
    if origin is dict or typ is dict:
        if not isinstance(value, Mapping):
            raise UserError(f"config field {name!r}: expected a mapping, got {_show(value)}")
        return dict(value)
    if typ in _SCALARS:
        if value is None:
            raise UserError(f"config field {name!r}: expected {typ.__name__}, got null")
        return _scalar(value, typ, name)
    return value


def from_dict(cls: type[C], data: Mapping[str, Any], prefix: str = "") -> C:
    """Build ``cls`` from a mapping, refusing unknown keys so a typo in a YAML file is an error, not a silent default."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    odd = [repr(k) for k in data if not isinstance(k, str)]
    if odd:
        raise UserError(f"{cls.__name__} field names must be strings, not {', '.join(odd[:3])}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(f"unknown {cls.__name__} field(s): {', '.join(prefix + k for k in unknown)}; "
                        f"known: {', '.join(sorted(fields))}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def _count_nodes(data: Any, limit: int) -> int:
    """Values in ``data`` with shared (aliased) parts counted at every use; stops counting past ``limit``."""
    count, stack = 0, [data]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set)):
            stack.extend(item)
    return count


def _refuse_duplicate_keys(root: yaml.Node | None, path: Path) -> None:
    """A key given twice in one mapping is a copy-paste slip that YAML would settle silently (the last one wins)."""
    seen: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen:  # an alias: its node is checked once
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
            twice = sorted({k for k in keys if keys.count(k) > 1})
            if twice:
                raise UserError(f"config file {path} gives duplicate key {twice[0]} (line {node.start_mark.line + 1}"
                                " onwards); each field may appear once")
            stack.extend(n for pair in node.value for n in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def load_yaml(path: str | Path | None) -> dict[str, Any]:
    """The mapping of a YAML config file, read with ``yaml.safe_load``; every way a file can be wrong (too big, not
    text, not YAML, a Python tag, an alias bomb, not a mapping) is one ``UserError``."""
    if path is None:
        return {}
    from eee_ray import storage

    if storage.is_uri(path):
        if not storage.is_file(path):
            raise UserError(f"config file not found: {path}")
        with storage.local_copy(path) as local:
            return load_yaml(local)
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p}")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(f"config file {p} is {p.stat().st_size} bytes, more than a config can be "
                        f"({MAX_CONFIG_BYTES} bytes)")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"config file {p} is not readable UTF-8 text: {e}") from None
    try:
        _refuse_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), p)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        first = " ".join(str(getattr(e, "problem", None) or e).split())[:160] + where
        raise UserError(f"config file {p} is not valid YAML for a config (plain values only, no tags): {first}"
                        ) from None
    except RecursionError:
        raise UserError(f"config file {p} nests too deeply to be a config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a mapping of field: value, not a {type(data).__name__}")
    if _count_nodes(data, MAX_CONFIG_NODES) > MAX_CONFIG_NODES:
        raise UserError(f"config file {p} expands to more than {MAX_CONFIG_NODES} values (aliases counted at each "
                        "use); a config is a few dozen")
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


def save(cfg: Any, path: str | Path) -> str | Path:
    """Write the resolved config as YAML, atomically (a local path or an object-storage URI)."""
    from eee_ray import storage

    p = path if storage.is_uri(path) else Path(path)
    atomic_write_text(p, yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return p
