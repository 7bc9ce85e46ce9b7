"""label: each clip's direction by SRP-PHAT over the whole clip (or along a walk), and the array's front-end (mic
delay, phase and gain errors) estimated from the labelled clips.

It must not train or change the recorded clips.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edge_msl import srp
from edge_msl.arrays import SPEED_OF_SOUND_M_S, MicArray
from edge_msl.regions import angular_distance_deg
from edge_msl.settings_check import Settings, invalid, items, number, required

from .session import CalibrationError, Session

log = logging.getLogger("train_tf.calibrate")


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
    """(grid deg, whole-clip map (G,), per-block maps (B, G)) of far-field in-plane SRP-PHAT
    (:func:`edge_msl.srp.steered_power`; the cross-spectra and the grid are this function's).

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
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate_hz)
    band = np.flatnonzero((freqs >= freq_range_hz[0]) & (freqs <= freq_range_hz[1]))
    freqs = freqs[band]
    spec = srp.stft(x, nfft, slice(band[0], band[-1] + 1), np.hanning(nfft))  # (M, T, F)
    if front_end is not None:
        spec = spec / front_end.response(freqs).T[:, None]
    energy = np.sum(np.abs(spec) ** 2, axis=(0, 2))
    white = srp.phat(spec)
    n_blocks = n_frames // block_frames
    white = white[:, :n_blocks * block_frames].reshape(len(white), n_blocks, block_frames, len(freqs))
    block_energy = energy[:n_blocks * block_frames].reshape(n_blocks, block_frames).sum(axis=1)
    white = white[:, block_energy >= np.quantile(block_energy, 0.3)]
    # per block the covariance R = sum_t w w^H: its pairs i < j (B, P, F), and its trace, the same for every direction
    i, j = np.triu_indices(len(white), 1)
    cross = np.einsum("pbtf,pbtf->bpf", white[i], np.conj(white[j]))
    power = np.einsum("mbtf,mbtf->b", white, np.conj(white)).real
    if not per_block:
        cross, power = cross.sum(axis=0, keepdims=True), power.sum(keepdims=True)
    grid = np.arange(0.0, 360.0, grid_deg)
    xy = np.asarray(mic_xyz)[:, :2]
    # w^H R w over all i, j: the trace plus twice the SRP-PHAT of the pairs i < j
    blocks = power[:, None] + 2.0 * srp.steered_power(cross, freqs, srp.pair_delays_s(xy[i] - xy[j],
                                                                                       srp.plane_directions(grid)))
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


_PER_MIC = items(number(-math.inf, math.inf), 1)
"""One finite number per microphone."""


@dataclass(frozen=True)
class FrontEnd(Settings):
    """Per-microphone errors of the user's array front end (relative to the mean over its mics), as estimated
    from the clips: a real mic's response is ``gain * exp(-j (2 pi f delay + phase))`` times the nominal one.
    Stored in session.json's ``front_end`` (:meth:`to_dict`, read back by :meth:`from_dict`)."""

    gain_db: tuple[float, ...] = required(_PER_MIC)
    """Gain of each mic relative to the mean (dB)."""
    delay_s: tuple[float, ...] = required(_PER_MIC)
    """Time offset of each mic relative to the mean (s; positive = later)."""
    phase_deg: tuple[float, ...] = required(_PER_MIC)
    """Frequency-independent phase lag of each mic relative to the mean (deg)."""

    KEY = "front_end.{}"
    TABLE = "front_end"
    PLAIN_DATA = True

    def check_together(self) -> None:
        """One value of each per microphone."""
        if not len(self.gain_db) == len(self.delay_s) == len(self.phase_deg):
            raise invalid("front_end.delay_s", self.delay_s, f"one value per microphone, as gain_db and phase_deg "
                          f"({len(self.gain_db)} and {len(self.phase_deg)})")

    @classmethod
    def identity(cls, n_mics: int) -> "FrontEnd":
        """``n_mics`` microphones without errors."""
        return cls((0.0,) * n_mics, (0.0,) * n_mics, (0.0,) * n_mics)

    def to_dict(self) -> dict[str, Any]:
        """:meth:`Settings.to_dict` with every value rounded to 1e-9 (as session.json stores it)."""
        return {k: [round(v, 9) for v in values] for k, values in super().to_dict().items()}

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
                                          front_end=fe, per_block=False,
                                          freq_range_hz=(300.0, min(s.label_max_freq_hz, session.sample_rate_hz / 2)))
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
