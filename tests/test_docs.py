"""The documentation is checked like code: a user who follows a link, copies a command or opens a file the docs name
must find it. Fast (no Ray is started): links and anchors are resolved on disk, and every ``eee-ray`` subcommand and
flag named in the docs is looked up in that subcommand's own argparse parser.

Checked in README.md and docs/*.md:
- every relative link resolves to an existing file, and its ``#anchor`` (if any) to a heading of that file
  (GitHub-style slugs);
- every ``eee-ray <cmd>`` and ``python jobs/<cmd>.py`` names a real subcommand, and every ``--flag`` on that command
  line exists in its parser and is not a deprecated alias (for ``python benchmarks/<x>.py``: in the script's
  ``add_argument`` calls); on a stage's page, a code span that is just a flag (``--echo-tower locked``) must be an
  option of that page's command(s);
- every repository path (``eee_ray/...``, ``jobs/...``, ``benchmarks/...``, ``tests/...``, ``docs/...``) exists,
  ``tests/x.py::name`` names a test in that file, and every dotted ``eee_ray.module.name`` resolves.
"""

from __future__ import annotations

import argparse
import functools
import re
from pathlib import Path

import pytest

from eee_ray.cli import COMMANDS, build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PAGES = ["data", "ingest", "pretraining", "downstream", "inference", "cluster", "robustness", "development",
         "results", "contract"]

# Pages whose bare flag spans (`--flag value`) must be options of these commands; None = any subcommand.
PAGE_COMMANDS: dict[str, tuple[str, ...] | None] = {
    "README.md": None,
    "data.md": ("synth", "ingest", "benchmark"),
    "ingest.md": ("ingest",),
    "pretraining.md": ("pretrain",),
    "downstream.md": ("benchmark", "analyze"),
    "inference.md": ("embed", "predict"),
}

FENCE = re.compile(r"^(```|~~~)")
COMMENT = re.compile(r"<!--.*?-->", re.S)
SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"(?<!!)\[(?:[^\]\n]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
COMMAND = re.compile(r"(?:\beee-ray\s+([a-z][\w-]*)|\bpython3?\s+jobs/([a-z]\w*)\.py)")
SCRIPT = re.compile(r"\bpython3?\s+(benchmarks/\w+\.py)")
FLAG = re.compile(r"(?<![\w-])(--[a-zA-Z][\w-]*)")
END_OF_COMMAND = re.compile(r"\s#|&&|;|\||\beee-ray\s|\bpython3?\s")
REPO_PATH = re.compile(r"(?<![\w./~-])((?:eee_ray|jobs|benchmarks|tests|docs|\.ci)/[\w./-]*|"
                       r"cluster\.yaml|cluster\.local\.yaml|pyproject\.toml)(::\w+)?")
DOTTED = re.compile(r"(?<![\w./])eee_ray(?:\.\w+)+")


