"""Banks cut by signal name: the hash-based train / test split and per-kind minute limits."""

from __future__ import annotations

import hashlib

from train_tf.bank.store import KINDS, DryBank

# --------------------------------------------------------------------------- train / test split

SPLITS = ("train", "test")


def _name_key(name: str, seed: int) -> bytes:
    """A stable pseudo-random key of a signal name: the same whichever other signals a bank holds."""
    return hashlib.sha256(f"{int(seed)}:{name}".encode()).digest()


def split_of(name: str, test_fraction: float, seed: int = 0) -> str:
    """"train" or "test" for a signal name: a hash of (seed, name), so the split of a signal
    never depends on which other signals are in the bank."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    return "test" if int.from_bytes(_name_key(name, seed)[:8], "big") / 2.0 ** 64 < test_fraction else "train"


def split_bank(bank: DryBank, test_fraction: float = 0.15, seed: int = 0) -> dict[str, DryBank]:
    """Disjoint train and test banks (by signal, see ``split_of``); each records its origin."""
    parts: dict[str, list[int]] = {s: [] for s in SPLITS}
    for i, name in enumerate(bank.names):
        parts[split_of(name, test_fraction, seed)].append(i)
    out = {}
    for split, idx in parts.items():
        meta = dict(bank.meta)
        meta["split"] = {"part": split, "test_fraction": test_fraction, "seed": seed,
                         "parent_sha256": bank.content_hash}
        out[split] = bank.subset(idx, meta)
    return out


def limit_minutes(bank: DryBank, max_minutes: dict[str, float], seed: int = 0, files_only: bool = False,
                  complement: bool = False) -> DryBank:
    """A sub-bank with at most ``max_minutes[kind]`` minutes of each named kind (kinds not named are
    kept whole); signals are taken in a hash order of their names, so the choice is stable.

    ``files_only``: the caps apply only to pieces added from audio files (``add_files``, names
    ``file/...``); generated signals of a capped kind are kept whole. ``complement``: keep, of the
    capped signals, exactly those the cap leaves out (a disjoint validation bank of the same
    sources); uncapped signals are kept either way."""
    bad = sorted(set(max_minutes) - set(KINDS))
    if bad:
        raise ValueError(f"unknown signal kinds {bad}; allowed: {', '.join(KINDS)}")
    dur = bank.durations_s() / 60.0
    keep: list[int] = []
    for kind in KINDS:
        idx = list(bank.indices(kind))
        if kind not in max_minutes:
            keep += idx
            continue
        if files_only:
            keep += [i for i in idx if not bank.names[i].startswith("file/")]
            idx = [i for i in idx if bank.names[i].startswith("file/")]
        idx.sort(key=lambda i: _name_key(bank.names[i], seed))
        total = 0.0
        for i in idx:
            taken = total + dur[i] <= max_minutes[kind]
            if taken:
                total += dur[i]
            if taken != complement:
                keep.append(i)
    meta = dict(bank.meta)
    meta["limited"] = {"max_minutes": max_minutes, "seed": seed, "files_only": files_only, "complement": complement,
                       "parent_sha256": bank.content_hash}
    return bank.subset(sorted(keep), meta)
