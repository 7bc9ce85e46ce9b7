"""all: build -> finetune -> convert -> validate -> install (if better) -> report, timing each step.

It must not install a model that validates worse than the running one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from edge_msl.model_store import DEFAULT_STATE_DIR
from .build import build_set
from .finetune import finetune
from .install import install, installed_model, notify_daemon
from .int8 import convert_model
from .label import label_positions
from .report import report
from .session import Session
from .validate import validate


def run_all(session: Session, *, keras_model: str | Path | None = None, state_dir: str | Path = DEFAULT_STATE_DIR,
            sim_data: str | Path | None = None, bank: str | Path | None = None, workers: int = 1,
            do_install: bool = True, pid_file: str | Path | None = None,
            say: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """build -> finetune -> convert -> validate -> install (if better) -> report, timing each step."""
    if any(p.get("label") is None for p in session.positions):
        t0 = time.perf_counter()
        label_positions(session)
        session.record_step("label", time.perf_counter() - t0)
    t0 = time.perf_counter()
    counts = build_set(session, sim_data=sim_data, bank=bank, workers=workers)
    session.record_step("build", time.perf_counter() - t0, **counts)
    say(f"build: {counts}")
    t0 = time.perf_counter()
    ft = finetune(session, keras_model, progress=say)
    session.record_step("finetune", time.perf_counter() - t0, trainable_parameters=ft["trainable_parameters"])
    t0 = time.perf_counter()
    out = convert_model(session)
    session.record_step("convert", time.perf_counter() - t0)
    t0 = time.perf_counter()
    before = installed_model(state_dir, session.array)
    val = validate(session, before, out)
    session.record_step("validate", time.perf_counter() - t0)
    say(f"validate: {'better' if val['better'] else 'not better'}: {val['why']}")
    result: dict[str, Any] = {"counts": counts, "validation": val["sets"], "better": val["better"], "why": val["why"],
                              "model": str(out), "installed": None}
    if do_install and val["better"]:
        t0 = time.perf_counter()
        dst = install(out, state_dir, session.array.name)
        result["installed"] = str(dst)
        result["notify"] = notify_daemon(pid_file)
        session.record_step("install", time.perf_counter() - t0)
    report(session)
    return result
