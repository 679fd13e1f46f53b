"""The CLI contract (one clear error line, non-zero exit) and the config machinery (defaults < YAML < CLI)."""

import dataclasses
import subprocess
import sys

import pytest

from eee_ray import config
from eee_ray.errors import UserError


@dataclasses.dataclass
class _Inner:
    depth: int = 2


@dataclasses.dataclass
class _Cfg:
    lr: float = 1e-3
    name: str = "x"
    flag: bool = False
    leads: list[str] = dataclasses.field(default_factory=lambda: ["II"])
    inner: _Inner = dataclasses.field(default_factory=_Inner)


def test_resolve_order_defaults_yaml_overrides(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("lr: 0.5\nname: from_yaml\ninner: {depth: 7}\nflag: 'yes'\n")
    cfg = config.resolve(_Cfg, y, {"name": "from_cli", "lr": None})
    assert cfg.lr == 0.5 and cfg.name == "from_cli" and cfg.inner.depth == 7 and cfg.flag is True
    saved = config.save(cfg, tmp_path / "out" / "config.yaml")
    assert config.from_dict(_Cfg, config.load_yaml(saved)) == cfg


def test_unknown_and_bad_fields_are_user_errors(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("lrr: 1\n")
    with pytest.raises(UserError, match="unknown _Cfg field"):
        config.resolve(_Cfg, y)
    with pytest.raises(UserError, match="expected float"):
        config.resolve(_Cfg, None, {"lr": "fast"})
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        config.resolve(_Cfg, tmp_path / "bad.yaml")
    with pytest.raises(UserError, match="not found"):
        config.resolve(_Cfg, tmp_path / "missing.yaml")


def test_yaml_is_read_safely(tmp_path):
    y = tmp_path / "evil.yaml"
    y.write_text("lr: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(UserError):
        config.resolve(_Cfg, y)


def test_cli_help_lists_every_stage():
    out = subprocess.run([sys.executable, "-m", "eee_ray.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for name in ["synth", "ingest", "pretrain", "benchmark", "analyze", "embed", "predict", "demo"]:
        assert name in out.stdout


@pytest.mark.parametrize("name", ["synth", "ingest", "pretrain", "benchmark", "analyze", "embed", "predict", "demo"])
def test_every_stage_documents_its_options(name, capsys):
    from eee_ray.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser([name]).parse_args([name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: eee-ray {name}") and "(default: None)" not in out


def test_missing_input_is_one_clear_line(tmp_path, capsys):
    from eee_ray.cli import main

    rc = main(["ingest", "--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("eee-ray ingest: error:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


STAGE_CONFIGS = {"synth": "eee_ray.synth:SynthConfig", "ingest": "eee_ray.ingest:IngestConfig",
                 "pretrain": "eee_ray.pretrain:PretrainConfig", "benchmark": "eee_ray.downstream:BenchmarkConfig",
                 "analyze": "eee_ray.analyze:AnalyzeConfig", "embed": "eee_ray.inference:InferenceConfig",
                 "predict": "eee_ray.inference:InferenceConfig", "demo": "eee_ray.demo:DemoConfig"}


def _stage_parser(name: str):
    from eee_ray.cli import build_parser

    parser = build_parser([name])
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[name]


def _has_field(cls, path: str) -> bool:
    import dataclasses
    import typing

    for part in path.split("."):
        fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        if part not in fields:
            return False
        cls = typing.get_type_hints(cls)[part]
    return True


@pytest.mark.parametrize("name", sorted(STAGE_CONFIGS))
def test_every_option_lands_in_a_config_field(name):
    """One wiring for every stage: each option's dest is the dotted path of its config field (or, for the command's
    own options, starts with '_'), and every stage takes --output and --config; the tracked stages --mlflow-dir and
    --experiment."""
    import importlib

    module, cls_name = STAGE_CONFIGS[name].split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    p = _stage_parser(name)
    options = {s for a in p._actions for s in a.option_strings}
    assert {"--output", "--config"} <= options
    if name not in ("synth", "demo"):
        assert {"--mlflow-dir", "--experiment"} <= options
    for action in p._actions:
        if action.dest in ("help", "config") or action.dest.startswith("_"):
            continue
        assert _has_field(cls, action.dest), f"{name} {action.option_strings}: {action.dest} is not a {cls_name} field"


def test_options_not_given_leave_the_yaml_values(tmp_path):
    """defaults < --config YAML < options given; nested fields through dotted dests (--image-size)."""
    from eee_ray.config import resolve_cli
    from eee_ray.pretrain import PretrainConfig

    (tmp_path / "c.yaml").write_text("epochs: 7\nlr: 0.01\npairs: {image_size: 48, frames_per_token: 4}\n")
    p = _stage_parser("pretrain")
    args = p.parse_args(["--clips", str(tmp_path), "--output", str(tmp_path / "o"), "--config",
                         str(tmp_path / "c.yaml"), "--lr", "0.002", "--image-size", "32", "--mlflow-dir", "m"])
    cfg = resolve_cli(PretrainConfig, args)
    assert (cfg.epochs, cfg.lr, cfg.pairs.image_size, cfg.pairs.frames_per_token) == (7, 0.002, 32, 4)
    assert cfg.mlflow.dir == "m" and cfg.batch_size == PretrainConfig().batch_size


def test_deprecated_spellings_warn_and_still_work(tmp_path, capsys):
    from eee_ray.cli import main

    assert main(["synth", "--out", str(tmp_path / "s"), "--patients", "0"]) == 2  # parsed as --output, then validated
    err = capsys.readouterr().err
    assert "--out is deprecated" in err and "use --output" in err and "patients must be >= 1" in err
