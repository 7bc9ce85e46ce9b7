"""Subcommands of ``edge-msl``; each module has ``add_arguments(parser)`` and ``main(args) -> int``."""

import sys


def not_implemented(name: str, issue: str) -> int:
    """Report that a subcommand has not landed yet (exit code 2)."""
    print(f"edge-msl {name}: not implemented yet (lands with the {issue} issue)", file=sys.stderr)
    return 2
