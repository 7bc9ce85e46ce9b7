"""The edge-msl command and the device-side import rule (no TensorFlow, no training deps)."""

import json
import subprocess
import sys

import pytest

from edge_msl import cli


def run(*args):
    return subprocess.run([sys.executable, "-m", "edge_msl", *args], capture_output=True, text=True, timeout=60)


def test_help_lists_every_subcommand():
    out = run("--help")
    assert out.returncode == 0
    for name in cli.SUBCOMMANDS:
        assert name in out.stdout


def test_arrays_table_and_json(capsys):
    assert cli.main(["arrays"]) == 0
    table = capsys.readouterr().out
    assert "respeaker-6mic" in table and "uca8-r10" in table
    assert cli.main(["arrays", "respeaker-usb-v2", "--json"]) == 0
    desc = json.loads(capsys.readouterr().out)
    assert desc["channel_map"] == [1, 2, 3, 4] and desc["n_channels"] == 6


def test_unknown_array_is_one_line_on_stderr():
    out = run("arrays", "no-such-array")
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "known arrays" in out.stderr


def test_calibrate_without_a_step_says_what_to_do():
    out = run("calibrate")
    assert out.returncode == 2 and out.stdout == ""
    assert "name a step" in out.stderr and "--rollback" in out.stderr


def test_device_modules_do_not_import_training_dependencies():
    code = ("import sys, edge_msl.cli, edge_msl.arrays, edge_msl.regions; edge_msl.cli.build_parser(); "
            "bad = [m for m in ('tensorflow', 'keras', 'scipy', 'pyroomacoustics', 'train_tf', 'convert') "
            "if m in sys.modules]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_bench_measures_the_packaged_model():
    out = run("bench", "--windows", "5", "--json", "--threads", "1,2")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["threads"] for r in rows] == [1, 2]
    assert all(0 < r["median_ms"] <= r["p95_ms"] and r["model"].endswith("uca8-r10.tflite") for r in rows)
    bad = run("bench", "--threads", "zero")
    assert bad.returncode == 2 and "--threads" in bad.stderr and bad.stdout == ""
