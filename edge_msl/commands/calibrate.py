"""Fine-tune the model to your own room and array from a few recordings."""

from __future__ import annotations

import argparse

from . import not_implemented


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options until the subcommand is implemented."""


def main(args: argparse.Namespace) -> int:
    """Stub until its issue lands."""
    return not_implemented("calibrate", "calibration")
