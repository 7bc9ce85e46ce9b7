"""The session directory: its settings (session.json), clips, positions and step records.

It must not train, convert or install; the other steps read and write through it.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_msl.arrays import MicArray, from_dict as array_from_dict
from edge_msl.settings_check import (Settings, SettingError, boolean, integer, invalid, number, optional,
                                     setting)


SESSION_FORMAT = "edge-msl-calibration"
SESSION_VERSION = 1
STEPS = ("build", "finetune", "convert", "validate", "install")
"""What ``all`` runs, in order, from recorded and labelled clips."""


class CalibrationError(RuntimeError):
    """A step cannot run; ``str()`` is one line naming the cause and the fix."""


def _layer_names(key: str, v: Any) -> tuple[str, ...]:
    """A non-empty list of layer names."""
    if isinstance(v, str) or not isinstance(v, (list, tuple)) or not v or not all(
            isinstance(n, str) and n for n in v):
        raise invalid(key, v, "a non-empty list of the model's layer names")
    return tuple(v)


@dataclass(frozen=True)
class CalibrationSettings(Settings):
    """How a session turns clips into a fine-tuned model (stored in session.json)."""

    window_hop_s: float = setting(0.25, number(0.0, 10.0, lo_open=True, noun="seconds"))
    """Hop between windows cut from a clip."""
    min_window_level_db: float = setting(-20.0, number(-120.0, 0.0, noun="dB"))
    """A window is kept when its level is within this of the clip's loudest window (drops pauses)."""
    holdout_fraction: float = setting(0.3, number(0.0, 1.0, hi_open=True))
    """Last part of every training position's clip kept out of training (threshold tuning, the report's
    "recorded positions" rows; the validation itself when no position is held out)."""
    validation_positions: float = setting(0.25, number(0.0, 1.0, hi_open=True))
    """Fraction of the accepted positions held out whole (never trained on): every k-th in azimuth order,
    so each lies between recorded ones. The install decision and the report are made on them, since that
    is what predicts the error at places never recorded. 0, or fewer than 4 positions: clip tails only."""
    symmetry_copies: int = setting(2, integer(0))
    """Turned/mirrored copies of each real single window by the array's own symmetries (its estimated mic
    errors undone first and given back after), so a few recorded directions cover the whole circle;
    real two-source windows are summed from such turned windows too. 0: real windows as recorded only."""
    heldout_clearance_deg: float = setting(5.0, number(0.0, 180.0, noun="degrees"))
    """Turned training windows are kept at least this far from every held-out position's direction, so the
    held-out positions stay as fresh as a place never recorded (the array's symmetry could otherwise turn a
    recorded direction onto one of them)."""
    moving_hop_s: float = setting(0.0625, number(0.0, 10.0, lo_open=True, noun="seconds"))
    """Hop between the windows labelled along a clip of a talker who walks (``record --moving``)."""
    min_moving_windows: int = setting(10, integer(1))
    """A walking clip is accepted when at least this many of its windows could be labelled."""
    decode_threshold: float | None = setting(0.25, optional(number(0.0, 1.0, lo_open=True, hi_open=True)))
    """Decode threshold written into the calibrated model's sidecar (the shipped model's is 0.4): fine-tuning
    makes the activity outputs more confident, and 0.25 keeps recall where it was at every measured position
    count and room (docs/experiments/calibration-generalization.md). None: keep the model's own."""
    tune_threshold: bool = setting(False, boolean)
    """Instead choose the threshold on the recorded positions' held-out tails (the best F1 keeping their
    recall within ``recall_tolerance``); measured noisier than the fixed value: off by default."""
    min_mix_separation_deg: float = setting(30.0, number(0.0, 180.0, noun="degrees"))
    """Two clips are summed into a two-source window only when this far apart."""
    mix_level_db: float = setting(3.0, number(0.0, 40.0, noun="dB"))
    """Each clip of a mixture is scaled by a random gain within +/- this."""
    n_mixtures: int = setting(200, integer(0))
    """Real two-source windows (sums of clips) for training."""
    n_hybrid_mixtures: int = setting(0, integer(0))
    """Two-source training windows summed from a real single window (recorded or turned) and a simulated
    one-source window at another direction (given the estimated mic errors, scaled to the real one's level
    within +/- ``mix_level_db``): the user's room at the recorded directions heard together with talkers
    anywhere. 0: none."""
    n_val_mixtures: int = setting(100, integer(0))
    """Real two-source windows for validation (from the held-out parts)."""
    max_singles: int = setting(200, integer(0))
    """Most real single-source training windows (evenly over positions)."""
    n_simulated: int = setting(400, integer(0))
    """Simulated windows for the user's array, given its estimated mic errors: they keep every direction and
    other rooms covered (so the model does not forget them). Half as many when the mics' errors could not be
    estimated (the simulated mics are then ideal, unlike the user's)."""
    min_confidence: float = setting(0.6, number(0.0, 1.0))
    """Self-labels below this confidence are rejected (fraction of the clip agreeing with the direction)."""
    max_second_peak: float = setting(0.75, number(0.0, 1.0))
    """A clip whose SRP map has a second peak (>= 25 deg away) this high relative to the first is rejected."""
    front_end_iterations: int = setting(6, integer(0))
    """Rounds of estimating each mic's gain/delay/phase error from the labelled clips and self-labelling again
    with it undone (0: nominal geometry only). Needs at least ``min_front_end_positions`` accepted positions."""
    label_max_freq_hz: float = setting(6000.0, number(1000.0, 8000.0, noun="Hz"))
    """Top of the band SRP-PHAT steers over when a clip is labelled again with the mics' estimated errors undone
    (the first, nominal labelling that decides acceptance keeps 300-3500 Hz)."""
    min_front_end_positions: int = setting(6, integer(1))
    """Fewest accepted positions (from different directions) to estimate the mics' errors from."""
    simulate_front_end: bool = setting(True, boolean)
    """Give the simulated windows the estimated mic errors, so they sound like the user's array."""
    epochs: int = setting(6, integer(1))
    """Fine-tuning epochs over the set."""
    batch_size: int = setting(32, integer(1))
    """Fine-tuning batch (real and simulated windows shuffled together)."""
    learning_rate: float = setting(2e-4, number(0.0, 1.0, lo_open=True))
    """Adam learning rate (small: the model is adapted, not retrained)."""
    final_learning_rate: float = setting(1.0, number(0.0, 1.0))
    """The learning rate falls along a half cosine from ``learning_rate`` at the first step to this fraction of it
    at the last one (the last steps' noise damped); 1: constant. Decaying to 0 did not lift the weakest sessions
    (docs/experiments/calibration-generalization.md, round 3)."""
    average_last_epochs: int = setting(0, integer(0))
    """The weights kept are the mean of those at the end of each of the last this many epochs (stochastic weight
    averaging: the noise of the last steps averaged out); 0 or 1: the weights after the last step."""
    weight_interpolation: float = setting(0.9, number(0.0, 1.0, lo_open=True))
    """The weights kept are this mix of the fine-tuned ones and the original ones, ``a * w_ft + (1 - a) * w_0``
    (WiSE-FT). 0.9 keeps recall at places never recorded where the weights as trained (1) lost up to 0.018 of
    it, with the same error cut there (docs/experiments/calibration-generalization.md, round 2)."""
    anchor_decay: float = setting(0.0, number(0.0, 1.0, hi_open=True))
    """After every step, each trained weight is pulled this fraction of the way back to its original value
    (L2-SP, decoupled as AdamW decouples weight decay); 0: not pulled."""
    train_layers: tuple[str, ...] = setting(("conv0", "conv6", "conv7", "dense", "heads"), _layer_names)
    """Layers whose weights are trained; every other layer and all batch-norm statistics are frozen."""
    calib_windows: int = setting(100, integer(1))
    """Windows of the fine-tuning set used for int8 calibration."""
    f1_tolerance: float = setting(0.01, number(0.0, 1.0))
    """Install only when the F1 after is not lower than before minus this (on the held-out positions' and the
    recorded positions' later windows pooled: 2-4 held-out positions alone cannot tell F1 apart this finely)."""
    recall_tolerance: float = setting(0.01, number(0.0, 1.0))
    """Install only when the recall after (pooled as for F1) is not lower than before minus this."""
    error_margin_se: float = setting(1.0, number(0.0, 10.0))
    """The held-out positions' mean DOA error after may exceed the one before by up to this many standard
    errors of the per-position change (its spread over the 2-4 held-out positions), capped at
    ``max_error_margin_deg``: one held-out direction where the model is locally off, or whose self-label is,
    must not decide alone, while a worsening shared by the held-out positions still refuses. 0: strictly lower."""
    max_error_margin_deg: float = setting(0.5, number(0.0, 180.0, noun="degrees"))
    """Cap of that margin: about half the self-labels' typical error (0.7-1.3 deg measured), the finest change
    that held-out positions scored against self-labels resolve; a model worse by more is never installed."""
    seed: int = setting(0, integer(0))
    """Seed of every random choice (mixtures, shuffles)."""

    KEY = "settings.{}"
    TABLE = "calibration settings"


