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
