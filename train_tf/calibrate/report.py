"""report: report.md and report.png of a session (error before/after per position, window counts, step times).

It must not change the session.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .label import session_front_end
from .session import Session


def report(session: Session) -> str:
    """Write report.md and report.png (error before/after per position, window counts, step times)."""
    v_path = session.dir / "validation.json"
    val = json.loads(v_path.read_text()) if v_path.exists() else None
    lines = [f"# Calibration report: {session.dir}", "", f"Array {session.array.name}, "
             f"{len(session.positions)} positions recorded, {len(session.labelled())} labelled.", "",
             "| position | seconds | label | azimuth (deg) | confidence | accepted |",
             "| --- | ---: | --- | ---: | ---: | --- |"]
    for p in session.positions:
        lb = p.get("label") or {}
        lines.append(f"| {p['name']} | {p['seconds']:.1f} | {lb.get('source', '-')} | "
                     f"{lb.get('azimuth_deg', float('nan')):.1f} | {lb.get('confidence', float('nan')):.2f} | "
                     f"{'yes' if lb.get('accepted') else 'no: ' + lb.get('reason', 'not labelled')} |")
    fe = session_front_end(session)
    if fe is not None:
        lines += ["", "Microphone errors estimated from the clips (relative to the array mean; undone for the "
                  "self-labels, given to the simulated windows):", "",
                  "| mic | gain (dB) | delay (us) | phase (deg) |", "| ---: | ---: | ---: | ---: |"]
        lines += [f"| {m} | {g:+.2f} | {d * 1e6:+.1f} | {ph:+.1f} |"
                  for m, (g, d, ph) in enumerate(zip(fe.gain_db, fe.delay_s, fe.phase_deg))]
    counts = session.data.get("counts")
    if counts:
        lines += ["", "| windows | count |", "| --- | ---: |"] + [f"| {k} | {v} |" for k, v in counts.items()]
    if val:
        held = val.get("heldout_positions") or []
        where = (f"positions held out whole, never trained on ({', '.join(held)}): what to expect at places "
                 "never recorded; the recorded positions' later parts are the `recorded_*` rows, not used for the "
                 "decision" if held else "the later part of every clip (no position held out: fewer than 4)")
        lines += ["", f"Held-out real windows ({where}); before = {val['before']}, after = {val['after']}:", "",
                  "| set | windows | DOA err before (deg) | after | F1 before | after |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for name, sets in [*val["sets"].items(), *val["per_position"].items()]:
            b, a = sets["before"], sets["after"]
            lines.append(f"| {name} | {b['windows']} | {_f(b['err_mean'])} | {_f(a['err_mean'])} | "
                         f"{_f(b['f1'], 3)} | {_f(a['f1'], 3)} |")
        lines += ["", f"Install rule: {'better' if val['better'] else 'not better'}: {val['why']}"]
    steps = session.data.get("steps", {})
    if steps:
        lines += ["", "| step | seconds |", "| --- | ---: |"] + [f"| {k} | {v['seconds']:.1f} |"
                                                                 for k, v in steps.items()]
    text = "\n".join(lines) + "\n"
    (session.dir / "report.md").write_text(text)
    if val:
        _plot(val, session.dir / "report.png")
    return text


def _f(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _plot(val: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(val["per_position"]) + ["mixtures"]
    rows = list(val["per_position"].values()) + [val["sets"]["mixture"]]
    before = [r["before"]["err_mean"] or 0.0 for r in rows]
    after = [r["after"]["err_mean"] or 0.0 for r in rows]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(names) + 2), 3.6))
    ax.bar(x - 0.2, before, 0.4, label="before")
    ax.bar(x + 0.2, after, 0.4, label="after")
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("mean DOA error (deg)")
    ax.set_title("held-out real windows: before vs after calibration")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
