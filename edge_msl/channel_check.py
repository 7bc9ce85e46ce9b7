"""Start-up self-check of the capture channel order: from the first seconds of audio, find dead
channels, channels that are not microphones of the configured array, and a rotated channel order
(the seeed-voicecard bug), and say the fix. Pure numpy; it reads frames, it must not open devices.
The coherence measurements and the geometry fit are in edge_msl.coherence; which way an array is turned
(a talker at a known direction) in edge_msl.orientation; which board a recording is in edge_msl.board_id.

Why rotations: the seeed-voicecard driver (ReSpeaker 4-mic/6-mic HATs, AC108) delivers the
channels of a multichannel stream in an order that changes between recordings: "reference channels
shift places" between runs of ``arecord -c 8`` on the 6-mic HAT, where the two playback loopback
channels belong on 6 and 7 (respeaker/seeed-voicecard#309, also #334); the 4-mic HAT has come out as
3,4,1,2 (#145) and the 4-mic linear kit as 1234 / 1278 / 5678 (#301). A maintainer's explanation
(#289): the Pi's I2S sees the frames as stereo at a multiple of the rate, so a stream can start on the
wrong slot, i.e. the frame is cyclically shifted. So the model here is: whatever belongs on capture
channel c arrives on channel (c + k) mod n_channels, with k fixed until the device is reopened.
A mic that is silent while the others hear the room also happens on these boards: the driver's
service once set the 3rd channel's capture volume very low through a stray amixer call (#194, #240).

How: a channel is *mic-like* when it is live (not digital zero, not far below the loudest channels)
and, in a low band where every pair of mics of this array hears a diffuse field coherently
(|sinc(2 f d / c)| >= sinc(0.5)), it is about as coherent with at least half of the other channels
as the mics typically are. Loopback channels are silent or carry playback the mics do not share.
Rotation k is *consistent* when every channel it puts a mic on is mic-like. Among consistent
rotations the mic channels' complex coherence is fitted, per frequency, by what the geometry
allows: the diffuse field sinc(2 f d_ij / c) plus up to three plane waves (talkers); a rotation
that breaks the geometry leaves a larger residual. Rotations that map the array onto itself (a
uniform circle turned by one mic) cannot be told apart by any signal; the report says so.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .arrays import SPEED_OF_SOUND_M_S, ArrayConfigError, MicArray
from .coherence import (FIT_BAND_HZ, FLOOR_FACTOR, channel_levels_dbfs, coherence, cross_spectra,
                        equivalent_rotations, estimation_floor, geometry_residual, lookalike_rotations, n_segments,
                        pair_indices, rotated_map, segment_length)

log = logging.getLogger("edge_msl.channel_check")

CHECK_MODES = ("warn", "remap", "off")
"""Values of the daemon's ``[device] channel_check``: log a warning, also remap a clear rotation, or skip."""

CHECK_SECONDS = 2.0
"""Audio the start-up check wants: 124 Welch segments, so an unrelated channel's coherence is ~0.01."""

MIN_SECONDS = 0.5
"""Below this the check answers "cannot tell" (too few segments for a coherence estimate)."""

DEAD_BELOW_DB = 30.0
"""A channel this far below the median of the n_mics loudest channels is dead (mics differ by a few dB)."""

ROOM_MSC = 0.1
"""The mics hear the room when their typical low-band coherence score is above this (a diffuse field gives
>= 0.4 less sensor noise; independent noise gives about 1 / segments, ~0.01 for 2 s)."""

RELATIVE_MSC = 0.5
"""A channel is foreign when its coherence score is below this fraction of the mics' typical score
(a loopback that the mics also hear through a speaker is coherent, but much less than mic pairs)."""

_ROLE_BAND_HZ = (100.0, 300.0, 1000.0)
"""Low edge, and bounds for the high edge c / (4 d_max) of the band that decides which channels are mics."""


