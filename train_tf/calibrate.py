"""On-device calibration: fine-tune the float model to the user's own room and array, re-convert, install.

One resumable session directory: ``record`` clips through the daemon's ALSA capture, ``label`` each
(SRP-PHAT over the whole clip, or an entered direction), ``build`` real, summed and simulated windows,
``finetune`` the Keras model, ``convert`` to int8, ``validate`` before/after on held-out real windows,
``install`` into the daemon's state directory, ``report``. Needs TensorFlow (edge-msl[train]); it must
never install a model that validates worse than the running one.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge_msl.arrays import SPEED_OF_SOUND_M_S, MicArray, from_dict as array_from_dict
from edge_msl.regions import AZIMUTH, DISTANCE, RegionLayout, angular_distance_deg, encode_batch

log = logging.getLogger("train_tf.calibrate")

SESSION_FORMAT = "edge-msl-calibration"
SESSION_VERSION = 1
DEFAULT_STATE_DIR = Path("/var/lib/edge-msl")
"""The daemon's state directory (systemd ``StateDirectory=edge-msl``)."""
STEPS = ("build", "finetune", "convert", "validate", "install")
"""What ``all`` runs, in order, from recorded and labelled clips."""


class CalibrationError(RuntimeError):
    """A step cannot run; ``str()`` is one line naming the cause and the fix."""


@dataclass(frozen=True)
class CalibrationSettings:
    """How a session turns clips into a fine-tuned model (stored in session.json)."""

    window_hop_s: float = 0.25
    """Hop between windows cut from a clip."""
    min_window_level_db: float = -20.0
    """A window is kept when its level is within this of the clip's loudest window (drops pauses)."""
    holdout_fraction: float = 0.3
    """Last part of every training position's clip kept out of training (threshold tuning, the report's
    "recorded positions" rows; the validation itself when no position is held out)."""
    validation_positions: float = 0.25
    """Fraction of the accepted positions held out whole (never trained on): every k-th in azimuth order,
    so each lies between recorded ones. The install decision and the report are made on them, since that
    is what predicts the error at places never recorded. 0, or fewer than 4 positions: clip tails only."""
    symmetry_copies: int = 2
    """Turned/mirrored copies of each real single window by the array's own symmetries (its estimated mic
    errors undone first and given back after), so a few recorded directions cover the whole circle;
    real two-source windows are summed from such turned windows too. 0: real windows as recorded only."""
    heldout_clearance_deg: float = 5.0
    """Turned training windows are kept at least this far from every held-out position's direction, so the
    held-out positions stay as fresh as a place never recorded (the array's symmetry could otherwise turn a
    recorded direction onto one of them)."""
    moving_hop_s: float = 0.0625
    """Hop between the windows labelled along a clip of a talker who walks (``record --moving``)."""
    min_moving_windows: int = 10
    """A walking clip is accepted when at least this many of its windows could be labelled."""
    decode_threshold: float | None = 0.25
    """Decode threshold written into the calibrated model's sidecar (the shipped model's is 0.4): fine-tuning
    makes the activity outputs more confident, and 0.25 keeps recall where it was at every measured position
    count and room (docs/experiments/calibration-generalization.md). None: keep the model's own."""
    tune_threshold: bool = False
    """Instead choose the threshold on the recorded positions' held-out tails (the best F1 keeping their
    recall within ``recall_tolerance``); measured noisier than the fixed value: off by default."""
    min_mix_separation_deg: float = 30.0
    """Two clips are summed into a two-source window only when this far apart."""
    mix_level_db: float = 3.0
    """Each clip of a mixture is scaled by a random gain within +/- this."""
    n_mixtures: int = 200
    """Real two-source windows (sums of clips) for training."""
    n_val_mixtures: int = 100
    """Real two-source windows for validation (from the held-out parts)."""
    max_singles: int = 200
    """Most real single-source training windows (evenly over positions)."""
    n_simulated: int = 400
    """Simulated windows for the user's array, given its estimated mic errors: they keep every direction and
    other rooms covered (so the model does not forget them). Half as many when the mics' errors could not be
    estimated (the simulated mics are then ideal, unlike the user's)."""
    min_confidence: float = 0.6
    """Self-labels below this confidence are rejected (fraction of the clip agreeing with the direction)."""
    max_second_peak: float = 0.75
    """A clip whose SRP map has a second peak (>= 25 deg away) this high relative to the first is rejected."""
    front_end_iterations: int = 3
    """Rounds of estimating each mic's gain/delay/phase error from the labelled clips and self-labelling again
    with it undone (0: nominal geometry only). Needs at least ``min_front_end_positions`` accepted positions."""
    min_front_end_positions: int = 6
    """Fewest accepted positions (from different directions) to estimate the mics' errors from."""
    simulate_front_end: bool = True
    """Give the simulated windows the estimated mic errors, so they sound like the user's array."""
    epochs: int = 6
    """Fine-tuning epochs over the set."""
    batch_size: int = 32
    """Fine-tuning batch (real and simulated windows shuffled together)."""
    learning_rate: float = 2e-4
    """Adam learning rate (small: the model is adapted, not retrained)."""
    train_layers: tuple[str, ...] = ("conv0", "conv6", "conv7", "dense", "heads")
    """Layers whose weights are trained; every other layer and all batch-norm statistics are frozen."""
    calib_windows: int = 100
    """Windows of the fine-tuning set used for int8 calibration."""
    f1_tolerance: float = 0.01
    """Install only when the F1 after is not lower than before minus this (a validation of 2-4 held-out
    positions cannot tell F1 apart more finely)."""
    recall_tolerance: float = 0.01
    """Install only when the recall after is not lower than before minus this."""
    seed: int = 0
    """Seed of every random choice (mixtures, shuffles)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "CalibrationSettings":
        """Settings from :meth:`to_dict`; unknown keys are refused with the allowed ones."""
        from edge_msl.settings_check import reject_unknown_keys

        reject_unknown_keys(cls, cfg, "calibration setting")
        cfg = dict(cfg)
        if "train_layers" in cfg:
            cfg["train_layers"] = tuple(cfg["train_layers"])
        return cls(**cfg)


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
        self.settings = CalibrationSettings.from_dict(self.data.get("settings", {}))

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


# --------------------------------------------------------------------------- record


def record_clip(device, array: MicArray, seconds: float, sample_rate_hz: int, capture_rate_hz: int | None = None,
                stop=None) -> np.ndarray:
    """``seconds`` of audio from the daemon's capture path (``edge_msl.capture``), all capture channels, int16
    at ``sample_rate_hz`` (resampled like the daemon does when the device runs at another rate)."""
    from edge_msl.capture import Capture
    from edge_msl.stream import Resampler, to_float

    rate = capture_rate_hz or device.rate_hz or sample_rate_hz
    cap = Capture(device, rate_hz=rate, n_channels=array.n_channels, stop=stop)
    want = int(round(seconds * rate))
    got: list[np.ndarray] = []
    n = 0
    try:
        while n < want:
            frames = cap.read()
            if frames is None:
                if cap.stop.is_set():
                    raise CalibrationError("recording stopped before the clip was complete; record it again")
                # the device was lost mid-clip: a clip must be one continuous take
                got, n = [], 0
                log.warning("capture restarted; recording the clip again from the start")
                continue
            got.append(frames)
            n += len(frames)
    finally:
        cap.close()
    audio = np.concatenate(got)[:want]
    if audio.dtype == np.int32:
        audio = np.clip(np.round(to_float(audio) * 32768.0), -32768, 32767).astype(np.int16)
    if rate != sample_rate_hz:
        r = Resampler(rate, sample_rate_hz, array.n_channels)
        audio = np.clip(np.round(r.process(to_float(audio)) * 32768.0), -32768, 32767).astype(np.int16)
    return audio


# --------------------------------------------------------------------------- label (SRP-PHAT)


@dataclass(frozen=True)
class SrpLabel:
    """A clip's single-source direction by SRP-PHAT and how much to trust it."""

    azimuth_deg: float
    """Direction of the SRP peak over the whole clip."""
    confidence: float
    """Fraction of the clip's active blocks whose own peak is within 10 deg of it."""
    second_peak: float
    """Height of the strongest other peak (>= 25 deg away) relative to the main one (0..1)."""
    active_blocks: int
    """Blocks of the clip loud enough to vote."""


