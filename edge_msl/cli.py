"""The ``edge-msl`` command: one subcommand per module in ``edge_msl.commands``.

Logs go to stderr; stdout carries data only, so ``edge-msl ... | jq`` always works.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__

SUBCOMMANDS = ("run", "locate", "devices", "info", "arrays", "bench", "calibrate", "setup-service")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered from its module."""
    parser = argparse.ArgumentParser(prog="edge-msl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"edge-msl {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log detail on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"edge_msl.commands.{name.replace('-', '_')}")
        doc = (module.__doc__ or name).strip()
        p = sub.add_parser(name, help=doc.splitlines()[0], description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s edge-msl %(levelname)s %(message)s",
    )
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    return int(args._module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