@dataclass(frozen=True)
class ChannelReport:
    """What the channel check found in the first seconds of a capture."""

    array_name: str
    """The configured array."""
    status: str
    """``ok``, ``rotated`` (k found, remap possible), ``bad_channels`` (dead or foreign mics) or ``cannot_tell``."""
    reason: str
    """One line: why this status."""
    problem: bool
    """True when something is off and the user should act (logged as a warning)."""
    seconds: float
    """Audio analysed."""
    level_dbfs: tuple[float, ...]
    """RMS level of each capture channel (DC removed), dB re full scale; -inf for digital zero."""
    dead_channels: tuple[int, ...]
    """Capture channels that are digital zero or more than DEAD_BELOW_DB below the loudest ones."""
    foreign_channels: tuple[int, ...]
    """Live capture channels that do not share the room's sound with the mics (loopback, noise, hum)."""
    room_coherence: tuple[float, ...]
    """Per capture channel: MSC in the low band with its m-th most coherent live partner (m = half the mics)."""
    channel_map: tuple[int, ...]
    """The configured channel map."""
    rotation: int | None
    """k such that channel c's content arrives on (c + k) mod n_channels; 0 when ok, None when unknown."""
    remapped_channel_map: tuple[int, ...] | None
    """The channel map that puts the mics back (only when status is ``rotated``)."""
    consistent_rotations: tuple[int, ...]
    """Rotations under which every mic lands on a mic-like channel."""
    geometry_residual: tuple[tuple[int, float], ...]
    """(k, residual) of the geometry fit for each rotation fitted; 0 = fully explained, 1 = not at all."""
    lookalike_rotations: tuple[int, ...]
    """Rotations that map this array onto itself: indistinguishable from 0 by any signal (a turned array)."""
    rotating_driver: bool = False
    """The array's description names a driver known to rotate channels between opens (seeed-voicecard)."""
    pair_distance_m: tuple[float, ...] = ()
    """Distance of each mic pair (i < j, row-major), for the two rows below."""
    pair_coherence: tuple[float, ...] = ()
    """Measured real coherence of each mic pair under the chosen map, averaged over 100 Hz .. c / (2 d_max)."""
    pair_diffuse: tuple[float, ...] = ()
    """The diffuse-field prediction sinc(2 f d / c) of each pair, averaged over the same band."""

    def describe(self) -> str:
        """One line for the log: what was found and the fix."""
        where = f"channel check ({self.array_name}, {self.seconds:.1f} s)"
        if self.status == "ok":
            note = "" if self.reason == _FITS else f" ({self.reason.replace(_FITS + '; ', '')})"
            if self.lookalike_rotations:
                note += (f"; a rotation by {join_channels(self.lookalike_rotations)} would look the same (it turns the "
                         f"array), so check once that a talker at a known direction comes out there")
            return f"{where}: ok, mics on channels {list(self.channel_map)}{note}"
        if self.status == "rotated":
            cmap = list(self.remapped_channel_map or ())
            return (f"{where}: channel order rotated by {self.rotation} ({self.reason}); the mics are on channels "
                    f"{cmap}. Fix: restart edge-msl so the driver reopens the device{_SEEED if self.rotating_driver else ''}, "
                    f"or set [device] channel_check = \"remap\" to follow it; for a fixed wiring set "
                    f"[array] channel_map = {cmap}")
        if self.status == "bad_channels":
            seeed = (" (seeed-voicecard's service has turned channel 3 down before, respeaker/seeed-voicecard#240)"
                     if self.rotating_driver else "")
            return (f"{where}: {self.reason}. Fix: check the mic and its cable, the capture volume of that channel "
                    f"in alsamixer{seeed}, and that [array] is this board")
        fix = ("; speak or play sound near the array and restart to check again" if not self.problem else
               "; restart edge-msl so the driver reopens the device, and check that [array] is this board")
        return f"{where}: cannot tell the channel order: {self.reason}{fix}"


