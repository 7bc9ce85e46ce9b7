"""The bank's format: mono dry signals with names and kinds, stored as 8-bit mu-law in one .npz
(``DryBank``: save, load with its content hash checked, excerpts for the simulator); it builds nothing."""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from train_tf.bank.levels import FRAME_S, _frame_power, _power_db, _unit_rms

KINDS = ("speech_synth", "speech_real", "noise", "music")
"""Kinds of signal a bank holds."""

SPEECH_KINDS = ("speech_synth", "speech_real")
MU = 255
REBUILD_HINT = "python -m train_tf.signals build --out {path}"
FORMAT_VERSION = 1

# --------------------------------------------------------------------------- the bank

def _mulaw_encode(y: np.ndarray) -> np.ndarray:
    y = np.clip(y, -1.0, 1.0)
    f = np.sign(y) * np.log1p(MU * np.abs(y)) / math.log1p(MU)
    return np.round((f + 1.0) * 127.5).astype(np.uint8)


_MULAW_TABLE = (lambda f: (np.sign(f) * np.expm1(np.abs(f) * math.log1p(MU)) / MU).astype(np.float32))(
    np.arange(256, dtype=np.float64) / 127.5 - 1.0)


def _mulaw_decode(q: np.ndarray) -> np.ndarray:
    return _MULAW_TABLE[q]


@dataclass(frozen=True)
class _Encoded:
    codes: np.ndarray
    offsets: np.ndarray
    gains: np.ndarray


