"""Named pretraining recipes (eee_ray/recipes.py): what each sets, the order in which a run's configuration is
resolved (defaults < recipe < YAML < CLI), and that a resumed run keeps its recipe. No Ray: all of it happens before
training starts."""

from __future__ import annotations

import pytest
import yaml

from eee_ray.cli import main
from eee_ray.config import save
from eee_ray.errors import UserError
from eee_ray.losses import LossConfig
from eee_ray.pretrain import PretrainConfig, run_pretrain
from eee_ray.recipes import RECIPES, pretrain_config, resolve_pretrain


def test_defaults_are_the_default_recipe_and_paper_is_the_papers_objective():
    assert PretrainConfig() == pretrain_config("default")
    default, paper = pretrain_config("default"), pretrain_config("paper")
    # the paper: dual-margin loss from the first step, 16 clips per worker, the paper's temperature and margins
    assert paper.loss == LossConfig(objective="dual_margin", warmup_epochs=0)
    assert paper.batch_size == 16 and paper.recipe == "paper"
    assert default.loss.objective == "info_nce" and default.batch_size == 8
    # no position row for the [CLS]; the default's echo tower reads the motion (pixels minus their mean over the
    # sub-clip, the ViT read per time slot, standardised over the batch), the paper's reads the ViT [CLS]
    assert (default.pixel_norm, default.cls_position, default.vit_pool, default.vit_norm) == \
        ("motion", False, "slots", "batch")
    assert (paper.pixel_norm, paper.cls_position, paper.vit_pool, paper.vit_norm) == ("clip", False, "cls", "none")
    tower = ("pixel_norm", "vit_pool", "vit_norm")
    same = {k for k in vars(default) if k not in ("recipe", "loss", "batch_size", *tower)}
    assert all(getattr(default, k) == getattr(paper, k) for k in same)
    # cls-tower: the default with the paper's echo readout, and nothing else
    cls_tower = pretrain_config("cls-tower")
    assert tuple(getattr(cls_tower, k) for k in tower) == tuple(getattr(paper, k) for k in tower)
    assert all(getattr(default, k) == getattr(cls_tower, k) for k in vars(default) if k not in ("recipe", *tower))


def test_echo_motion_is_a_deprecated_name_of_the_default(capsys):
    cfg = pretrain_config("echo-motion")
    assert "recipe echo-motion is deprecated" in capsys.readouterr().err
    assert all(getattr(cfg, k) == getattr(PretrainConfig(), k) for k in vars(cfg) if k != "recipe")


def test_locked_study_recipe_is_the_structure_recipe():
    cfg = pretrain_config("locked-study", epochs=5)
    assert (cfg.echo_tower, cfg.cls_positive, cfg.p_shift) == ("locked", "study", 0.0)
    assert cfg.echo_features == "standardized"
    assert cfg.loss.w_token == 0.0 and cfg.loss.w_align == 0.0 and cfg.loss.objective == "info_nce"
    assert cfg.batch_size == 64 and cfg.pairs.image_size == 64 and cfg.epochs == 5   # explicit fields win
    # a dict changes the fields it names; a LossConfig replaces the section
    assert pretrain_config("locked-study", loss={"tau": 0.1}).loss.w_token == 0.0
    assert pretrain_config("locked-study", loss=LossConfig(tau=0.1)).loss.w_token == 1.0


def test_the_control_pretrains_with_the_locked_study_recipe():
    """The positive control's pretraining is the named recipe, whose echo tower reads the still picture; with the
    default's motion input the locked tower's features show wall thickness at R^2 0.09 instead of 0.87
    (benchmarks/echo_view_structure.py), and the control has nothing to transfer."""
    from eee_ray import positive_control as pc

    cfg = pc.recipe(12, shuffle_pairs=True, clips="c", output="o")
    assert cfg == pretrain_config("locked-study", epochs=12, shuffle_pairs=True, clips="c", output="o")
    assert cfg.recipe == "locked-study" and (cfg.pixel_norm, cfg.vit_pool, cfg.vit_norm) == ("fixed", "cls", "none")


def test_resolution_order_recipe_then_yaml_then_cli(tmp_path):
    paths = {"clips": str(tmp_path), "output": str(tmp_path / "o")}
    cfg = resolve_pretrain({"recipe": "paper", "batch_size": 12, "loss": {"tau": 0.1}},
                           {"batch_size": 4, "pairs.image_size": 64, **paths})
    assert cfg.recipe == "paper" and cfg.batch_size == 4 and cfg.loss.tau == 0.1 and cfg.pairs.image_size == 64
    assert cfg.loss.objective == "dual_margin"   # from the recipe: the YAML's loss section named only tau
    assert resolve_pretrain({"recipe": "paper"}, {"recipe": "default", **paths}).loss.objective == "info_nce"
    assert set(RECIPES) == {"default", "paper", "cls-tower", "echo-motion", "locked-study"}


def test_unknown_recipe_fails_in_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"recipe": "papr"}))
    assert main(["pretrain", "--clips", str(tmp_path), "--output", str(tmp_path / "o"), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown recipe 'papr'" in err and len(err.splitlines()) == 1
    with pytest.raises(UserError, match="loss.objective"):
        run_pretrain(PretrainConfig(clips=str(tmp_path), output=str(tmp_path / "o"), loss=LossConfig(objective="x")))


def test_resume_keeps_the_recipe(tmp_path, capsys):
    """A run resumed with another recipe (here: without --recipe, i.e. the default) is refused in one line that says
    which recipe to pass, before Ray starts; so is a run made with the earlier input scaling."""
    out = tmp_path / "o"
    (out / "ray_results" / "pretrain").mkdir(parents=True)
    save(pretrain_config("paper", clips=str(tmp_path), output=str(out)), out / "config.yaml")
    args = ["pretrain", "--clips", str(tmp_path), "--output", str(out), "--resume"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "trained with recipe paper" in err and "--recipe paper" in err and len(err.splitlines()) == 1
    # a run saved before recipes and input options existed: no recipe to keep, but its input scaling is the earlier one
    old = {k: v for k, v in yaml.safe_load((out / "config.yaml").read_text()).items()
           if k not in ("recipe", "pixel_norm", "cls_position")}
    (out / "config.yaml").write_text(yaml.safe_dump(old))
    assert main(args + ["--recipe", "paper"]) == 2
    err = capsys.readouterr().err.strip()
    assert "trained with pixel_norm fixed" in err and len(err.splitlines()) == 1
    # a run of the previous release's default (the ViT [CLS] tower): every setting that differs, in one line, so
    # that one --config file resumes it
    earlier_default = pretrain_config("cls-tower", clips=str(tmp_path), output=str(out))
    earlier_default.recipe = "default"
    save(earlier_default, out / "config.yaml")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for setting in ("pixel_norm clip", "vit_pool cls", "vit_norm none", "{pixel_norm: clip, vit_pool: cls, "):
        assert setting in err, err
    # a run that left out the downstream patients resumes only with the same list (its split depends on it)
    (tmp_path / "eval.txt").write_text("10000001\n")
    save(pretrain_config("default", clips=str(tmp_path), output=str(out), exclude_patients=str(tmp_path / "eval.txt")),
         out / "config.yaml")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert f"--exclude-patients {tmp_path / 'eval.txt'}" in err and len(err.splitlines()) == 1, err


def test_deprecated_recipe_warns_once(tmp_path, capsys):
    resolve_pretrain({}, {"recipe": "echo-motion", "clips": str(tmp_path), "output": str(tmp_path / "o")})
    assert capsys.readouterr().err.count("recipe echo-motion is deprecated") == 1