def _parse(path: Path) -> tuple[list[str], list[str]]:
    """(prose lines outside fenced code and HTML comments, code texts: fenced blocks and inline spans)."""
    text = COMMENT.sub("", path.read_text(encoding="utf-8"))
    prose, code, block, fenced = [], [], [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            if fenced:
                code.append("\n".join(block))
                block = []
            fenced = not fenced
        elif fenced:
            block.append(line)
        else:
            prose.append(line)
    code += [m.group(1) for line in prose for m in SPAN.finditer(line)]
    return prose, code


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: rendered text, lower case, punctuation dropped, spaces -> hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@functools.lru_cache(maxsize=None)
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _parse(path)[0]:
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return frozenset(out)


@functools.lru_cache(maxsize=None)
def _parser_options(command: str) -> dict[str, bool]:
    """Option strings of ``eee-ray <command>``, from the parser the CLI itself builds -> whether the option is a
    deprecated alias (kept working but hidden from ``--help``)."""
    parser = build_parser([command])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {o: action.help == argparse.SUPPRESS for action in sub.choices[command]._actions
            for o in action.option_strings}


def options(command: str) -> frozenset[str]:
    return frozenset(_parser_options(command))


def _id(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_every_page_exists_and_the_readme_links_it():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for page in PAGES:
        assert (REPO / "docs" / f"{page}.md").is_file(), f"docs/{page}.md is missing"
        assert f"(docs/{page}.md" in readme, f"README.md does not link docs/{page}.md"
    assert len(readme.splitlines()) <= 160, "README.md should stay a short entry point (about 150 lines)"


def link_problems(doc: Path) -> list[str]:
    bad = []
    for line in _parse(doc)[0]:
        for target in LINK.findall(SPAN.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (doc.parent / file_part).resolve() if file_part else doc
            if not dest.exists():
                bad.append(f"{target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    return bad


def _invocations(code: str, pattern: re.Pattern) -> list[tuple[str, str]]:
    """(what ``pattern`` names, the rest of that command line) for every invocation in a piece of code; a command line
    ends at a comment, ``&&``, ``;``, a pipe or the next command, and continues over trailing backslashes."""
    found = []
    for line in re.sub(r"\\\n\s*", " ", code).splitlines():
        for m in pattern.finditer(line):
            rest = line[m.end():]
            stop = END_OF_COMMAND.search(rest)
            found.append((next(g for g in m.groups() if g), rest[:stop.start()] if stop else rest))
    return found


def command_problems(doc: Path) -> list[str]:
    bad = []
    code = _parse(doc)[1]
    for piece in code:
        for command, rest in _invocations(piece, COMMAND):
            if command not in COMMANDS:
                bad.append(f"eee-ray has no subcommand {command}")
                continue
            for flag in FLAG.findall(rest):
                if flag not in options(command):
                    bad.append(f"eee-ray {command} has no option {flag}")
                elif _parser_options(command)[flag]:
                    bad.append(f"eee-ray {command} {flag} is a deprecated alias: show its replacement")
        for script, rest in _invocations(piece, SCRIPT):  # flags looked up in the script's add_argument calls
            source = (REPO / script).read_text() if (REPO / script).is_file() else ""
            bad += [f"{script} has no option {flag}" for flag in FLAG.findall(rest) if f'"{flag}"' not in source]
    if doc.name in PAGE_COMMANDS:
        commands = PAGE_COMMANDS[doc.name] or tuple(COMMANDS)
        known = set().union(*(options(c) for c in commands))
        for piece in code:
            m = re.match(r"^(--[a-zA-Z][\w-]*)(?:[ =]\S.*)?$", piece.strip())
            if m and m.group(1) not in known:
                bad.append(f"{m.group(1)} (in `{piece}`) is not an option of eee-ray {' / '.join(commands)}")
    return sorted(set(bad))


def _module_file(parts: list[str]) -> Path | None:
    base = REPO.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def path_problems(doc: Path) -> list[str]:
    bad = []
    for piece in _parse(doc)[1]:
        for m in REPO_PATH.finditer(piece):
            rel, test_name = m.group(1).rstrip("."), m.group(2)
            path = REPO / rel
            if not path.exists():
                bad.append(f"{rel}: no such file or folder")
            elif test_name and not re.search(rf"^\s*def {test_name[2:]}\(", path.read_text(), re.M):
                bad.append(f"{rel}{test_name}: no such test")
        for dotted in DOTTED.findall(piece):
            parts = dotted.split(".")
            depth = next((n for n in range(len(parts), 0, -1) if _module_file(parts[:n])), 0)
            if depth == 0:
                bad.append(f"{dotted}: no such module")
            elif depth < len(parts):
                source = _module_file(parts[:depth]).read_text()
                if not re.search(rf"\b{parts[depth]}\b", source):
                    bad.append(f"{dotted}: {'.'.join(parts[:depth])} has no {parts[depth]}")
    return sorted(set(bad))


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_relative_links_resolve(doc: Path):
    bad = link_problems(doc)
    assert not bad, f"{_id(doc)}: broken links:\n" + "\n".join(bad)


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_commands_and_flags_exist(doc: Path):
    bad = command_problems(doc)
    assert not bad, f"{_id(doc)}:\n" + "\n".join(bad)


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_named_files_and_modules_exist(doc: Path):
    bad = path_problems(doc)
    assert not bad, f"{_id(doc)}:\n" + "\n".join(bad)


def test_the_checker_catches_broken_docs(tmp_path: Path):
    """Each kind of mistake in a made-up stage page is reported, and its correct twin is not: the checks can fail."""
    page = tmp_path / "pretraining.md"
    page.write_text(
        "# Pretraining\n\n## What `it` learns: yes\n\n"
        "[ok](#what-it-learns-yes) [bad anchor](#nowhere) [bad file](missing.md) [web](https://example.org)\n\n"
        "```bash\n"
        "eee-ray pretrain --clips c --output o \\\n    --epochs 2 --no-such-flag  # --comment-flag\n"
        "eee-ray pretrain --clips c --output o --workdir w\n"
        "eee-ray pretend --output o\n"
        "python jobs/pretrain.py --clips c --made-up\n"
        "python benchmarks/robustness.py --synth s --bogus\n"
        "```\n\n"
        "`--echo-tower locked`, `--not-a-pretrain-option 3`, `eee_ray/pretrain.py`, `eee_ray/nothing.py`,\n"
        "`tests/test_docs.py::test_the_checker_catches_broken_docs`, `tests/test_docs.py::test_missing`,\n"
        "`eee_ray.config.resolve`, `eee_ray.config.no_such_name`, `eee_ray.no_such_module`.\n",
        encoding="utf-8")
    assert link_problems(page) == ["#nowhere: no heading with anchor #nowhere in pretraining.md",
                                   "missing.md: no such file"]
    assert command_problems(page) == [
        "--not-a-pretrain-option (in `--not-a-pretrain-option 3`) is not an option of eee-ray pretrain",
        "benchmarks/robustness.py has no option --bogus",
        "eee-ray has no subcommand pretend",
        "eee-ray pretrain --workdir is a deprecated alias: show its replacement",
        "eee-ray pretrain has no option --made-up",
        "eee-ray pretrain has no option --no-such-flag"]
    assert path_problems(page) == [
        "eee_ray.config.no_such_name: eee_ray.config has no no_such_name",
        "eee_ray.no_such_module: eee_ray has no no_such_module",
        "eee_ray/nothing.py: no such file or folder",
        "tests/test_docs.py::test_missing: no such test"]
