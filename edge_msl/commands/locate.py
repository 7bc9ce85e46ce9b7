"""Localize sources in a multichannel recording and print JSON lines."""

from __future__ import annotations

import argparse

from . import not_implemented


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options until the subcommand is implemented."""


def main(args: argparse.Namespace) -> int:
    """Stub until its issue lands."""
    return not_implemented("locate", "streaming-localization")
