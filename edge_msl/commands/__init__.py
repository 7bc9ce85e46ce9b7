"""Subcommands of ``edge-msl``; each module has ``add_arguments(parser)`` and ``main(args) -> int``."""