_FITS = "the configured order fits best"
_SEEED_VOICECARD_ARRAYS = ("respeaker-4mic", "respeaker-6mic")
"""Built-in arrays captured through the seeed-voicecard (AC108) driver, which rotates channels."""
_SEEED = " (seeed-voicecard picks a new order on each open, respeaker/seeed-voicecard#309)"


def join_channels(values: Sequence[int]) -> str:
    return ", ".join(str(v) for v in values)



def capture_frames(array: MicArray, frames: np.ndarray, what: str) -> np.ndarray:
    """``frames`` as an array of shape (n, array.n_channels), or ArrayConfigError naming ``what`` checked them."""
    frames = np.asarray(frames)
    if frames.ndim != 2 or frames.shape[1] != array.n_channels:
        found = frames.shape[1] if frames.ndim == 2 else f"shape {frames.shape}"
        raise ArrayConfigError(f"{what}: array {array.name!r} has {array.n_channels} capture channels, "
                               f"the frames have {found}; capture all {array.n_channels} channels of the device")
    return frames


def median(values: np.ndarray) -> float:
    """``float(np.median(values))`` of a 1-D array, the same number, without the import of ``numpy.ma`` that
    ``np.median`` makes on its first call (8 ms of every ``locate``'s start-up)."""
    v = np.sort(np.asarray(values))
    m = len(v) // 2
    return float(v[m]) if len(v) % 2 else float(np.mean(v[m - 1:m + 1]))


def channel_roles(array: MicArray, frames: np.ndarray, fs: int,
                  levels: np.ndarray) -> tuple[float, list[int], list[int], np.ndarray]:
    """The loudest mics' median level (dBFS); the dead channels (digital zero or far below it) and the
    live ones; and each channel's room coherence: its coherence, in a band where a diffuse field is
    coherent, with its m-th most coherent live partner (m: half of the other mics)."""
    n_ch, n_mics = array.n_channels, array.n_mics
    finite = np.sort(levels[np.isfinite(levels)])[::-1]
    ref_db = median(finite[:n_mics]) if len(finite) else -np.inf
    dead = [c for c in range(n_ch) if not np.isfinite(levels[c]) or levels[c] < ref_db - DEAD_BELOW_DB]
    live = [c for c in range(n_ch) if c not in dead]
    f_role = float(np.clip(SPEED_OF_SOUND_M_S / (4.0 * array.aperture_m()), _ROLE_BAND_HZ[1], _ROLE_BAND_HZ[2]))
    _, spec = cross_spectra(frames, fs, _ROLE_BAND_HZ[0], min(f_role, 0.45 * fs))
    msc = np.mean(np.abs(coherence(spec)) ** 2, axis=0)
    need = max(1, math.ceil((n_mics - 1) / 2))
    score = np.zeros(n_ch)
    for c in live:
        others = np.sort([msc[c, o] for o in live if o != c])[::-1]
        score[c] = others[need - 1] if len(others) >= need else 0.0
    return ref_db, dead, live, score


