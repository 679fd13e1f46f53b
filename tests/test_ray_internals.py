"""The private Ray hooks eee_ray relies on are still where eee_ray/ray_internals.py expects them."""

from __future__ import annotations

import ast
from pathlib import Path

from eee_ray import ray_internals

PACKAGE = Path(ray_internals.__file__).parent


def test_private_ray_hooks_exist_in_the_installed_ray():
    problems = ray_internals.check_hooks()
    assert not problems, "\n".join(problems)


def test_no_private_ray_import_outside_ray_internals():
    """A Ray upgrade should need a look at one module only."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "ray_internals.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n.startswith("ray") and ("._private" in n or "._internal" in n or n.split(".")[-1].startswith("_"))
                   for n in names):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not offenders, f"private Ray imports outside ray_internals.py: {offenders}"


def test_check_hooks_names_a_missing_hook_in_one_line(monkeypatch):
    from ray.data import DataContext

    monkeypatch.delattr(DataContext, "use_datasource_v2", raising=False)
    ctx = DataContext.get_current()
    if hasattr(ctx, "use_datasource_v2"):  # an instance attribute (dataclass field): hide it too
        monkeypatch.delattr(ctx, "use_datasource_v2")
    problems = ray_internals.check_hooks()
    assert len(problems) == 1 and "use_datasource_v2" in problems[0] and "ray_internals.py" in problems[0]