def srp_phat_map(audio: np.ndarray, mic_xyz: np.ndarray, sample_rate_hz: int, nfft: int = 512,
                 freq_range_hz: tuple[float, float] = (300.0, 3500.0), block_frames: int = 8,
                 grid_deg: float = 1.0, front_end: "FrontEnd | None" = None, per_block: bool = True,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid deg, whole-clip map (G,), per-block maps (B, G)) of far-field in-plane SRP-PHAT.

    Blocks of ``block_frames`` STFT frames whose energy is in the top 70 % are the active ones;
    each frame's spectrum is PHAT-whitened, so every active frame votes with the same weight.
    ``front_end``: per-mic delay/phase errors undone before steering (gains do not matter after PHAT).
    ``per_block=False``: only the whole-clip map (blocks summed first, many times faster); per-block maps (1, G)."""
    x = np.asarray(audio, dtype=np.float64)
    hop = nfft // 2
    n_frames = (len(x) - nfft) // hop + 1
    if n_frames < block_frames:
        raise CalibrationError(f"clip of {len(x)} samples is too short for SRP-PHAT; record at least "
                               f"{(block_frames + 1) * hop / sample_rate_hz:.1f} s")
    win = np.hanning(nfft)
    idx = np.arange(nfft)[None, :] + hop * np.arange(n_frames)[:, None]
    spec = np.fft.rfft(x[idx] * win[None, :, None], axis=1)  # (T, F, M)
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate_hz)
    band = (freqs >= freq_range_hz[0]) & (freqs <= freq_range_hz[1])
    spec, freqs = spec[:, band], freqs[band]
    if front_end is not None:
        spec = spec / front_end.response(freqs)[None]
    energy = np.sum(np.abs(spec) ** 2, axis=(1, 2))
    white = spec / (np.abs(spec) + 1e-12)
    n_blocks = n_frames // block_frames
    white = white[:n_blocks * block_frames].reshape(n_blocks, block_frames, len(freqs), -1)
    block_energy = energy[:n_blocks * block_frames].reshape(n_blocks, block_frames).sum(axis=1)
    active = block_energy >= np.quantile(block_energy, 0.3)
    # cross-spectra per block: R[b, f] = sum_t w w^H
    cov = np.einsum("btfi,btfj->bfij", white[active], np.conj(white[active]))
    if not per_block:
        cov = cov.sum(axis=0, keepdims=True)
    grid = np.arange(0.0, 360.0, grid_deg)
    u = np.stack([np.cos(np.radians(grid)), np.sin(np.radians(grid))], axis=1)  # (G, 2)
    delay = -(u @ mic_xyz[:, :2].T) / SPEED_OF_SOUND_M_S  # (G, M): arrival time of a plane wave from u
    steer = np.exp(2j * np.pi * freqs[None, :, None] * delay[:, None, :])  # (G, F, M)
    blocks = np.real(np.einsum("gfi,bfij,gfj->bg", steer, cov, np.conj(steer)))
    return grid, blocks.sum(axis=0), blocks


def srp_label(audio: np.ndarray, array: MicArray, sample_rate_hz: int, front_end: "FrontEnd | None" = None
              ) -> SrpLabel:
    """Self-label a single-source clip (n, n_mics) with the array's nominal geometry (and ``front_end``'s
    per-mic errors undone, when given)."""
    grid, total, blocks = srp_phat_map(audio, array.positions(), sample_rate_hz, front_end=front_end)
    best = int(np.argmax(total))
    az = float(grid[best])
    block_az = grid[np.argmax(blocks, axis=1)]
    confidence = float(np.mean(angular_distance_deg(block_az, az) <= 10.0))
    floor = float(np.median(total))
    far = angular_distance_deg(grid, az) >= 25.0
    # local maxima away from the main peak
    is_peak = (total >= np.roll(total, 1)) & (total >= np.roll(total, -1)) & far
    second = float(total[is_peak].max()) if is_peak.any() else floor
    ratio = float(np.clip((second - floor) / (total[best] - floor + 1e-12), 0.0, 1.0))
    return SrpLabel(az, confidence, ratio, int(len(blocks)))


@dataclass(frozen=True)
class FrontEnd:
    """Per-microphone errors of the user's array front end (relative to the mean over its mics), as estimated
    from the clips: a real mic's response is ``gain * exp(-j (2 pi f delay + phase))`` times the nominal one."""

    gain_db: tuple[float, ...]
    """Gain of each mic relative to the mean (dB)."""
    delay_s: tuple[float, ...]
    """Time offset of each mic relative to the mean (s; positive = later)."""
    phase_deg: tuple[float, ...]
    """Frequency-independent phase lag of each mic relative to the mean (deg)."""

    @classmethod
    def identity(cls, n_mics: int) -> "FrontEnd":
        return cls((0.0,) * n_mics, (0.0,) * n_mics, (0.0,) * n_mics)

    def to_dict(self) -> dict[str, Any]:
        return {k: [round(float(v), 9) for v in getattr(self, k)] for k in ("gain_db", "delay_s", "phase_deg")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FrontEnd":
        return cls(*(tuple(float(v) for v in d[k]) for k in ("gain_db", "delay_s", "phase_deg")))

    def response(self, freqs_hz: np.ndarray) -> np.ndarray:
        """(F, M) complex response at ``freqs_hz``."""
        f = np.asarray(freqs_hz, dtype=np.float64)[:, None]
        g = 10.0 ** (np.asarray(self.gain_db) / 20.0)
        return g[None, :] * np.exp(-1j * (2 * np.pi * f * np.asarray(self.delay_s)[None, :]
                                          + np.radians(np.asarray(self.phase_deg))[None, :]))

    def apply(self, audio: np.ndarray, sample_rate_hz: int) -> np.ndarray:
        """Windows (..., n, M) as this front end would capture them (int16 in -> int16 out; a circular
        fractional delay per window, fine for delays of a few samples)."""
        x = np.asarray(audio)
        n = x.shape[-2]
        spec = np.fft.rfft(x.astype(np.float64), axis=-2)
        resp = self.response(np.fft.rfftfreq(n, 1.0 / sample_rate_hz))
        resp[0] = np.abs(resp[0])  # DC (and Nyquist) bins of a real signal stay real
        if n % 2 == 0:
            resp[-1] = np.abs(resp[-1])
        y = np.fft.irfft(spec * resp, n=n, axis=-2)
        if np.issubdtype(x.dtype, np.integer):
            return np.clip(np.round(y), -32768, 32767).astype(np.int16)
        return y.astype(x.dtype)


def estimate_front_end(clips: Sequence[np.ndarray], azimuth_deg: Sequence[float], array: MicArray,
                       sample_rate_hz: int, nfft: int = 512, freq_range_hz: tuple[float, float] = (200.0, 5000.0),
                       start: FrontEnd | None = None) -> FrontEnd:
    """Per-mic gain, time offset and phase from single-source clips of known (or self-labelled) direction.

    With the nominal far-field steering of each clip's direction removed, what is left between a mic and
    the array's beam is the mic's own error (plus reverberation and label error, which average out over
    clips from many directions): its phase across frequency gives delay (slope) and phase (intercept),
    its level gives the gain. Everything is relative to the mean over mics, the only thing observable."""
    m = array.n_mics
    xy = array.positions()[:, :2]
    hop = nfft // 2
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate_hz)
    band = (freqs >= freq_range_hz[0]) & (freqs <= freq_range_hz[1])
    f = freqs[band]
    acc = np.zeros((len(f), m), np.complex128)
    log_power = []
    win = np.hanning(nfft)
    for clip, az in zip(clips, azimuth_deg):
        x = np.asarray(clip, dtype=np.float64)
        n_frames = (len(x) - nfft) // hop + 1
        if n_frames < 4:
            continue
        idx = np.arange(nfft)[None, :] + hop * np.arange(n_frames)[:, None]
        spec = np.fft.rfft(x[idx] * win[None, :, None], axis=1)[:, band]  # (T, F, M)
        energy = np.sum(np.abs(spec) ** 2, axis=(1, 2))
        spec = spec[energy >= np.quantile(energy, 0.5)]
        u = np.array([math.cos(math.radians(az)), math.sin(math.radians(az))])
        delay = -(xy @ u) / SPEED_OF_SOUND_M_S
        y = spec * np.exp(2j * np.pi * f[None, :, None] * delay[None, None, :])
        if start is not None:  # refine: what is left after undoing the previous estimate
            y = y / start.response(f)[None]
        beam = np.sum(y / (np.abs(y) + 1e-12), axis=2, keepdims=True)
        cross = y * np.conj(beam)
        acc += np.sum(cross / (np.abs(cross) + 1e-12), axis=0)  # every time-frequency cell votes once
        p = np.mean(np.abs(spec) ** 2, axis=(0, 1))
        log_power.append(10 * np.log10(p + 1e-20))
    if not log_power:
        raise CalibrationError("no clip is long enough to estimate the microphones' errors; record longer clips")
    # phase of each mic against the mean over mics, per frequency
    ref = np.angle(np.sum(acc / (np.abs(acc) + 1e-12), axis=1, keepdims=True))
    psi = np.angle(acc * np.exp(-1j * ref))
    psi -= psi.mean(axis=1, keepdims=True)
    w = np.abs(acc) / len(log_power)
    delays, phases = [], []
    for k in range(m):
        a = np.stack([2 * np.pi * f, np.ones_like(f)], axis=1) * w[:, k:k + 1]
        (d, ph), *_ = np.linalg.lstsq(a, -psi[:, k] * w[:, k], rcond=None)
        delays.append(d)
        phases.append(ph)
    delays = np.array(delays) - np.mean(delays)
    phases = np.array(phases) - np.mean(phases)
    lp = np.mean(log_power, axis=0)
    gain_db = lp - lp.mean()  # 10 log10 of a power is the amplitude gain in dB
    if start is not None:
        delays = delays + np.asarray(start.delay_s)
        phases = phases + np.radians(start.phase_deg)
    return FrontEnd(tuple(gain_db.tolist()), tuple(delays.tolist()), tuple(np.degrees(phases).tolist()))


