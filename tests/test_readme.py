"""The README and the guides: short, their code runs, their links resolve, their quoted figures still hold."""

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge_msl import Localizer

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
GUIDES = sorted((REPO / "docs").glob("*.md")) + sorted((REPO / "docs").glob("*/*.md"))


def blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def test_readme_is_short_and_in_order():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    heads = [h for h in re.findall(r"^## (.+)$", text, flags=re.M)]
    assert heads[:3] == ["Install", "Two commands", "Quick start on a board"]
    assert "![" in text.split("## Install")[0]  # one picture before anything else


@pytest.mark.parametrize("path", [README, REPO / "docs" / "locate.md"], ids=lambda p: p.name)
def test_python_blocks_run(path, monkeypatch):
    monkeypatch.chdir(REPO)
    code = blocks(path, "python")
    assert code
    for block in code:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"{path.name} python block", "exec"), {"__name__": "__readme__"})
        # a block that prints says what it prints in a comment after "# ... : "
        for line in block.splitlines():
            m = re.match(r"print\(.*\)\s+# .*: (.+)$", line)
            if m:
                assert out.getvalue().strip() == m.group(1).strip()


def test_readme_example_line_is_what_locate_prints():
    (quoted,) = [b for b in blocks(README, "json")]
    quoted = json.loads(quoted)
    got = [m for m in Localizer().locate("example") if m["t_s"] == quoted["t_s"]]
    assert got == [quoted]


def test_readme_demo_output_is_what_make_demo_prints():
    (quoted,) = blocks(README, "text")
    out = subprocess.run([sys.executable, str(REPO / "docs/examples/demo.py"), "--plot", ""], capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    # the first line carries the wall time of the run
    strip = lambda s: [re.sub(r", [0-9.]+ s$", "", line) for line in s.strip().splitlines()]  # noqa: E731
    assert strip(out.stdout)[:len(strip(quoted))] == strip(quoted)


def test_make_demo_runs_the_demo_and_needs_no_bank():
    make = (REPO / "Makefile").read_text()
    demo = re.search(r"^demo: (.*)\n((?:\t.*\n)+)", make, flags=re.M)
    setup = re.search(r"^\$\(VENV\)/\.demo: .*\n((?:\t.*\n)+)", make, flags=re.M)
    assert demo and setup and demo.group(1).split() == ["$(VENV)/.demo"]
    assert "docs/examples/demo.py" in demo.group(2)
    assert '".[plot]"' in setup.group(1) and "system" not in setup.group(1) and "BANK" not in setup.group(1)


@pytest.mark.parametrize("path", [README] + GUIDES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path):
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        assert (path.parent / target).exists(), f"{path.relative_to(REPO)}: broken link {target}"


@pytest.mark.parametrize("card", sorted((REPO / "docs" / "models").glob("*.md")), ids=lambda p: p.stem)
def test_model_cards_quote_their_eval_tables(card):
    """Every table row a card quotes from models/<array>/eval/table.md is still there."""
    table = (REPO / "models" / card.stem / "eval" / "table.md").read_text()
    text = card.read_text()
    section = text.split("From `models/")[1].split("Against the best baseline")[0]
    rows = [line for line in section.splitlines() if re.match(r"\| (\d src, all|all) \|", line)]
    assert len(rows) == 5
    for row in rows:
        assert row in table, f"{card.name}: {row} is no longer in models/{card.stem}/eval/table.md"
    sidecar = json.loads((REPO / "edge_msl" / "models" / f"{card.stem}.json").read_text())
    assert f"({sidecar['tflite_bytes']:,} bytes)" in text