def check_channels(array: MicArray, frames: np.ndarray, *, sample_rate_hz: int | None = None) -> ChannelReport:
    """Check captured ``frames`` (n, array.n_channels) of int16/int32/float against ``array``'s channel map.

    ``sample_rate_hz`` defaults to the array's native rate; pass the capture rate when it differs."""
    frames = capture_frames(array, frames, "channel check")
    fs = int(sample_rate_hz or array.native_rate_hz)
    seconds = len(frames) / fs
    n_ch, n_mics = array.n_channels, array.n_mics
    levels = channel_levels_dbfs(frames)
    base = dict(array_name=array.name, seconds=seconds, level_dbfs=tuple(float(v) for v in levels),
                channel_map=tuple(array.channel_map), lookalike_rotations=lookalike_rotations(array),
                rotating_driver=array.name in _SEEED_VOICECARD_ARRAYS or any(
                    w in f"{array.source} {array.notes}".lower() for w in ("seeed-voicecard", "ac108")))

    def report(status: str, reason: str, problem: bool, **kw) -> ChannelReport:
        fields = dict(dead_channels=(), foreign_channels=(), room_coherence=(), rotation=None,
                      remapped_channel_map=None, consistent_rotations=(), geometry_residual=())
        fields.update(kw)
        return ChannelReport(status=status, reason=reason, problem=problem, **base, **fields)

    if seconds < MIN_SECONDS or len(frames) < 4 * segment_length(fs):
        return report("cannot_tell", f"only {seconds:.2f} s of audio (needs {MIN_SECONDS} s, {CHECK_SECONDS} s "
                                     f"recommended)", False)

    ref_db, dead, live, score = channel_roles(array, frames, fs, levels)
    # the mics' typical score; relative to it, because how coherent mics are depends on the room's SNR
    typical = median(np.sort(score)[::-1][:n_mics])
    n_seg = n_segments(len(frames), fs)
    mic_like = {c for c in live if score[c] >= max(5.0 / n_seg, RELATIVE_MSC * typical)}
    foreign = tuple(c for c in live if c not in mic_like)
    kw = dict(dead_channels=tuple(dead), foreign_channels=foreign, room_coherence=tuple(float(s) for s in score))
    levels_txt = ", ".join("zero" if not np.isfinite(v) else f"{v:.0f}" for v in levels)

    enough = max(2, n_mics // 2 + 1)
    if len(live) < enough:
        return report("cannot_tell", f"{len(live)} of {n_ch} channels carry signal (levels dBFS: {levels_txt})",
                      False, **kw)
    if typical < ROOM_MSC or len(mic_like) < enough:
        return report("cannot_tell", f"the channels share no sound (silence or sensor noise only: typical low-band "
                                     f"coherence {typical:.2f} < {ROOM_MSC}; levels dBFS: {levels_txt})", False, **kw)

    # -- rotations under which every mic channel is mic-like
    def misses(k: int) -> list[int]:
        return [c for c in rotated_map(array, k) if c not in mic_like]

    def bad_channels(k: int) -> ChannelReport:
        cmap = rotated_map(array, k)
        parts = []
        for c in misses(k):
            what = "digital zero" if not np.isfinite(levels[c]) else (
                f"{levels[c]:.0f} dBFS, {ref_db - levels[c]:.0f} dB below the others" if c in dead else
                f"live ({levels[c]:.0f} dBFS) but not coherent with the other mics ({score[c]:.2f})")
            parts.append(f"channel {c} (mic {cmap.index(c)}) is {what}")
        rot = f" with the channel order rotated by {k}" if k else ""
        return report("bad_channels", "; ".join(parts) + rot, True, rotation=k if k else None, **kw)

    consistent = [k for k in range(n_ch) if not misses(k)]
    if not consistent:
        return bad_channels(min(range(n_ch), key=lambda k: (len(misses(k)), k != 0)))

    # -- geometry: fit every consistent rotation, keep the best distinguishable one
    pos = array.positions()
    f_hi = min(FIT_BAND_HZ[1], 0.45 * fs)
    freqs_g, spec_g = cross_spectra(frames, fs, FIT_BAND_HZ[0], f_hi)
    coh_all = coherence(spec_g)
    fits: dict[int, float] = {}
    for k in consistent:
        # look-alike rotations fit exactly alike: fit one of each kind
        twin = next((j for j in fits if equivalent_rotations(array, j, k)), None)
        if twin is not None:
            fits[k] = fits[twin]
            continue
        m = list(rotated_map(array, k))
        fits[k] = geometry_residual(coh_all[:, m][:, :, m], freqs_g, pos)
    best = min(consistent, key=lambda k: (fits[k], k != 0))
    twins = sorted(k for k in consistent if equivalent_rotations(array, k, best))
    # a rival is believed to be worse only if it leaves at least twice the residual, by more than noise
    m_best = list(rotated_map(array, best))
    noise = FLOOR_FACTOR * estimation_floor(coh_all[:, m_best][:, :, m_best], n_seg)
    close = sorted(k for k in consistent if k not in twins and fits[k] - fits[best] < max(noise, fits[best]))
    roles_decide = len(twins) == len(consistent)  # dead/foreign channels alone pin the rotation down
    kw.update(consistent_rotations=tuple(consistent),
              geometry_residual=tuple((k, round(fits[k], 4)) for k in consistent),
              **_pair_rows(frames, fs, array, rotated_map(array, best)))
    if 0 not in consistent:
        # a dead mic can make a rotation look consistent when the spare channels are live (a loopback the
        # mics hear): then the configured order without its dead channels explains the room better
        dead0 = misses(0)
        spare = set(range(n_ch)) - set(array.channel_map)
        # ... unless the non-mic channels are exactly the spare ones moved by the best rotation (seeed's bug)
        moved = {(c + best) % n_ch for c in spare} == set(range(n_ch)) - mic_like
        if not moved and all(c in dead for c in dead0) and n_mics - len(dead0) >= 3:
            keep = [i for i, c in enumerate(array.channel_map) if c not in dead0]
            chans = [array.channel_map[i] for i in keep]
            fit0 = geometry_residual(coh_all[:, chans][:, :, chans], freqs_g, pos[keep])
            if fits[best] - fit0 >= max(noise, fit0):
                return bad_channels(0)
    if 0 in twins:
        why = _FITS + (
            f"; rotation(s) {join_channels(close)} fit about as well" if close else "")
        return report("ok", why, False, rotation=0, **kw)
    if close:
        tied = sorted(twins + close)
        why = (f"rotations {join_channels(tied)} fit the geometry about equally "
               f"(residuals {', '.join(f'{fits[k]:.2f}' for k in tied)})")
        # the configured order among the equals: no evidence that anything is wrong
        return report("cannot_tell", why, 0 not in close, **kw)
    if len(twins) > 1:
        return report("cannot_tell", f"the order is rotated by one of {join_channels(twins)}, which look alike for this "
                                     f"array", True, **kw)
    why = _rotation_reason(array, best, dead, foreign, fits, roles_decide)
    return report("rotated", why, True, rotation=best, remapped_channel_map=rotated_map(array, best), **kw)


def _rotation_reason(array: MicArray, k: int, dead: Sequence[int], foreign: Sequence[int], fits: dict[int, float],
                     roles_decide: bool) -> str:
    expected = sorted(set(range(array.n_channels)) - set(array.channel_map))
    found = sorted(set(dead) | set(foreign))
    if roles_decide and expected:
        return f"the non-mic channels are on {join_channels(found)}, expected on {join_channels(expected)}"
    if 0 in fits:
        return f"geometry fit: residual {fits[k]:.2f} against {fits[0]:.2f} for the configured order"
    return (f"the configured order puts mics on non-mic channel(s) {join_channels(sorted(set(found) & set(array.channel_map)))}"
            f"; geometry fit: residual {fits[k]:.2f}")


def _pair_rows(frames: np.ndarray, fs: int, array: MicArray, cmap: Sequence[int]) -> dict:
    # the low band up to the first zero of the longest pair's sinc: there pairs differ most
    f_hi = min(SPEED_OF_SOUND_M_S / (2.0 * array.aperture_m()), 0.45 * fs)
    freqs, spec = cross_spectra(np.asarray(frames)[:, list(cmap)], fs, _ROLE_BAND_HZ[0], f_hi)
    coh = coherence(spec)
    i, j = pair_indices(array.n_mics)
    pos = array.positions()
    d = np.linalg.norm(pos[i] - pos[j], axis=1)
    measured = np.mean(coh[:, i, j].real, axis=0)
    diffuse = np.mean(np.sinc(2.0 * freqs[:, None] * d[None, :] / SPEED_OF_SOUND_M_S), axis=0)
    return dict(pair_distance_m=tuple(round(float(v), 4) for v in d),
                pair_coherence=tuple(round(float(v), 3) for v in measured),
                pair_diffuse=tuple(round(float(v), 3) for v in diffuse))


def check_and_remap(array: MicArray, frames: np.ndarray, remap: bool, *, sample_rate_hz: int | None = None
                    ) -> tuple[MicArray, ChannelReport]:
    """The start-up hook: check ``frames`` (all capture channels), log the result in one line (a warning
    with the fix when something is off) and return the array to use: with the remapped channel map only
    when the rotation is unambiguous and ``remap`` is allowed, else ``array`` unchanged."""
    rep = check_channels(array, frames, sample_rate_hz=sample_rate_hz)
    if rep.status == "rotated" and remap and rep.remapped_channel_map is not None:
        log.warning("channel check (%s, %.1f s): channel order rotated by %d (%s); remapped: using channel_map %s "
                    "until the device is reopened%s", array.name, rep.seconds, rep.rotation, rep.reason,
                    list(rep.remapped_channel_map), _SEEED if rep.rotating_driver else "")
        return dataclasses.replace(array, channel_map=rep.remapped_channel_map), rep
    if rep.problem:
        log.warning("%s", rep.describe())
    else:
        log.info("%s", rep.describe())
    return array, rep


class StartupCheck:
    """The daemon's start-up hook around :func:`check_and_remap`: hold back the first ``seconds`` of
    capture, check them in a worker thread (so the capture keeps being read and does not overrun),
    then release the held frames and pass everything after them through. ``array`` is the array to
    use (remapped only in mode "remap" after a clear rotation). Call :meth:`reset` whenever the device
    was reopened: the seeed-voicecard driver picks a new order on each open."""

    def __init__(self, array: MicArray, mode: str = "warn", *, sample_rate_hz: int,
                 seconds: float = CHECK_SECONDS, background: bool = True) -> None:
        if mode not in CHECK_MODES:
            raise ValueError(f"channel_check = {mode!r} is invalid; allowed: {', '.join(CHECK_MODES)}")
        self.configured = array
        self.mode = mode
        self.sample_rate_hz = int(sample_rate_hz)
        self.need_frames = max(1, int(round(seconds * self.sample_rate_hz)))
        self.background = background
        self.reset()

    def reset(self, array: MicArray | None = None) -> None:
        """Check again from the next frames (after a reopen; ``array``: a newly configured array)."""
        self.configured = array or self.configured
        self.array = self.configured
        self.report: ChannelReport | None = None
        self.done = self.mode == "off"
        self._held: list[np.ndarray] = []
        self._n_held = 0
        self._worker: threading.Thread | None = None
        self._result: tuple[MicArray, ChannelReport] | None = None

    def _run(self, frames: np.ndarray) -> None:
        try:
            self._result = check_and_remap(self.configured, frames, self.mode == "remap",
                                           sample_rate_hz=self.sample_rate_hz)
        except Exception:  # a failed self-check must not stop the audio: go on with the configured map
            log.exception("channel check failed; using the configured channel map")
            self._result = None

    def feed(self, frames: np.ndarray) -> np.ndarray:
        """Frames to process now: none while the first seconds are held and checked, then all held ones."""
        if self.done:
            return frames
        if len(frames):
            self._held.append(np.asarray(frames))
            self._n_held += len(frames)
        if self._worker is None and self._n_held >= self.need_frames:
            audio = np.concatenate(self._held)
            self._worker = threading.Thread(target=self._run, args=(audio,), name="channel-check", daemon=True)
            if self.background:
                self._worker.start()
            else:
                self._worker.run()
        if self._worker is not None and not self._worker.is_alive():
            return self._release()
        return np.asarray(frames)[:0]

    def finish(self) -> np.ndarray:
        """Wait for a running check and release what is held (end of stream)."""
        if self._worker is not None and self._worker.is_alive():
            self._worker.join()
        return self._release() if self._held else np.zeros((0, self.configured.n_channels), np.int16)

    def _release(self) -> np.ndarray:
        if self._result is not None:
            self.array, self.report = self._result
        self.done = True
        out = np.concatenate(self._held) if self._held else np.zeros((0, self.configured.n_channels), np.int16)
        self._held, self._n_held = [], 0
        return out
