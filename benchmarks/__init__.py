"""Benchmarks of what edge-msl ships: run each from the repository root as ``python -m benchmarks.NAME``."""
