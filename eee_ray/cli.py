"""The ``eee-ray`` console script: one subcommand per stage, each implemented in ``eee_ray.commands.<name>``.

A command module defines ``add_arguments(parser)`` and ``run(args) -> int``. Expected user mistakes raise
``UserError`` and are printed as one line; ``jobs/<name>.py`` calls the same ``main``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from eee_ray.errors import UserError

COMMANDS: dict[str, str] = {
    "synth": "generate the synthetic MIMIC-like data set (echo cines, ECG records, ground truth)",
    "ingest": "DICOM cines -> echo clips + traced ECG in Parquet (Ray Data)",
    "pretrain": "ECG-Echo contrastive pretraining (Ray Train)",
    "benchmark": "structural heart disease benchmark of four models (Ray Tune + MLflow)",
    "analyze": "LDA plots, ROC curves and per-label tables of a benchmark",
    "embed": "ECG embeddings from a trained encoder (Ray Data)",
    "predict": "structural heart disease probabilities from ECGs (Ray Data)",
    "demo": "the whole chain on the embedded default: synth -> ingest -> pretrain -> benchmark -> analyze",
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one and the help text does not already state it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, argparse.SUPPRESS, False) or "default" in text:
            return text
        return super()._get_help_string(action)


def _load(name: str):
    try:
        return importlib.import_module(f"eee_ray.commands.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"eee_ray.commands.{name}":
            return None
        raise


def _chosen(argv: list[str]) -> str | None:
    """The subcommand named on the command line, found without importing any command module."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Only the chosen command's module is imported (they pull in torch and Ray): ``--help`` stays instant."""
    from eee_ray import __version__

    chosen = _chosen(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="eee-ray", description="Echo-Enhanced ECG on Ray.")
    parser.add_argument("--version", action="version", version=f"eee-ray {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=_HelpFormatter)
        module = _load(name) if name == chosen else None
        if module is not None:
            module.add_arguments(p)
        p.set_defaults(_module=module, _name=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    from eee_ray.runtime import setup_logging

    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    setup_logging(args.verbose)
    if args._module is None:
        print(f"eee-ray {args._name}: not built yet in this version", file=sys.stderr)
        return 2
    try:
        return int(args._module.run(args) or 0)
    except UserError as e:
        print(f"eee-ray {args._name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"eee-ray {args._name}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
