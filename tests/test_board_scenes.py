"""benchmarks/board_scenes.py's tables from rows shaped like scenes_bench's JSON, without scenes or models: one
table per set kind, the moving error on the walks only, no id switches for each window alone."""

from __future__ import annotations

import json

from benchmarks import board_scenes


def row(set_name: str, decode: str, **kw) -> dict:
    r = {"set": set_name, "decode": decode, "f1": 0.95, "recall": 0.94, "precision": 0.96,
         "doa_error_mean_deg": 2.5, "doa_error_moving_deg": None, "pickup_p90_s": 0.3, "linger_mean_s": 0.07,
         "linger_p90_s": 0.1, "id_switches_per_turn": 0.0}
    return {**r, **kw}


ROWS = {
    "respeaker-4mic": [row("test2-turns-respeaker-4mic", board_scenes.SHIPPED, f1=0.964),
                       row("test2-turns-respeaker-4mic", board_scenes.ALONE, f1=0.951),
                       row("test2-walk-respeaker-4mic", board_scenes.SHIPPED, f1=0.9, doa_error_moving_deg=5.123,
                           id_switches_per_turn=0.4)],
    "uca8-r10": [row("test-walk", board_scenes.SHIPPED, doa_error_moving_deg=3.74)],
}


def test_turns_table_rows_and_columns():
    lines = board_scenes.table("turns", ROWS).splitlines()
    assert lines[0].startswith("| board | decode | F1 |") and "error moving" not in lines[0]
    assert len(lines) == 4  # header, rule, the board's two turns rows; uca8-r10 has no turns row here
    assert lines[2].startswith("| `respeaker-4mic` | shipped | 0.964 |")
    assert lines[3].startswith("| `respeaker-4mic` | each window alone | 0.951 |") and lines[3].endswith("| — |")
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_walk_table_has_the_moving_error():
    lines = board_scenes.table("walk", ROWS).splitlines()
    assert "error moving°" in lines[0] and len(lines) == 4
    assert "| 5.12 |" in lines[2] and lines[2].endswith("| 0.400 |")
    assert lines[3].startswith("| `uca8-r10` | shipped |") and "| 3.74 |" in lines[3]


def test_tables_only_reads_the_jsons(tmp_path, capsys):
    for b, rows in ROWS.items():
        board_scenes.json_path(b, str(tmp_path)).write_text(json.dumps(rows))
    assert board_scenes.main(["--tables-only", "--out-dir", str(tmp_path), "--boards", ",".join(ROWS)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("### turns\n") and "### walk\n" in out