def label_moving(audio: np.ndarray, array: MicArray, sample_rate_hz: int, window: int, hop: int, *,
                 min_level_db: float = 6.0, min_confidence: float = 0.75, max_second_peak: float = 0.6,
                 block_frames: int = 6, front_end_iterations: int = 3, min_front_end_windows: int = 20,
                 min_front_end_sectors: int = 4,
                 front_end: "FrontEnd | None" = None) -> dict[str, Any]:
    """Self-label short windows along a talker who moves: each ``window`` (every ``hop``) is labelled by
    SRP-PHAT over its own STFT blocks (~0.1 s each) and kept when it is loud (``min_level_db`` over the
    recording's quiet windows), when most of its blocks point the same way (``min_confidence``, within 10 deg:
    one talker, not walking fast across the window) and when no second source stands out (``max_second_peak``).
    With enough kept windows from directions all around (``min_front_end_sectors`` of the eight 45-deg
    sectors; from a narrow arc a mic's error cannot be told from a direction's), the mics' own errors are
    estimated from them (:func:`estimate_front_end`) and the kept windows labelled again with those undone.

    Returns ``start``, ``azimuth_deg`` (kept windows), ``front_end`` (or None) and ``all_*`` per window."""
    x = np.asarray(audio)
    starts = np.arange(0, len(x) - window + 1, hop)
    if len(starts) == 0:
        raise CalibrationError(f"recording of {len(x)} samples is shorter than one window ({window})")
    level = np.array([10 * np.log10(np.mean(x[t:t + window].astype(np.float64) ** 2) + 1e-9) for t in starts])
    loud = level >= np.percentile(level, 10) + min_level_db
    mic_xyz = array.positions()
    az = np.full(len(starts), np.nan)
    conf = np.zeros(len(starts))
    second = np.ones(len(starts))
    for k in np.flatnonzero(loud):
        grid, total, blocks = srp_phat_map(x[starts[k]:starts[k] + window], mic_xyz, sample_rate_hz,
                                           block_frames=block_frames, front_end=front_end)
        best = int(np.argmax(total))
        az[k] = grid[best]
        conf[k] = float(np.mean(angular_distance_deg(grid[np.argmax(blocks, axis=1)], az[k]) <= 10.0))
        floor = float(np.median(total))
        far = angular_distance_deg(grid, az[k]) >= 25.0
        is_peak = (total >= np.roll(total, 1)) & (total >= np.roll(total, -1)) & far
        sec = float(total[is_peak].max()) if is_peak.any() else floor
        second[k] = float(np.clip((sec - floor) / (total[best] - floor + 1e-12), 0.0, 1.0))
    ok = loud & (conf >= min_confidence) & (second <= max_second_peak)
    fe = front_end
    sectors = len(set((np.floor(az[ok] / 45.0) % 8).astype(int).tolist()))
    if (front_end is None and front_end_iterations > 0 and ok.sum() >= min_front_end_windows
            and sectors >= min_front_end_sectors):
        keep = np.flatnonzero(ok)
        wins = [x[starts[k]:starts[k] + window] for k in keep]
        for _ in range(front_end_iterations):
            fe = estimate_front_end(wins, az[keep], array, sample_rate_hz, start=fe)
            for k, w in zip(keep, wins):
                grid, total, _ = srp_phat_map(w, mic_xyz, sample_rate_hz, front_end=fe, per_block=False,
                                              block_frames=block_frames)
                az[k] = grid[int(np.argmax(total))]
    return {"start": starts[ok], "azimuth_deg": az[ok], "level_db": level[ok], "front_end": fe,
            "all_start": starts, "all_azimuth_deg": az, "all_confidence": conf, "all_second_peak": second,
            "ok": ok}


def label_positions(session: Session, *, redo: bool = False) -> list[dict[str, Any]]:
    """Label every clip (entered direction if given, else SRP-PHAT); returns the labels."""
    s = session.settings
    out = []
    for pos in session.positions:
        if pos.get("label") and not redo:
            out.append(pos["label"])
            continue
        entered = pos.get("entered") or {}
        if entered.get("moving"):
            out.append(None)  # labelled below, once the mics' errors are known from the fixed positions
            continue
        if entered.get("azimuth_deg") is not None:
            label = {"azimuth_deg": float(entered["azimuth_deg"]) % 360.0, "distance_m": entered.get("distance_m"),
                     "source": "entered", "confidence": 1.0, "second_peak": None, "accepted": True, "reason": ""}
            try:  # the estimate is still worth showing: a large disagreement means a mistyped angle or a flipped array
                est = srp_label(session.load_clip(pos), session.array, session.sample_rate_hz)
                label["srp_azimuth_deg"] = est.azimuth_deg
            except CalibrationError:
                pass
        else:
            est = srp_label(session.load_clip(pos), session.array, session.sample_rate_hz)
            reasons = []
            if est.confidence < s.min_confidence:
                reasons.append(f"only {est.confidence:.0%} of the clip agrees with {est.azimuth_deg:.0f} deg "
                               f"(min {s.min_confidence:.0%}): moving or intermittent source, or echoes")
            if est.second_peak > s.max_second_peak:
                reasons.append(f"a second source: SRP peak at {est.second_peak:.0%} of the main one "
                               f"(max {s.max_second_peak:.0%})")
            label = {"azimuth_deg": est.azimuth_deg, "distance_m": entered.get("distance_m"), "source": "srp-phat",
                     "confidence": round(est.confidence, 3), "second_peak": round(est.second_peak, 3),
                     "accepted": not reasons, "reason": "; ".join(reasons)}
        pos["label"] = label
        out.append(label)
    _refine_with_front_end(session, redo=redo)
    fe = session_front_end(session)
    for pos in session.positions:
        if not (pos.get("entered") or {}).get("moving") or (pos.get("label") and not redo):
            continue
        hop = max(1, int(round(s.moving_hop_s * session.sample_rate_hz)))
        lab = label_moving(session.load_clip(pos), session.array, session.sample_rate_hz, session.window_samples,
                           hop, front_end=fe, front_end_iterations=0 if fe is not None else 3)
        n = int(len(lab["start"]))
        az = np.radians(lab["azimuth_deg"])
        pos["label"] = {
            "moving": True, "source": "srp-track", "windows": n,
            "azimuth_deg": float(np.degrees(np.arctan2(np.sin(az).sum(), np.cos(az).sum())) % 360.0) if n else 0.0,
            "start": [int(v) for v in lab["start"]], "track_deg": [round(float(v), 2) for v in lab["azimuth_deg"]],
            "confidence": round(n / max(1, len(lab["all_start"])), 3), "second_peak": None,
            "accepted": n >= s.min_moving_windows,
            "reason": "" if n >= s.min_moving_windows else
            f"only {n} windows could be labelled (min {s.min_moving_windows}): too quiet, or several talkers"}
        if fe is None and lab["front_end"] is not None:
            session.data["front_end"] = lab["front_end"].to_dict()
    session.save()
    return [p["label"] for p in session.positions]


def _refine_with_front_end(session: Session, *, redo: bool = False) -> None:
    """Estimate the mics' errors from the accepted clips and self-label again with them undone, a few rounds:
    with the nominal geometry SRP-PHAT is biased by the array's own gain/delay/phase errors."""
    s = session.settings
    accepted = session.labelled()
    if s.front_end_iterations <= 0 or len(accepted) < s.min_front_end_positions:
        session.data.pop("front_end", None)
        return
    if session.data.get("front_end") and not redo and all(p["label"].get("front_end") for p in accepted
                                                          if p["label"]["source"] == "srp-phat"):
        return
    clips = {p["name"]: session.load_clip(p) for p in accepted}
    fe = None
    for _ in range(s.front_end_iterations):
        fe = estimate_front_end([clips[p["name"]] for p in accepted], [p["label"]["azimuth_deg"] for p in accepted],
                                session.array, session.sample_rate_hz, start=fe)
        for p in accepted:
            if p["label"]["source"] != "srp-phat":
                continue
            # only the direction is redone (whole-clip map); acceptance stays with the nominal labelling
            grid, total, _ = srp_phat_map(clips[p["name"]], session.array.positions(), session.sample_rate_hz,
                                          front_end=fe, per_block=False)
            p["label"].setdefault("nominal_azimuth_deg", p["label"]["azimuth_deg"])
            p["label"].update(azimuth_deg=float(grid[int(np.argmax(total))]), front_end=True)
    session.data["front_end"] = fe.to_dict()
    log.info("mic errors estimated from %d clips: delays %s us, phases %s deg, gains %s dB", len(accepted),
             np.round(np.array(fe.delay_s) * 1e6, 1).tolist(), np.round(fe.phase_deg, 1).tolist(),
             np.round(fe.gain_db, 2).tolist())


def session_front_end(session: Session) -> "FrontEnd | None":
    """The mic errors estimated while labelling, if any."""
    d = session.data.get("front_end")
    return FrontEnd.from_dict(d) if d else None


# --------------------------------------------------------------------------- build


def clip_windows(clip: np.ndarray, window: int, hop: int, min_level_db: float) -> np.ndarray:
    """Start samples of the clip's windows loud enough to hold the source."""
    if len(clip) < window:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(0, len(clip) - window + 1, hop)
    level = np.array([10 * np.log10(np.mean(clip[s:s + window].astype(np.float64) ** 2) + 1e-9) for s in starts])
    return starts[level >= level.max() + min_level_db]


def _sum_int16(parts: Sequence[np.ndarray], gains: Sequence[float]) -> np.ndarray:
    acc = np.zeros(parts[0].shape, np.float64)
    for p, g in zip(parts, gains):
        acc += p.astype(np.float64) * g
    return np.clip(np.round(acc), -32768, 32767).astype(np.int16)


def array_symmetries(array: MicArray, tol_m: float = 1e-3) -> list[tuple[float, bool, np.ndarray]]:
    """The array's in-plane symmetries (identity first): ``(turn_deg, mirrored, perm)`` such that a recording
    ``x`` of a source at azimuth ``az`` becomes, as ``x[..., perm]``, a recording of the same room turned (and
    mirrored across the x axis first when ``mirrored``) about the array: a source at ``turn_deg + (-az if
    mirrored else az)``. Distances between source and mics are kept exactly, so echoes come along too."""
    p = array.positions()
    a = np.arctan2(p[:, 1], p[:, 0])
    ref = int(np.argmax(np.hypot(p[:, 0], p[:, 1])))
    out: list[tuple[float, bool, np.ndarray]] = []
    seen: set[tuple[float, bool]] = set()
    for mirrored in (False, True):
        for j in range(len(p)):
            theta = float(a[j] + a[ref] if mirrored else a[j] - a[ref])
            # the mic that hears, before the turn, what mic i hears after it: T^-1 p_i, T = turn o mirror
            c, s = math.cos(-theta), math.sin(-theta)
            q = p.copy()
            q[:, 0], q[:, 1] = c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1]
            if mirrored:
                q[:, 1] = -q[:, 1]
            d = np.linalg.norm(q[:, None, :] - p[None, :, :], axis=2)
            perm = np.argmin(d, axis=1)
            key = (round(math.degrees(theta) % 360.0, 3) % 360.0, mirrored)
            if key in seen or len(set(perm.tolist())) != len(p) or np.any(d[np.arange(len(p)), perm] > tol_m):
                continue
            seen.add(key)
            out.append((key[0], mirrored, perm))
    out.sort(key=lambda t: (t[1], t[0]))
    return out