# --------------------------------------------------------------------------- the session


class Session:
    """A calibration session directory: ``session.json`` + ``clips/`` + what each step writes."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.path = self.dir / "session.json"
        if not self.path.exists():
            raise CalibrationError(f"{self.dir}: no session.json; start one with 'edge-msl calibrate record "
                                   f"--session {self.dir} ...'")
        try:
            self.data = json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"{self.path}: not valid JSON ({exc.msg} at line {exc.lineno}); fix or delete "
                                   "it (the clips in clips/ stay usable)") from None
        if self.data.get("format") != SESSION_FORMAT:
            raise CalibrationError(f"{self.path}: not an edge-msl calibration session; use another --session")
        self.array = _array_of(self.data["array"])
        try:
            self.settings = CalibrationSettings.from_dict(self.data.get("settings", {}))
        except SettingError as exc:
            raise CalibrationError(f"{self.path}: {exc}; fix it or start another session") from None

    @classmethod
    def create(cls, directory: str | Path, array: MicArray, sample_rate_hz: int, window_samples: int,
               keras_model: str | Path | None = None, settings: CalibrationSettings | None = None) -> "Session":
        """A new session, or the existing one in ``directory`` (refused if it is for another array)."""
        d = Path(directory)
        if (d / "session.json").exists():
            s = cls(d)
            if not s.array.same_geometry(array):
                raise CalibrationError(f"session {d} was recorded with array {s.array.name!r}, not {array.name!r}; "
                                       "use another --session or the same array")
            return s
        try:
            d.mkdir(parents=True, exist_ok=True)
            # recordings of the room are private: only the owner (root, when calibrate runs as root) reads them
            os.chmod(d, 0o700)
            (d / "clips").mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise CalibrationError(f"cannot create the session directory {d} ({exc.strerror}); pass --session "
                                   "DIR somewhere writable") from None
        data = {"format": SESSION_FORMAT, "version": SESSION_VERSION, "array": array.to_dict(),
                "sample_rate_hz": int(sample_rate_hz), "window_samples": int(window_samples),
                "keras_model": str(keras_model) if keras_model else None,
                "settings": (settings or CalibrationSettings()).to_dict(), "positions": [], "steps": {}}
        _write_json(d / "session.json", data)
        return cls(d)

    @property
    def sample_rate_hz(self) -> int:
        return int(self.data["sample_rate_hz"])

    @property
    def window_samples(self) -> int:
        return int(self.data["window_samples"])

    @property
    def positions(self) -> list[dict[str, Any]]:
        return self.data["positions"]

    def save(self) -> None:
        """Write session.json atomically (an interrupted step leaves the previous one)."""
        _write_json(self.path, self.data)

    def add_clip(self, audio: np.ndarray, azimuth_deg: float | None = None, distance_m: float | None = None,
                 name: str | None = None, moving: bool = False) -> dict[str, Any]:
        """Store one recorded clip (int16, all capture channels) as clips/pos-NN.wav (``moving``: the talker
        walked while speaking; labelled window by window)."""
        if moving and azimuth_deg is not None:
            raise CalibrationError("a clip of a talker who walks has no single direction; drop --azimuth-deg "
                                   "or --moving")
        from edge_msl.audio_io import write_wav

        index = len(self.positions)
        name = name or f"pos-{index:02d}"
        if any(p["name"] == name for p in self.positions):
            raise CalibrationError(f"position {name!r} is already recorded in {self.dir}; choose another --name")
        clip = self.dir / "clips" / f"{name}.wav"
        tmp = clip.with_name(clip.name + ".tmp")
        pos = {"name": name, "clip": f"clips/{name}.wav", "seconds": round(len(audio) / self.sample_rate_hz, 3),
               "entered": {"azimuth_deg": azimuth_deg, "distance_m": distance_m}, "label": None}
        if moving:
            pos["entered"]["moving"] = True
        try:
            write_wav(tmp, audio, self.sample_rate_hz)
            os.chmod(tmp, 0o600)
            os.replace(tmp, clip)
            self.positions.append(pos)
            try:
                self.save()
            except BaseException:
                self.positions.remove(pos)
                clip.unlink(missing_ok=True)
                raise
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise CalibrationError(f"cannot store the clip {clip} ({exc.strerror or exc}); nothing was added to the "
                                   "session" + ("; free some space and record this position again"
                                                if exc.errno == errno.ENOSPC else "")) from None
        finally:
            tmp.unlink(missing_ok=True)
        return pos

    def load_clip(self, pos: dict[str, Any]) -> np.ndarray:
        """(n, n_mics) int16 of a position's clip, the array's channels in mic order."""
        from edge_msl.audio_io import open_audio

        path = self.dir / pos["clip"]
        with open_audio(path) as reader:
            blocks = list(reader.blocks(1 << 16))
            if reader.info.sample_rate_hz != self.sample_rate_hz:
                raise CalibrationError(f"{path}: {reader.info.sample_rate_hz} Hz, the session is at "
                                       f"{self.sample_rate_hz} Hz; record it again")
        frames = np.concatenate(blocks) if blocks else np.zeros((0, self.array.n_channels), np.int16)
        if frames.dtype != np.int16:
            from edge_msl.stream import to_float

            frames = np.clip(np.round(to_float(frames) * 32768.0), -32768, 32767).astype(np.int16)
        return self.array.select_channels(frames)

    def record_step(self, step: str, seconds: float, **info: Any) -> None:
        """Note how long a step took (the report lists them)."""
        self.data["steps"][step] = {"seconds": round(seconds, 2), **info}
        self.save()

    def labelled(self) -> list[dict[str, Any]]:
        """Fixed positions with an accepted label."""
        return [p for p in self.positions if p.get("label") and p["label"].get("accepted")
                and not p["label"].get("moving")]

    def walks(self) -> list[dict[str, Any]]:
        """Accepted clips of a talker who walked (labelled window by window)."""
        return [p for p in self.positions if p.get("label") and p["label"].get("accepted")
                and p["label"].get("moving")]


def _array_of(desc: dict[str, Any]) -> MicArray:
    """The array a session stored: the built-in one of that name, else the custom description."""
    from edge_msl.arrays import get_array, list_arrays

    if desc.get("name") in list_arrays():
        return get_array(desc["name"])
    return array_from_dict({k: v for k, v in desc.items() if k in ("name", "positions_m", "channel_map",
                                                                    "n_channels")})


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # after an error (a full disk): no half-written leftover
