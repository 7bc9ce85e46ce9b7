"""The GPU job's carried dry bank: split into parts, stashed over calls, joined and checked."""

from __future__ import annotations

import dataclasses
import json
import lzma
import shutil
from pathlib import Path

import numpy as np
import pytest

from train_tf import gpu_job


@pytest.fixture()
def bank_xz(tmp_path):
    raw = np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    src = tmp_path / "bank.npz.xz"
    src.write_bytes(lzma.compress(raw))
    return src, raw


def test_parts_carried_over_calls_join_to_the_bank(tmp_path, bank_xz):
    src, raw = bank_xz
    carry = tmp_path / "carry"
    parts = gpu_job.split_bank(str(src), 3, str(carry))
    assert [p.name for p in parts] == [f"{gpu_job.BANK_XZ}.{i}of3" for i in range(3)]
    assert sum(p.stat().st_size for p in parts) == src.stat().st_size
    stash = tmp_path / "stash"
    # calls 1 and 2 each carry one part and stash it; call 3 carries the last part only
    for i in (0, 1):
        call = tmp_path / f"call{i}"
        shutil.copytree(carry / f"part-{i}", call / f"part-{i}")
        held = gpu_job.stash(str(call), str(stash))
        assert len([h for h in held if not h.endswith(".sha256")]) == i + 1
    last = tmp_path / "call2"
    shutil.copytree(carry / "part-2", last / "part-2")
    out = tmp_path / "bank.npz"
    gpu_job.join_bank([str(last), str(stash)], str(out))
    assert out.read_bytes() == raw


def test_missing_or_corrupt_part_is_named(tmp_path, bank_xz):
    src, _ = bank_xz
    carry = tmp_path / "carry"
    gpu_job.split_bank(str(src), 2, str(carry))
    only_last = tmp_path / "call"
    shutil.copytree(carry / "part-1", only_last / "part-1")
    with pytest.raises(gpu_job.CarryError, match=r"missing: \['bank-carry.npz.xz.0of2'\]"):
        gpu_job.join_bank([str(only_last), str(tmp_path / "empty")], str(tmp_path / "out.npz"))
    part0 = carry / "part-0" / f"{gpu_job.BANK_XZ}.0of2"
    data = bytearray(part0.read_bytes())
    data[100] ^= 0xFF
    part0.write_bytes(bytes(data))
    with pytest.raises(gpu_job.CarryError, match="sha256"):
        gpu_job.join_bank([str(carry)], str(tmp_path / "out.npz"))
    with pytest.raises(gpu_job.CarryError, match="no dry bank"):
        gpu_job.join_bank([str(tmp_path / "nothing")], str(tmp_path / "out.npz"))


def test_whole_file_is_used_when_carried(tmp_path, bank_xz):
    src, raw = bank_xz
    carry = tmp_path / "carry"
    carry.mkdir()
    shutil.copyfile(src, carry / gpu_job.BANK_XZ)
    out = tmp_path / "bank.npz"
    gpu_job.join_bank([str(carry), str(tmp_path / "stash")], str(out))
    assert out.read_bytes() == raw


def test_a_bank_left_by_another_job_is_replaced_and_its_parts_dropped(tmp_path, bank_xz):
    """Two jobs on one warm machine: the second one's bank is joined, not the first one's reused, and
    stashing its parts drops the first one's (another split) instead of mixing them."""
    src_a, raw_a = bank_xz
    raw_b = np.random.default_rng(1).integers(0, 256, 150_000, dtype=np.uint8).tobytes()
    src_b = tmp_path / "other.npz.xz"
    src_b.write_bytes(lzma.compress(raw_b))
    gpu_job.split_bank(str(src_a), 3, str(tmp_path / "a"))
    gpu_job.split_bank(str(src_b), 2, str(tmp_path / "b"))
    stash, out = tmp_path / "stash", tmp_path / "machine" / "bank.npz"
    out.parent.mkdir()
    for i in (0, 1):
        gpu_job.stash(str(tmp_path / "a" / f"part-{i}"), str(stash))
    assert gpu_job.ensure_bank([str(tmp_path / "a" / "part-2"), str(stash)], str(out))
    assert out.read_bytes() == raw_a
    # the same carry again: nothing to do
    assert not gpu_job.ensure_bank([str(tmp_path / "a" / "part-2"), str(stash)], str(out))
    # the second job: its first part replaces the first job's parts in the stash
    held = gpu_job.stash(str(tmp_path / "b" / "part-0"), str(stash))
    assert held == [f"{gpu_job.BANK_XZ}.0of2", f"{gpu_job.BANK_XZ}.sha256"]
    assert gpu_job.ensure_bank([str(tmp_path / "b" / "part-1"), str(stash)], str(out))
    assert out.read_bytes() == raw_b
    # nothing carried: the bank there is kept
    assert not gpu_job.ensure_bank([str(tmp_path / "none")], str(out))
    # a whole file carried is told apart by its own hash
    whole = tmp_path / "whole"
    whole.mkdir()
    shutil.copyfile(src_a, whole / gpu_job.BANK_XZ)
    assert gpu_job.ensure_bank([str(whole)], str(out))
    assert out.read_bytes() == raw_a


PLANS = sorted((Path(__file__).resolve().parents[1] / "experiments" / "plans").glob("*.json"))


def _run_shape(run: dict):
    """A plan run's arguments through the trainer's own parser, its --mix-set overrides and the
    network it would build (8 mics at 16 kHz; the window from --mix-set window_s, else 0.5 s)."""
    from train_tf.train import build_parser, model_config, parse_mix_set

    args = build_parser().parse_args(["--rir-bank", "/tmp/x", "--out", "/tmp/y", *run["args"]])
    overrides = parse_mix_set(args.mix_set)
    return overrides, model_config(args, int(round(float(overrides.get("window_s", 0.5)) * 16000)), 8)


@pytest.mark.parametrize("plan_path", PLANS, ids=[p.stem for p in PLANS])
def test_every_plan_is_runnable(plan_path):
    """A bad plan costs device time: every run's arguments must parse and name real settings."""
    from train_tf.model import count_macs
    from train_tf.simulate import SimSettings

    plan = json.loads(plan_path.read_text())
    names = [r["name"] for r in plan["runs"]]
    assert len(set(names)) == len(names), "run names must be unique (each is a directory)"
    fields = {f.name for f in dataclasses.fields(SimSettings)}
    for run in plan["runs"]:
        assert run["bank"] in plan["banks"], f"{run['name']}: bank {run['bank']!r} not in the plan's banks"
        if run.get("retired"):  # a run of an option since removed: a record, no longer runnable
            continue
        overrides, cfg = _run_shape(run)
        unknown = sorted(set(overrides) - fields)
        assert not unknown, f"{run['name']}: --mix-set {unknown} are not simulation settings"
        assert count_macs(cfg) > 0
    for bank in plan["banks"].values():
        assert bank["rooms"] > 0 and bank["mics"] > 0


def test_full_bank_plan_stays_within_the_device_budget():
    from train_tf.model import count_macs

    plan = json.loads((PLANS[0].parent / "next-full-bank.json").read_text())
    for run in plan["runs"]:
        macs = count_macs(_run_shape(run)[1])
        assert macs <= 50_000_000, f"{run['name']}: {macs} MACs"
