"""One check for every settings table read from JSON or TOML: unknown keys are refused.

Shared by the region layout, the simulator and model settings (and later the daemon config),
so every such error names the keys and the allowed ones the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping


def reject_unknown_keys(cls: type, cfg: Mapping[str, Any], what: str, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming the keys of ``cfg`` that are not fields of dataclass ``cls``."""
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise error(f"unknown {what}(s) {unknown}; allowed: {sorted(allowed)}")