def turn_azimuth(az: np.ndarray | float, turn_deg: float, mirrored: bool) -> np.ndarray:
    """Azimuths after :func:`array_symmetries`' transform (NaN stays NaN)."""
    az = np.asarray(az, dtype=np.float64)
    return ((-az if mirrored else az) + turn_deg) % 360.0


def turn_windows(audio: np.ndarray, perm: np.ndarray, front_end: "FrontEnd | None", sample_rate_hz: int
                 ) -> np.ndarray:
    """Windows (..., n, M) int16 with their channels permuted by ``perm``; with the mic errors of
    ``front_end`` undone before and given back after, so each physical mic keeps its own error."""
    x = np.asarray(audio)
    if front_end is None:
        return np.ascontiguousarray(x[..., perm])
    n = x.shape[-2]
    spec = np.fft.rfft(x.astype(np.float64), axis=-2)
    resp = front_end.response(np.fft.rfftfreq(n, 1.0 / sample_rate_hz))
    resp[0] = np.abs(resp[0])
    if n % 2 == 0:
        resp[-1] = np.abs(resp[-1])
    y = np.fft.irfft((spec / resp)[..., perm] * resp, n=n, axis=-2)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def heldout_positions(az: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the positions held out whole: about ``fraction`` of them, every k-th in azimuth order
    (each between recorded ones); none with fewer than 4 positions."""
    n = len(az)
    n_out = int(round(fraction * n)) if n >= 4 else 0
    mask = np.zeros(n, bool)
    if n_out <= 0:
        return mask
    order = np.argsort(np.asarray(az) % 360.0, kind="stable")
    mask[order[(np.floor(np.arange(n_out) * n / n_out + n / (2 * n_out))).astype(int) % n]] = True
    return mask


def _empty(window: int, m: int) -> dict[str, np.ndarray]:
    return {"audio": np.zeros((0, window, m), np.int16), "azimuth_deg": np.zeros((0, 2)),
            "distance_m": np.zeros((0, 2)), "position": np.zeros((0, 2), np.int64), "kind": np.zeros(0, "<U7")}


def _singles(clips: dict[int, np.ndarray], starts: dict[int, np.ndarray], az: np.ndarray, dist: np.ndarray,
             per_pos: int, window: int, rng: np.random.Generator) -> dict[str, list]:
    out: dict[str, list] = {"audio": [], "azimuth_deg": [], "distance_m": [], "position": []}
    for i, clip in clips.items():
        st = starts[i]
        pick = st if len(st) <= per_pos else st[np.sort(rng.choice(len(st), per_pos, replace=False))]
        for t in pick:
            out["audio"].append(clip[t:t + window])
            out["azimuth_deg"].append([az[i], np.nan])
            out["distance_m"].append([dist[i], np.nan])
            out["position"].append([i, -1])
    return out


def _pack(parts: dict[str, list], kind: str, window: int, m: int) -> dict[str, np.ndarray]:
    if not parts["audio"]:
        return _empty(window, m)
    return {"audio": np.stack(parts["audio"]), "azimuth_deg": np.array(parts["azimuth_deg"], np.float64),
            "distance_m": np.array(parts["distance_m"], np.float64),
            "position": np.array(parts["position"], np.int64), "kind": np.array([kind] * len(parts["audio"]))}


def _cat(*sets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([s[k] for s in sets]) for k in sets[0]}


def _turned_mixtures(clips: dict[int, np.ndarray], starts: dict[int, np.ndarray], az: np.ndarray, dist: np.ndarray,
                     n: int, window: int, min_sep_deg: float, level_db: float, rng: np.random.Generator,
                     syms: list, front_end: "FrontEnd | None", fs: int, need: set[int] | None = None,
                     avoid: Callable[[float], bool] = lambda a: False) -> dict[str, list]:
    """``n`` sums of two windows of different positions, each turned by a random symmetry of ``syms``
    (identity only: as recorded), kept when ``min_sep_deg`` apart after turning; with ``need``, one of the
    two positions is always from ``need``."""
    out: dict[str, list] = {"audio": [], "azimuth_deg": [], "distance_m": [], "position": []}
    keys = [i for i in clips if len(starts[i])]
    first = [i for i in keys if need is None or i in need]
    if n <= 0 or len(keys) < 2 or not first:
        return out
    for _ in range(50 * n):
        if len(out["audio"]) >= n:
            break
        i = first[int(rng.integers(len(first)))]
        j = keys[int(rng.integers(len(keys)))]
        if i == j:
            continue
        ti, tj = (syms[int(rng.integers(len(syms)))] for _ in range(2))
        ai, aj = float(turn_azimuth(az[i], ti[0], ti[1])), float(turn_azimuth(az[j], tj[0], tj[1]))
        if angular_distance_deg(ai, aj) < min_sep_deg or avoid(ai) or avoid(aj):
            continue
        parts = []
        for k, (turn, mirrored, perm) in ((i, ti), (j, tj)):
            w = clips[k][int(rng.choice(starts[k])):][:window]
            parts.append(w if turn == 0.0 and not mirrored else turn_windows(w, perm, front_end, fs))
        g = 10.0 ** (rng.uniform(-level_db, level_db, 2) / 20.0)
        out["audio"].append(_sum_int16(parts, g))
        out["azimuth_deg"].append([ai, aj])
        out["distance_m"].append([dist[i], dist[j]])
        out["position"].append([i, j])
    return out


def moving_windows(audio: np.ndarray, labels: dict[str, Any], window: int, sample_rate_hz: int, syms: list,
                   front_end: "FrontEnd | None", *, max_singles: int, copies: int, n_mixtures: int,
                   min_sep_deg: float, min_gap_s: float, level_db: float, rng: np.random.Generator,
                   ) -> dict[str, np.ndarray]:
    """Training windows from a recording self-labelled along a moving talker (:func:`label_moving`): the
    labelled windows, ``copies`` turned copies of each (``syms`` of :func:`array_symmetries`), and sums of two
    labelled windows ``min_gap_s`` apart in time, each turned at random, ``min_sep_deg`` apart after turning."""
    starts, az = np.asarray(labels["start"]), np.asarray(labels["azimuth_deg"], dtype=np.float64)
    m = audio.shape[1]
    if len(starts) > max_singles:
        keep = np.sort(rng.choice(len(starts), max_singles, replace=False))
        pick_s, pick_a = starts[keep], az[keep]
    else:
        pick_s, pick_a = starts, az
    parts: dict[str, list] = {"audio": [], "azimuth_deg": [], "distance_m": [], "position": []}
    for t, a in zip(pick_s, pick_a):
        w = audio[t:t + window]
        variants = [syms[0]] + [syms[int(k)] for k in rng.choice(np.arange(1, len(syms)), min(copies, len(syms) - 1),
                                                                  replace=False)] if len(syms) > 1 else [syms[0]]
        for turn, mirrored, perm in variants:
            parts["audio"].append(w if turn == 0.0 and not mirrored else turn_windows(w, perm, front_end,
                                                                                    sample_rate_hz))
            parts["azimuth_deg"].append([float(turn_azimuth(a, turn, mirrored)), np.nan])
            parts["distance_m"].append([np.nan, np.nan])
            parts["position"].append([-1, -1])
    single = _pack(parts, "single", window, m)
    mix: dict[str, list] = {"audio": [], "azimuth_deg": [], "distance_m": [], "position": []}
    for _ in range(50 * n_mixtures):
        if len(mix["audio"]) >= n_mixtures or len(starts) < 2:
            break
        i, j = rng.choice(len(starts), 2, replace=False)
        if abs(int(starts[i]) - int(starts[j])) < min_gap_s * sample_rate_hz:
            continue
        ti, tj = (syms[int(rng.integers(len(syms)))] for _ in range(2))
        ai, aj = float(turn_azimuth(az[i], ti[0], ti[1])), float(turn_azimuth(az[j], tj[0], tj[1]))
        if angular_distance_deg(ai, aj) < min_sep_deg:
            continue
        ws = [audio[starts[k]:starts[k] + window] for k in (i, j)]
        ws = [w if t[0] == 0.0 and not t[1] else turn_windows(w, t[2], front_end, sample_rate_hz)
              for w, t in zip(ws, (ti, tj))]
        mix["audio"].append(_sum_int16(ws, 10.0 ** (rng.uniform(-level_db, level_db, 2) / 20.0)))
        mix["azimuth_deg"].append([ai, aj])
        mix["distance_m"].append([np.nan, np.nan])
        mix["position"].append([-1, -1])
    return _cat(single, _pack(mix, "mixture", window, m))


def build_set(session: Session, *, sim_data: str | Path | None = None, bank: str | Path | None = None,
              workers: int = 1) -> dict[str, Any]:
    """Write ``set.npz``: real training windows (recorded and turned by the array's symmetries), validation
    windows of the positions held out whole (``val_*``), the recorded positions' held-out tails (``tune_*``)
    and simulated windows (``sim_*``)."""
    s = session.settings
    rng = np.random.default_rng(s.seed)
    positions = session.labelled()
    walks = session.walks()
    if len(positions) < 2 and not walks:
        raise CalibrationError(f"{len(positions)} labelled position(s) in {session.dir}; record at least 2 (better "
                               "8 or more, all around the array) or a walk (--moving), then run 'edge-msl "
                               "calibrate label'")
    window, m, fs = session.window_samples, session.array.n_mics, session.sample_rate_hz
    hop = max(1, int(round(s.window_hop_s * fs)))
    az = np.array([p["label"]["azimuth_deg"] for p in positions], dtype=np.float64)
    dist = np.array([np.nan if p["label"].get("distance_m") is None else p["label"]["distance_m"]
                     for p in positions], dtype=np.float64)
    out_mask = heldout_positions(az, s.validation_positions)
    train_clips, train_starts, tail_clips, tail_starts, val_clips, val_starts = {}, {}, {}, {}, {}, {}
    for i, pos in enumerate(positions):
        clip = session.load_clip(pos)
        if out_mask[i]:
            val_clips[i], val_starts[i] = clip, clip_windows(clip, window, hop, s.min_window_level_db)
            continue
        cut = int(len(clip) * (1.0 - s.holdout_fraction))
        train_clips[i], tail_clips[i] = clip[:cut], clip[cut:]
        train_starts[i] = clip_windows(clip[:cut], window, hop, s.min_window_level_db)
        tail_starts[i] = clip_windows(clip[cut:], window, hop, s.min_window_level_db)
    fe = session_front_end(session)
    syms = array_symmetries(session.array) if s.symmetry_copies > 0 else []
    syms = syms or [(0.0, False, np.arange(m))]
    held_az = az[out_mask]

    def avoid(a: float) -> bool:  # a turned direction on top of a held-out position would make it not fresh
        return bool(len(held_az)) and float(np.min(angular_distance_deg(held_az, a))) < s.heldout_clearance_deg

    # training: recorded singles, their turned copies, sums of turned windows of two positions
    single = _singles(train_clips, train_starts, az, dist, max(1, s.max_singles // max(1, len(train_clips))),
                      window, rng)
    train = [_pack(single, "single", window, m)]
    if len(syms) > 1:
        turned: dict[str, list] = {"audio": [], "azimuth_deg": [], "distance_m": [], "position": []}
        for w, (a, _), (d, _), (i, _) in zip(single["audio"], single["azimuth_deg"], single["distance_m"],
                                               single["position"]):
            ok = [k for k in range(1, len(syms)) if not avoid(float(turn_azimuth(a, syms[k][0], syms[k][1])))]
            for k in rng.choice(ok, min(s.symmetry_copies, len(ok)), replace=False) if ok else []:
                turn, mirrored, perm = syms[int(k)]
                turned["audio"].append(turn_windows(w, perm, fe, fs))
                turned["azimuth_deg"].append([float(turn_azimuth(a, turn, mirrored)), np.nan])
                turned["distance_m"].append([d, np.nan])
                turned["position"].append([i, -1])
        train.append(_pack(turned, "single", window, m))
    train.append(_pack(_turned_mixtures(train_clips, train_starts, az, dist, s.n_mixtures, window,
                                        s.min_mix_separation_deg, s.mix_level_db, rng, syms, fe, fs, avoid=avoid),
                       "mixture", window, m))
    ident = [(0.0, False, np.arange(m))]
    # the recorded positions' tails: threshold tuning and the report's "recorded positions" rows
    tail_single = _singles(tail_clips, tail_starts, az, dist, 10 ** 6, window, rng)
    tune = _cat(_pack(tail_single, "single", window, m),
                _pack(_turned_mixtures(tail_clips, tail_starts, az, dist, s.n_val_mixtures, window,
                                       s.min_mix_separation_deg, s.mix_level_db, rng, ident, None, fs),
                      "mixture", window, m))
    for walk in walks:
        # a talker who walked: windows labelled along the walk; its last part like a recorded position's tail
        clip, lb = session.load_clip(walk), walk["label"]
        cut = int(len(clip) * (1.0 - s.holdout_fraction))
        st, tr = np.asarray(lb["start"], np.int64), np.asarray(lb["track_deg"], np.float64)
        early, late = st + window <= cut, st >= cut
        share = max(1, s.max_singles // max(1, len(walks)))
        train.append(moving_windows(clip, {"start": st[early], "azimuth_deg": tr[early]}, window, fs, syms, fe,
                                    max_singles=share, copies=s.symmetry_copies, min_sep_deg=s.min_mix_separation_deg,
                                    n_mixtures=s.n_mixtures // max(1, len(walks) + bool(train_clips)), min_gap_s=2.0,
                                    level_db=s.mix_level_db, rng=rng))
        tune = _cat(tune, moving_windows(clip, {"start": st[late], "azimuth_deg": tr[late]}, window, fs, ident,
                                         None, max_singles=10 ** 6, copies=0, n_mixtures=s.n_val_mixtures // 2,
                                         min_sep_deg=s.min_mix_separation_deg, min_gap_s=2.0, level_db=s.mix_level_db,
                                         rng=rng))
    if out_mask.any():
        # validation: every window of the held-out positions, and sums of two of them (a recorded position's
        # direction in a sum, even from a tail never trained on, flatters the model: it learnt that direction);
        # with one held-out position, or none 30 deg apart, sums with a recorded position's tail
        pairs_ok = any(angular_distance_deg(az[i], az[j]) >= s.min_mix_separation_deg
                       for i in val_clips for j in val_clips if i < j)
        both = dict(val_clips) if pairs_ok else {**tail_clips, **val_clips}
        both_starts = dict(val_starts) if pairs_ok else {**tail_starts, **val_starts}
        val = _cat(_pack(_singles(val_clips, val_starts, az, dist, 10 ** 6, window, rng), "single", window, m),
                   _pack(_turned_mixtures(both, both_starts, az, dist, s.n_val_mixtures, window,
                                          s.min_mix_separation_deg, s.mix_level_db, rng, ident, None, fs,
                                          need=set(val_clips)), "mixture", window, m))
    else:
        val = tune
    out: dict[str, np.ndarray] = {}
    for split, data in (("train", _cat(*train)), ("val", val), ("tune", tune)):
        for k, v in data.items():
            out[f"{split}_{k}"] = v
    # simulated windows sound like the user's array only when its mics' errors are known; without them
    # (a narrow walk, fewer than 6 positions) half as many, so the ideal mics do not outweigh the real ones
    n_sim = s.n_simulated if (fe is not None and s.simulate_front_end) else s.n_simulated // 2
    sim = simulated_windows(session, n_sim, sim_data=sim_data, bank=bank, workers=workers)
    for k, v in sim.items():
        out[f"sim_{k}"] = v
    out["position_names"] = np.array([p["name"] for p in positions])
    out["heldout_positions"] = out_mask
    tmp = session.dir / "set.tmp.npz"
    np.savez(tmp, **out)
    os.replace(tmp, session.dir / "set.npz")
    counts = {"real_single_train": int(np.sum(out["train_kind"] == "single")),
              "real_mixture_train": int(np.sum(out["train_kind"] == "mixture")),
              "simulated_train": int(len(out["sim_audio"])),
              "real_single_val": int(np.sum(out["val_kind"] == "single")),
              "real_mixture_val": int(np.sum(out["val_kind"] == "mixture")),
              "positions": len(positions), "positions_held_out": int(out_mask.sum())}
    session.data["counts"] = counts
    session.data["heldout_positions"] = [p["name"] for p, o in zip(positions, out_mask) if o]
    session.save()
    return counts


def simulated_windows(session: Session, n: int, *, sim_data: str | Path | None = None, bank: str | Path | None = None,
                      workers: int = 1) -> dict[str, np.ndarray]:
    """``n`` simulated windows for the session's array: drawn from a ``train_tf.simulate windows`` set
    (``sim_data``), or simulated now from a dry-signal bank (``bank``); none when ``n`` is 0."""
    from train_tf.simulate import SimSettings, load_windows, write_dataset

    window = session.window_samples
    empty = {"audio": np.zeros((0, window, session.array.n_mics), np.int16), "azimuth_deg": np.zeros((0, 4)),
             "distance_m": np.zeros((0, 4)), "level_db": np.zeros((0, 4))}
    if n <= 0:
        return empty
    if sim_data is None and bank is None:
        raise CalibrationError("simulated windows need --sim-data DIR (python -m train_tf.simulate windows) or "
                               "--bank FILE (python -m train_tf.signals build); or pass --simulated 0")
    if sim_data is None:
        name = session.array.name
        settings = SimSettings(array=name, sample_rate_hz=session.sample_rate_hz,
                               window_s=window / session.sample_rate_hz, n_sources=(1, 3),
                               min_source_separation_deg=20.0)
        try:
            settings.mic_array()
        except Exception:
            raise CalibrationError(f"array {name!r} is not built in, so it cannot be simulated here; simulate windows "
                                   "for it elsewhere and pass --sim-data DIR, or pass --simulated 0") from None
        sim_data = session.dir / "sim"
        write_dataset(sim_data, "windows", n, settings, seed=session.settings.seed + 1, bank_path=bank,
                      shard_size=max(1, min(50, n)), workers=workers, progress=False)
    data = load_windows(sim_data)
    if data["audio"].shape[1:] != (window, session.array.n_mics):
        raise CalibrationError(f"{sim_data}: windows of shape {data['audio'].shape[1:]}, the model needs "
                               f"({window}, {session.array.n_mics}); simulate them for this array and window")
    idx = np.sort(np.random.default_rng(session.settings.seed).permutation(len(data["audio"]))[:n])
    audio = data["audio"][idx]
    fe = session_front_end(session)
    if fe is not None and session.settings.simulate_front_end:
        # the simulator's mics are ideal; the user's are not, and the model should learn the user's
        audio = fe.apply(audio, session.sample_rate_hz)
    return {"audio": audio, "azimuth_deg": data["azimuth_deg"][idx],
            "distance_m": data["distance_m"][idx], "level_db": data["level_db"][idx]}


# --------------------------------------------------------------------------- fine-tune


def default_keras_model(array_name: str) -> Path:
    """``models/<array>/`` of the source checkout this module runs from, else the float16 copy packaged
    with it (``train_tf/float_models/<array>/``, written by ``python -m train_tf.pack_weights``)."""
    from train_tf.pack_weights import CHECKOUT, PACKAGED

    checkout = CHECKOUT / array_name
    return checkout if (checkout / "params.json").exists() else PACKAGED / array_name


def _keras_dir(session: Session, keras_model: str | Path | None) -> Path:
    d = Path(keras_model or session.data.get("keras_model") or default_keras_model(session.array.name))
    if not (d / "params.json").exists():
        from train_tf.pack_weights import PACKAGED

        have = ", ".join(sorted(p.name for p in PACKAGED.glob("*") if (p / "params.json").exists())) or "none"
        raise CalibrationError(f"{d}: no params.json, so no float Keras model to fine-tune (packaged: {have}); pass "
                               "--keras-model DIR (a directory with params.json + model.weights.h5, e.g. "
                               "models/<array> of a source checkout)")
    return d


def _targets(layout: RegionLayout, az: np.ndarray, dist: np.ndarray, level: np.ndarray | None = None) -> np.ndarray:
    d = np.where(np.isfinite(dist), dist, 1.0)
    w = None if level is None else np.where(np.isfinite(level), level, 0.0)
    return encode_batch(layout, az, d, w)


def finetune(session: Session, keras_model: str | Path | None = None, progress: Callable[[str], None] | None = None,
             ) -> dict[str, Any]:
    """Fine-tune the float model on set.npz; writes ``model/`` (params.json + model.weights.h5)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    from edge_msl.features import model_scaling, normalize_window
    from train_tf.crosscheck import PARAMS, WEIGHTS, default_weights, load_model
    from train_tf.model import LossWeights, region_loss

    s = session.settings
    src = _keras_dir(session, keras_model)
    path = session.dir / "set.npz"
    if not path.exists():
        raise CalibrationError(f"{path} not found; run 'edge-msl calibrate build --session {session.dir}' first")
    keras.utils.set_random_seed(s.seed)
    model, params = load_model(src, default_weights(src))
    cfg = params["model"]
    if (cfg["window_samples"], cfg["n_mics"]) != (session.window_samples, session.array.n_mics):
        raise CalibrationError(f"{src}: model takes ({cfg['window_samples']}, {cfg['n_mics']}) windows, the session "
                               f"has ({session.window_samples}, {session.array.n_mics}); use the array's model")
    layout = RegionLayout.from_dict(params["regions"])
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    x_real = data["train_audio"]
    y_real = _targets(layout, data["train_azimuth_deg"], data["train_distance_m"])
    x_sim = data["sim_audio"]
    y_sim = _targets(layout, data["sim_azimuth_deg"], data["sim_distance_m"], data["sim_level_db"])
    x = normalize_window(np.concatenate([x_real, x_sim]).astype(np.float32), **model_scaling(params))
    y = np.concatenate([y_real, y_sim])
    # a self-labelled direction comes without a distance: keep the model's own distance there, so the
    # distance head is neither trained nor disturbed by a made-up value
    unknown = np.concatenate([np.any(~np.isfinite(data["train_distance_m"]) & np.isfinite(data["train_azimuth_deg"]),
                                     axis=1), np.zeros(len(x_sim), bool)])
    if unknown.any():
        pred = np.concatenate([np.asarray(model(x[i:i + 64], training=False)) for i in range(0, len(x), 64)])
        y[unknown, :, DISTANCE] = pred[unknown, :, DISTANCE]
    trained = set(s.train_layers)
    names = {layer.name for layer in model.layers}
    missing = sorted(trained - names)
    if missing:
        raise CalibrationError(f"layers {missing} are not in the model (it has {sorted(names)}); fix train_layers")
    for layer in model.layers:
        # batch-norm layers stay frozen (trainable=False also runs them in inference mode): a few hundred
        # windows of one room would otherwise overwrite statistics learned from millions
        layer.trainable = layer.name in trained
    lw = LossWeights(**params.get("loss_weights", {}))
    model.compile(optimizer=keras.optimizers.Adam(s.learning_rate), loss=region_loss(lw), jit_compile=False)
    n_trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    base_recall = None
    if s.tune_threshold and "tune_audio" in data and len(data["tune_audio"]):
        # the uncalibrated model's recall there: the threshold is chosen not to lose any of it
        xt = normalize_window(data["tune_audio"].astype(np.float32), **model_scaling(params))
        pred0 = np.concatenate([np.asarray(model(xt[i:i + 64], training=False)) for i in range(0, len(xt), 64)])
        from edge_msl.regions import decode
        from train_tf.evaluate import score_detections

        thr0 = float(params.get("decode", {}).get("threshold", 0.5))
        base_recall = _summary(score_detections([decode(layout, o, thr0) for o in pred0], data["tune_azimuth_deg"],
                                                np.zeros(data["tune_azimuth_deg"].shape), 20.0))["recall"]
    rng = np.random.default_rng(s.seed)
    t0 = time.perf_counter()
    history = []
    for epoch in range(s.epochs):
        order = rng.permutation(len(x))
        losses = []
        for b in range(0, len(order), s.batch_size):
            i = np.sort(order[b:b + s.batch_size])
            losses.append(float(model.train_on_batch(x[i], y[i])))
        history.append(float(np.mean(losses)))
        if progress:
            progress(f"epoch {epoch + 1}/{s.epochs}: loss {history[-1]:.4f}")
    seconds = time.perf_counter() - t0
    out = session.dir / "model"
    out.mkdir(exist_ok=True)
    model.save_weights(out / WEIGHTS)
    new_params = dict(params)
    tuned = None
    if s.tune_threshold and "tune_audio" in data and len(data["tune_audio"]):
        pred = np.concatenate([np.asarray(model(xt[i:i + 64], training=False)) for i in range(0, len(xt), 64)])
        tuned = choose_threshold(layout, pred, data["tune_azimuth_deg"],
                                 float(params.get("decode", {}).get("threshold", 0.5)),
                                 base_recall=None if base_recall is None else base_recall - s.recall_tolerance)
        new_params["decode"] = {**params.get("decode", {}), "threshold": tuned["threshold"]}
    elif s.decode_threshold is not None:
        if not 0.0 < s.decode_threshold < 1.0:
            raise CalibrationError(f"decode_threshold {s.decode_threshold} is outside (0, 1)")
        new_params["decode"] = {**params.get("decode", {}), "threshold": float(s.decode_threshold)}
    new_params["calibrated"] = {
        "from": str(src), "session": str(session.dir), "train_layers": list(s.train_layers),
        "trainable_parameters": n_trainable, "epochs": s.epochs, "learning_rate": s.learning_rate,
        "windows": {"real": int(len(x_real)), "simulated": int(len(x_sim))}, "loss": history,
        "threshold": tuned}
    (out / PARAMS).write_text(json.dumps(new_params, indent=2))
    return {"seconds": seconds, "windows": int(len(x)), "trainable_parameters": n_trainable, "loss": history,
            "threshold": tuned}


def choose_threshold(layout: RegionLayout, outputs: np.ndarray, az: np.ndarray, default: float,
                     grid: Sequence[float] = (0.25, 0.3, 0.35, 0.4),
                     base_recall: float | None = None) -> dict[str, Any]:
    """The decode threshold with the best F1 on ``outputs`` (N, regions, 3) of windows with true azimuths
    ``az`` (N, k; NaN = none), the lower on a tie; ``grid`` stays near the shipped 0.4 because the recorded
    tails are a small set (wider grids picked 0.15 there and lost F1 at fresh positions); with
    ``base_recall`` (the uncalibrated model's recall there, less the install rule's tolerance), only
    thresholds that keep that recall compete. Returns it with its F1/recall and those of
    ``default``."""
    from edge_msl.regions import decode
    from train_tf.evaluate import score_detections

    def at(t: float) -> dict[str, Any]:
        return _summary(score_detections([decode(layout, o, t) for o in outputs], az, np.zeros(az.shape), 20.0))

    base = at(default)
    scores = {t: at(t) for t in sorted(set(grid) | {default})}
    if base_recall is not None:  # keep the recall the model had before calibration, if any threshold does
        kept = {t: r for t, r in scores.items() if (r["recall"] or 0.0) >= base_recall - 1e-9}
        scores = kept or {min(scores): scores[min(scores)]}
    top = max(r["f1"] or 0.0 for r in scores.values())
    best_t = min(t for t, r in scores.items() if (r["f1"] or 0.0) >= top - 1e-9)  # a tie: the lower (recall)
    best = scores[best_t]
    return {"threshold": float(best_t), "f1": best["f1"], "recall": best["recall"], "default": float(default),
            "base_recall": base_recall,
            "default_f1": base["f1"], "default_recall": base["recall"]}


# --------------------------------------------------------------------------- convert


def convert_model(session: Session) -> Path:
    """``build/<array>.tflite`` (+ .json) from ``model/``, calibrated on windows of the fine-tuning set."""
    from convert.__main__ import convert
    from edge_msl.features import model_scaling, normalize_window

    model_dir = session.dir / "model"
    if not (model_dir / "params.json").exists():
        raise CalibrationError(f"{model_dir} not found; run 'edge-msl calibrate finetune' first")
    with np.load(session.dir / "set.npz") as z:
        x = np.concatenate([z["train_audio"], z["sim_audio"]])
    rng = np.random.default_rng(session.settings.seed)
    idx = np.sort(rng.permutation(len(x))[:session.settings.calib_windows])
    out = session.dir / "build" / f"{session.array.name}.tflite"
    scaling = model_scaling(json.loads((model_dir / "params.json").read_text()))
    convert(model_dir, normalize_window(x[idx].astype(np.float32), **scaling), out,
            {"data": f"calibration session {session.dir}", "seed": session.settings.seed})
    return out


# --------------------------------------------------------------------------- validate


def score_model(tflite: str | Path, array: MicArray, audio: np.ndarray, az: np.ndarray,
                match_deg: float = 20.0) -> list[dict[str, Any]]:
    """Per-window scoring rows (``train_tf.evaluate.score``) of an int8 model through the device runtime."""
    from edge_msl.runtime import load_model
    from train_tf.evaluate import score_detections

    model = load_model(tflite, array=array)
    dets = [model.detections(w) for w in audio]
    return score_detections(dets, az, np.zeros(az.shape), match_deg)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from train_tf.evaluate import summarize

    s = summarize(rows)
    return {k: (None if isinstance(s[k], float) and math.isnan(s[k]) else s[k])
            for k in ("windows", "sources", "hits", "err_mean", "err_median", "recall", "precision", "f1")}


def installed_model(state_dir: str | Path, array: MicArray) -> Path:
    """The model the daemon would run for ``array``: the state directory's calibrated one, else the packaged one."""
    p = Path(state_dir) / "models" / f"{array.name}.tflite"
    if p.exists():
        return p
    from edge_msl.runtime import default_model_path

    return default_model_path(array.name)


def validate(session: Session, before: str | Path, after: str | Path | None = None) -> dict[str, Any]:
    """Held-out real windows (singles per position, mixtures) scored before and after; writes validation.json."""
    after = Path(after or session.dir / "build" / f"{session.array.name}.tflite")
    if not after.exists():
        raise CalibrationError(f"{after} not found; run 'edge-msl calibrate convert' first")
    with np.load(session.dir / "set.npz") as z:
        audio, az, kind, pos = z["val_audio"], z["val_azimuth_deg"], z["val_kind"], z["val_position"]
        names = [str(n) for n in z["position_names"]]
        held = [str(n) for n, o in zip(names, z["heldout_positions"]) if o] if "heldout_positions" in z.files else []
        tune = {k: z[f"tune_{k}"] for k in ("audio", "azimuth_deg", "kind")} if (held and "tune_audio" in z.files) \
            else None
    result: dict[str, Any] = {"before": str(before), "after": str(after), "sets": {}, "per_position": {},
                              "heldout_positions": held}
    rows = {}
    for tag, path in (("before", before), ("after", after)):
        rows[tag] = score_model(path, session.array, audio, az)
    for subset, mask in (("single", kind == "single"), ("mixture", kind == "mixture"), ("all", np.ones(len(kind), bool))):
        result["sets"][subset] = {tag: _summary([r for r, m in zip(rows[tag], mask) if m]) for tag in rows}
    for i, name in enumerate(names):
        mask = (kind == "single") & (pos[:, 0] == i)
        if mask.any():
            result["per_position"][name] = {tag: _summary([r for r, m in zip(rows[tag], mask) if m]) for tag in rows}
    if tune is not None and len(tune["audio"]):
        # the recorded positions' later parts: what the model learnt there (not what decides the install)
        trows = {tag: score_model(path, session.array, tune["audio"], tune["azimuth_deg"])
                 for tag, path in (("before", before), ("after", after))}
        for subset in ("single", "mixture"):
            mask = tune["kind"] == subset
            result["sets"][f"recorded_{subset}"] = {tag: _summary([r for r, m in zip(trows[tag], mask) if m])
                                                    for tag in trows}
    result["better"], result["why"] = is_better(result["sets"]["all"]["before"], result["sets"]["all"]["after"],
                                                session.settings.f1_tolerance, session.settings.recall_tolerance)
    _write_json(session.dir / "validation.json", result)
    return result


def is_better(before: dict[str, Any], after: dict[str, Any], f1_tolerance: float = 0.0,
              recall_tolerance: float | None = None) -> tuple[bool, str]:
    """The install rule: lower mean DOA error, F1 not lower and (with ``recall_tolerance``) recall not lower
    than before minus it, all on held-out real windows (of positions never trained on, when there are)."""
    eb, ea, fb, fa = before["err_mean"], after["err_mean"], before["f1"] or 0.0, after["f1"] or 0.0
    if ea is None:
        return False, "the calibrated model found none of the held-out sources"
    if eb is not None and ea >= eb:
        return False, f"mean DOA error {ea:.2f} deg is not lower than {eb:.2f} deg"
    if fa < fb - f1_tolerance:
        return False, f"F1 {fa:.3f} is lower than {fb:.3f}"
    rb, ra = before.get("recall") or 0.0, after.get("recall") or 0.0
    if recall_tolerance is not None and ra < rb - recall_tolerance:
        return False, f"recall {ra:.3f} is lower than {rb:.3f} - {recall_tolerance:g}"
    return True, (f"mean DOA error {eb if eb is not None else float('nan'):.2f} -> {ea:.2f} deg, "
                  f"F1 {fb:.3f} -> {fa:.3f}")


# --------------------------------------------------------------------------- install / rollback


def _stage(src: Path, dst: Path) -> Path:
    """Copy ``src`` to a hidden temporary name next to ``dst``, flushed to disk; removed again on any error."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _replace_all(pairs: list[tuple[Path, Path]]) -> None:
    """Move each staged file onto its target as one unit: every target ends up new, or (on any error) every target
    is as it was. The old targets are kept as hard links first, which take no space, so the undo cannot fail for
    want of space."""
    backups: dict[Path, Path | None] = {}
    done: list[Path] = []
    try:
        for _, target in pairs:
            if target.exists():
                bak = target.with_name(f".{target.name}.bak")
                bak.unlink(missing_ok=True)
                try:
                    os.link(target, bak)
                except OSError:  # a file system without hard links: a copy, made before anything changes
                    shutil.copyfile(target, bak)
                backups[target] = bak
            else:
                backups[target] = None
        for staged, target in pairs:
            os.replace(staged, target)
            done.append(target)
    except BaseException:
        for target in reversed(done):
            bak = backups.get(target)
            try:
                if bak is None:
                    target.unlink(missing_ok=True)
                else:
                    os.replace(bak, target)
            except OSError:
                pass
        raise
    finally:
        for staged, _ in pairs:
            staged.unlink(missing_ok=True)
        for bak in backups.values():
            if bak is not None:
                bak.unlink(missing_ok=True)


def install(tflite: str | Path, state_dir: str | Path, array_name: str) -> Path:
    """Copy ``tflite`` and its sidecar to ``<state>/models/<array>.tflite/.json``, keeping the pair they replace as
    ``<array>.previous.tflite/.json`` (for :func:`rollback`).

    One unit: every file is first written in full under a temporary name (a full disk fails here, before anything
    the daemon reads has changed), then all are renamed into place; an error at any point puts back what was
    there, so the state directory never holds a .tflite with another model's sidecar."""
    src = Path(tflite)
    for p in (src, src.with_suffix(".json")):
        if not p.is_file():
            raise CalibrationError(f"{p} not found; run 'edge-msl calibrate convert' first")
    models = Path(state_dir) / "models"
    try:
        models.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise CalibrationError(f"cannot write {models} (permission denied); run as root or the daemon's user, or "
                               "pass --state-dir DIR") from None
    dst = models / f"{array_name}.tflite"
    prev = models / f"{array_name}.previous.tflite"
    copies = [(src.with_suffix(".json"), dst.with_suffix(".json")), (src, dst)]
    if dst.exists():
        copies = [(dst.with_suffix(".json"), prev.with_suffix(".json")), (dst, prev)] + copies
    # staged from the current files before any rename, so the previous pair is the old current pair
    _swap(models, copies, f"could not install into {models}", "; free some space and run install again")
    return dst


def rollback(state_dir: str | Path, array_name: str) -> Path:
    """Put ``<array>.previous`` back in place (the current one becomes the previous, so a second rollback undoes).
    The four files change as one unit, like :func:`install`."""
    models = Path(state_dir) / "models"
    dst, prev = models / f"{array_name}.tflite", models / f"{array_name}.previous.tflite"
    if not prev.exists() or not prev.with_suffix(".json").exists():
        raise CalibrationError(f"no previous model {prev} to roll back to (nothing was installed over another "
                               "model yet)")
    _swap(models, [(dst.with_suffix(".json"), prev.with_suffix(".json")), (dst, prev),
                   (prev.with_suffix(".json"), dst.with_suffix(".json")), (prev, dst)], f"could not roll back in {models}")
    return dst


def _swap(models: Path, copies: list[tuple[Path, Path]], what: str, on_full_disk: str = "") -> None:
    """Copy every (source, target) pair to a temporary file beside its target, then replace the
    targets as one unit (:func:`_replace_all`); on any error nothing the daemon reads has changed,
    the temporary files are removed and a :class:`CalibrationError` starting with ``what`` says why
    (plus ``on_full_disk`` when the disk is full)."""
    staged: list[tuple[Path, Path]] = []
    try:
        for s, d in copies:
            staged.append((_stage(s, d.with_name(f"{d.name}.new")), d))
        _replace_all(staged)
    except OSError as exc:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise CalibrationError(f"{what} ({why}); the installed model is unchanged"
                               + (on_full_disk if exc.errno == errno.ENOSPC else "")) from None
    _fsync_dir(models)


def notify_daemon(pid_file: str | Path | None = None, unit: str = "edge-msl") -> str:
    """Ask a running daemon to reload (SIGHUP): the process in ``pid_file``, else the systemd unit if active."""
    if pid_file is not None:
        try:
            pid = int(Path(pid_file).read_text().split()[0])
            os.kill(pid, signal.SIGHUP)
            return f"sent SIGHUP to pid {pid} ({pid_file})"
        except (OSError, ValueError, IndexError) as exc:
            return f"could not signal the daemon from {pid_file} ({exc}); restart it to load the new model"
    if shutil.which("systemctl"):
        active = subprocess.run(["systemctl", "is-active", "--quiet", unit], capture_output=True)
        if active.returncode == 0:
            r = subprocess.run(["systemctl", "kill", "-s", "HUP", unit], capture_output=True, text=True)
            if r.returncode == 0:
                return f"sent SIGHUP to {unit}.service"
            return f"systemctl kill -s HUP {unit} failed ({r.stderr.strip()}); restart it to load the new model"
    return "no running daemon found (no --pid-file, no active edge-msl.service); it loads the model at its next start"


# --------------------------------------------------------------------------- report


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


# --------------------------------------------------------------------------- all


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


# --------------------------------------------------------------------------- a stand-in "real room"


@dataclass(frozen=True)
class PerturbedArray:
    """How a real array differs from its nominal geometry (for the stand-in room)."""

    position_error_m: float = 0.004
    """Per-axis microphone position error, uniform in +/- this."""
    gain_error_db: float = 2.5
    """Per-microphone gain error, uniform in +/- this."""
    delay_error_s: float = 30e-6
    """Per-microphone time offset (ADC clocking, analog filters), uniform in +/- this."""
    phase_error_deg: float = 15.0
    """Per-microphone frequency-independent phase error, uniform in +/- this."""
    board_below_m: float = 0.03
    """A reflective board this far under the array (its mirror image adds a strong early echo)."""
    board_reflection: float = 0.8
    """Amplitude reflection coefficient of the board."""


class StandInRoom:
    """A simulated room the model never saw, with a perturbed array: clips at chosen directions, int16,
    as the real device would capture them (the nominal geometry is what the model and SRP-PHAT assume)."""

    def __init__(self, array: MicArray, seed: int = 0, perturb: PerturbedArray = PerturbedArray(),
                 room_dim_m: tuple[float, float, float] = (6.3, 4.9, 2.8), rt60_s: float = 0.45,
                 sample_rate_hz: int = 16000) -> None:
        from train_tf.simulate import sabine_absorption

        self.array = array
        self.fs = sample_rate_hz
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        self.dim = np.array(room_dim_m, dtype=np.float64)
        self.centre = np.array([self.dim[0] * 0.45, self.dim[1] * 0.55, 0.9])
        m = array.n_mics
        self.mic_xyz = array.positions() + self.centre + rng.uniform(-perturb.position_error_m,
                                                                     perturb.position_error_m, (m, 3))
        self.gain = 10.0 ** (rng.uniform(-perturb.gain_error_db, perturb.gain_error_db, m) / 20.0)
        self.delay_s = rng.uniform(-perturb.delay_error_s, perturb.delay_error_s, m)
        self.phase_rad = np.radians(rng.uniform(-perturb.phase_error_deg, perturb.phase_error_deg, m))
        self.perturb = perturb
        self.absorption = min(0.99, sabine_absorption(rt60_s, self.dim))
        self.rt60_s = rt60_s

    def rirs(self, azimuth_deg: Sequence[float], distance_m: Sequence[float], elevation_deg: Sequence[float]
             ) -> np.ndarray:
        """(P, M, L) impulse responses from source positions (array frame) to the perturbed mics, board included."""
        from train_tf.simulate import _import_pra

        pra = _import_pra()
        az, dist, el = (np.radians(np.asarray(v, dtype=np.float64)) if i != 1 else np.asarray(v, dtype=np.float64)
                        for i, v in enumerate((azimuth_deg, distance_m, elevation_deg)))
        src = self.centre + np.stack([dist * np.cos(az), dist * np.sin(az), np.tan(el) * dist], axis=1)
        src = np.clip(src, 0.25, self.dim - 0.25)
        room = pra.ShoeBox(self.dim, fs=self.fs, materials=pra.Material(self.absorption), max_order=10,
                           air_absorption=False)
        room.add_microphone_array(self.mic_xyz.T)
        board_z = self.centre[2] - self.perturb.board_below_m
        mirror = self.mic_xyz.copy()
        mirror[:, 2] = 2 * board_z - mirror[:, 2]
        echo = pra.ShoeBox(self.dim, fs=self.fs, max_order=0)  # the board's echo: one path per mic
        echo.add_microphone_array(mirror.T)
        for p in src:
            room.add_source(p)
            echo.add_source(p)
        pra.random.seed(numpy=int(self.rng.integers(2**31)))
        room.compute_rir()
        echo.compute_rir()
        n = max(len(room.rir[m][p]) for m in range(len(mirror)) for p in range(len(src)))
        out = np.zeros((len(src), len(mirror), n), np.float64)
        for p in range(len(src)):
            for m in range(len(mirror)):
                h = np.asarray(room.rir[m][p])
                out[p, m, :len(h)] = h
                e = np.asarray(echo.rir[m][p])[:n]
                out[p, m, :len(e)] += self.perturb.board_reflection * e
        return out

    def _device(self, x: np.ndarray) -> np.ndarray:
        """Per-mic gain, time offset and phase error of the real front end; x (n, M) float."""
        n = len(x)
        spec = np.fft.rfft(x, axis=0)
        f = np.fft.rfftfreq(n, 1.0 / self.fs)
        rot = np.exp(-2j * np.pi * f[:, None] * self.delay_s[None, :] - 1j * self.phase_rad[None, :])
        rot[0] = 1.0
        return np.fft.irfft(spec * rot, n=n, axis=0) * self.gain[None, :]

    def render(self, rirs: np.ndarray, dry: Sequence[np.ndarray], level_dbfs: float = -28.0, snr_db: float = 25.0
               ) -> np.ndarray:
        """Sources ``dry`` (each 1-D) through ``rirs`` (same count) + diffuse room noise + sensor noise, int16.

        Returns ``len(dry) - L + 1`` frames (L = RIR length): only the part where the room's response is
        fully built up, as in a recording of a source that was already playing."""
        from scipy.signal import fftconvolve

        from train_tf.simulate import diffuse_mix, to_int16

        n_in = min(len(d) for d in dry)
        m, L = rirs.shape[1], rirs.shape[2]
        n = n_in - L + 1
        if n <= 0:
            raise ValueError(f"dry signals of {n_in} samples are shorter than the RIRs ({L})")
        clean = np.zeros((n, m))
        for h, d in zip(rirs, dry):
            clean += fftconvolve(d[:n_in, None], h.T, axes=0, mode="valid")
        p = float(np.mean(clean ** 2)) + 1e-20
        noise = diffuse_mix(self.mic_xyz, self.rng.standard_normal((m, n)), self.fs).T.astype(np.float64)
        noise *= math.sqrt(p / (np.mean(noise ** 2) + 1e-20) * 10 ** (-snr_db / 10))
        sensor = self.rng.standard_normal((n, m)) * math.sqrt(p * 10 ** (-(snr_db + 15) / 10))
        x = self._device(clean + noise + sensor)
        x *= 10 ** (level_dbfs / 20) / math.sqrt(float(np.mean(x ** 2)) + 1e-20)
        return to_int16(x)


def dry_speech(bank, n_samples: int, rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """``count`` speech excerpts (unit RMS) from a dry-signal bank, real speech where the bank has it."""
    idx = bank.indices("speech_real")
    if len(idx) == 0:
        idx = bank.indices("speech_synth")
    return [bank.segment(int(rng.choice(idx)), n_samples, rng).astype(np.float64) for _ in range(count)]


def standin_mixtures(room: StandInRoom, bank, n: int, window: int, rng: np.random.Generator,
                     min_sep_deg: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` two-source windows in the stand-in room at fresh positions (not the calibration ones), and
    their true azimuths (n, 2): the held-out test of a calibration."""
    n_pos = max(8, n // 4)
    az = rng.uniform(0, 360, n_pos)
    rirs = room.rirs(az, rng.uniform(0.8, 2.5, n_pos), rng.uniform(-5, 20, n_pos))
    pairs = [(i, j) for i in range(n_pos) for j in range(i + 1, n_pos) if angular_distance_deg(az[i], az[j]) >= min_sep_deg]
    audio, truth = [], []
    for k in range(n):
        i, j = pairs[int(rng.integers(len(pairs)))]
        dry = dry_speech(bank, window + rirs.shape[2] - 1, rng, 2)
        gains = 10 ** (rng.uniform(-3, 3, 2) / 20)
        audio.append(room.render(rirs[[i, j]], [dry[0] * gains[0], dry[1] * gains[1]],
                                 level_dbfs=float(rng.uniform(-35, -22))))
        truth.append([az[i], az[j]])
    return np.stack(audio), np.array(truth)


__all__ = ["CalibrationError", "CalibrationSettings", "Session", "SrpLabel", "srp_phat_map", "srp_label",
           "label_positions", "record_clip", "build_set", "simulated_windows", "finetune", "convert_model",
           "validate", "is_better", "install", "rollback", "notify_daemon", "installed_model", "report", "run_all",
           "PerturbedArray", "StandInRoom", "FrontEnd", "array_symmetries", "turn_windows", "turn_azimuth",
           "heldout_positions", "label_moving", "moving_windows", "choose_threshold", "estimate_front_end",
           "session_front_end", "standin_mixtures", "dry_speech", "default_keras_model", "DEFAULT_STATE_DIR"]