def _hash_encoded(enc: _Encoded, names: Sequence[str], kinds: Sequence[str], sample_rate_hz: int) -> str:
    h = hashlib.sha256()
    h.update(f"edge-msl dry bank v{FORMAT_VERSION} {int(sample_rate_hz)}\n".encode())
    h.update(np.ascontiguousarray(enc.codes, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(enc.offsets, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(enc.gains, dtype="<f4").tobytes())
    h.update("\n".join(names).encode("utf-8") + b"\0" + "\n".join(kinds).encode("utf-8"))
    return h.hexdigest()


class DryBank:
    """Mono float32 dry signals with names and kinds, stored as 8-bit mu-law.

    Treat it as immutable: the content hash and the stored form are computed once.
    """

    def __init__(self, signals: Sequence[np.ndarray], names: Sequence[str], kinds: Sequence[str],
                 sample_rate_hz: int = 16000, meta: dict[str, Any] | None = None) -> None:
        if not (len(signals) == len(names) == len(kinds)):
            raise ValueError(f"signals, names and kinds differ in length: {len(signals)}, {len(names)}, {len(kinds)}")
        bad = sorted({k for k in kinds if k not in KINDS})
        if bad:
            raise ValueError(f"unknown signal kinds {bad}; allowed: {', '.join(KINDS)}")
        sigs = []
        for name, x in zip(names, signals):
            x = np.asarray(x, dtype=np.float32)
            if x.ndim != 1 or len(x) == 0:
                raise ValueError(f"signal {name!r} must be a non-empty 1-D array, got shape {x.shape}")
            sigs.append(x)
        self.signals: tuple[np.ndarray, ...] = tuple(sigs)
        self.names: tuple[str, ...] = tuple(str(n) for n in names)
        self.kinds: tuple[str, ...] = tuple(str(k) for k in kinds)
        self.sample_rate_hz = int(sample_rate_hz)
        self.meta: dict[str, Any] = dict(meta or {})
        kinds_arr = np.array(self.kinds, dtype=object)
        self._by_kind = {k: np.flatnonzero(kinds_arr == k).astype(np.int64) for k in KINDS}
        self._all = np.arange(len(self.signals), dtype=np.int64)
        self._encoded: _Encoded | None = None
        self._hash: str | None = None
        self._peak_db: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self.signals)

    # ---- storage
    def _encode(self) -> _Encoded:
        if self._encoded is None:
            offsets = np.zeros(len(self.signals) + 1, dtype=np.int64)
            offsets[1:] = np.cumsum([len(x) for x in self.signals])
            codes = np.empty(int(offsets[-1]), dtype=np.uint8)
            gains = np.ones(len(self.signals), dtype=np.float32)
            for i, x in enumerate(self.signals):
                peak = float(np.max(np.abs(x)))
                if peak > 0:
                    gains[i] = np.float32(peak / 0.99)
                codes[offsets[i]:offsets[i + 1]] = _mulaw_encode(x / gains[i])
            self._encoded = _Encoded(codes, offsets, gains)
        return self._encoded

    @property
    def content_hash(self) -> str:
        """sha256 of the stored (mu-law) form: equal for a bank and its saved-and-loaded copy."""
        if self._hash is None:
            self._hash = _hash_encoded(self._encode(), self.names, self.kinds, self.sample_rate_hz)
        return self._hash

    def durations_s(self) -> np.ndarray:
        """Duration of each signal in seconds."""
        return np.array([len(x) for x in self.signals], dtype=np.float64) / self.sample_rate_hz

    def summary(self) -> dict[str, dict[str, float]]:
        """Count and minutes per kind, plus a "total" entry."""
        dur = self.durations_s()
        out: dict[str, dict[str, float]] = {}
        for k in KINDS:
            idx = self._by_kind[k]
            out[k] = {"count": int(len(idx)), "minutes": round(float(dur[idx].sum()) / 60.0, 3)}
        out["total"] = {"count": len(self), "minutes": round(float(dur.sum()) / 60.0, 3)}
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the bank to one .npz file, atomically (temporary file, then rename)."""
        path = Path(path)
        enc = self._encode()
        summary = self.summary()
        meta = dict(self.meta)
        meta.update({
            "format_version": FORMAT_VERSION,
            "sample_rate_hz": self.sample_rate_hz,
            "n_signals": len(self),
            "counts": {k: summary[k]["count"] for k in KINDS},
            "duration_s": {k: round(summary[k]["minutes"] * 60.0, 3) for k in KINDS},
            "content_sha256": self.content_hash,
            "encoding": "mu-law 8 bit (mu=255), per-signal peak 0.99, gains restore the level",
        })
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, codes=enc.codes, offsets=enc.offsets, gains=enc.gains,
                         names=np.array(self.names, dtype=str), kinds=np.array(self.kinds, dtype=str),
                         sample_rate_hz=np.array(self.sample_rate_hz, dtype=np.int64),
                         meta_json=np.array(json.dumps(meta, sort_keys=True)))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        self.meta = meta
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "DryBank":
        """Read a bank written by ``save``; a missing or corrupt file is a one-line error with the fix."""
        path = Path(path)
        hint = REBUILD_HINT.format(path=path)
        if not path.is_file():
            raise FileNotFoundError(f"dry-signal bank {path} not found; build it with: {hint}")
        try:
            with np.load(path, allow_pickle=False) as z:
                codes = np.asarray(z["codes"], dtype=np.uint8)
                offsets = np.asarray(z["offsets"], dtype=np.int64)
                gains = np.asarray(z["gains"], dtype=np.float32)
                names = [str(s) for s in z["names"]]
                kinds = [str(s) for s in z["kinds"]]
                sr = int(z["sample_rate_hz"])
                meta = json.loads(str(z["meta_json"][()]))
            n = len(names)
            if not (len(kinds) == n == len(gains) == len(offsets) - 1) or offsets[0] != 0 \
                    or offsets[-1] != len(codes) or np.any(np.diff(offsets) <= 0):
                raise ValueError("inconsistent offsets/names/kinds")
            enc = _Encoded(codes, offsets, gains)
            digest = _hash_encoded(enc, names, kinds, sr)
            if digest != meta.get("content_sha256"):
                raise ValueError("content hash does not match")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as e:
            raise ValueError(f"dry-signal bank {path} is corrupt or not a bank ({e}); rebuild it with: {hint}") from e
        audio = _mulaw_decode(codes)
        signals = []
        for i in range(n):
            x = audio[offsets[i]:offsets[i + 1]]
            x *= gains[i]
            signals.append(x)
        bank = cls(signals, names, kinds, sr, meta)
        bank._encoded = enc
        bank._hash = digest
        return bank

    def subset(self, indices: Sequence[int], meta: dict[str, Any] | None = None) -> "DryBank":
        """A new bank holding the signals at ``indices`` (in that order)."""
        idx = [int(i) for i in indices]
        return DryBank([self.signals[i] for i in idx], [self.names[i] for i in idx], [self.kinds[i] for i in idx],
                       self.sample_rate_hz, meta if meta is not None else dict(self.meta))

    # ---- sampling
    def indices(self, kind: str | None = None) -> np.ndarray:
        """Indices of all signals, or of those of one kind."""
        if kind is None:
            return self._all
        if kind not in self._by_kind:
            raise ValueError(f"unknown signal kind {kind!r}; allowed: {', '.join(KINDS)}")
        return self._by_kind[kind]

    def pick(self, rng: np.random.Generator, kinds_weights: dict[str, float]) -> int:
        """A kind by weight (kinds the bank lacks are left out), then one of its signals uniformly."""
        for k, w in kinds_weights.items():
            if k not in KINDS:
                raise ValueError(f"unknown signal kind {k!r} in weights; allowed: {', '.join(KINDS)}")
            if not w >= 0:
                raise ValueError(f"weight of {k!r} must be >= 0, got {w!r}")
        kinds = [k for k, w in kinds_weights.items() if w > 0 and len(self._by_kind[k])]
        if not kinds:
            raise ValueError(f"the bank has no signal of the kinds weighted {dict(kinds_weights)}")
        w = np.array([kinds_weights[k] for k in kinds], dtype=np.float64)
        kind = kinds[int(rng.choice(len(kinds), p=w / w.sum()))]
        return int(rng.choice(self._by_kind[kind]))

    def _signal_peak_db(self, index: int) -> float:
        if index not in self._peak_db:
            frame = int(round(FRAME_S * self.sample_rate_hz))
            self._peak_db[index] = float(_power_db(_frame_power(self.signals[index], frame)).max())
        return self._peak_db[index]

    def _activity(self, x: np.ndarray, peak_db: float) -> float:
        frame = min(int(round(FRAME_S * self.sample_rate_hz)), len(x))
        n_frames = len(x) // frame
        power = np.mean(x[: n_frames * frame].astype(np.float64).reshape(n_frames, frame) ** 2, axis=1)
        return float(np.mean(_power_db(power) >= peak_db - 30.0))

    def segment(self, index: int, n_samples: int, rng: np.random.Generator, n_tries: int = 4) -> np.ndarray:
        """A random excerpt of ``n_samples`` from signal ``index``, float32 with unit RMS.

        Shorter signals are tiled from a random start with short crossfades. For speech and
        music, the most active of ``n_tries`` random offsets is kept (most 20 ms frames within
        30 dB of the signal's loudest frame).
        """
        x = self.signals[index]
        n = int(n_samples)
        if n <= 0:
            return np.zeros(0, dtype=np.float32)
        length = len(x)
        if length >= n:
            tries = n_tries if self.kinds[index] != "noise" else 1
            offsets = rng.integers(0, length - n + 1, size=max(1, tries))
            if len(offsets) > 1:
                peak_db = self._signal_peak_db(index)
                scores = [self._activity(x[o:o + n], peak_db) for o in offsets]
                best = int(offsets[int(np.argmax(scores))])
            else:
                best = int(offsets[0])
            return _unit_rms(x[best:best + n])
        return _unit_rms(_tile(x, n, int(rng.integers(0, length)), int(0.01 * self.sample_rate_hz)))


def _tile(x: np.ndarray, n: int, start: int, xfade: int) -> np.ndarray:
    """``x`` repeated from ``start`` until ``n`` samples, joined with equal-power crossfades."""
    c = min(xfade, len(x) // 4)
    out = np.zeros(n + len(x), dtype=np.float32)
    first = x[start:]
    out[: len(first)] = first
    pos = len(first)
    if c > 0:
        ramp = np.sin(0.5 * np.pi * (np.arange(c) + 0.5) / c).astype(np.float32)
    while pos < n:
        if c > 0 and pos >= c:
            out[pos - c:pos] = out[pos - c:pos] * ramp[::-1] + x[:c] * ramp
            out[pos:pos + len(x) - c] = x[c:]
            pos += len(x) - c
        else:
            out[pos:pos + len(x)] = x
            pos += len(x)
    return out[:n]
