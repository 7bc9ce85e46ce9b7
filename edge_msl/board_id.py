"""Which built-in board a recording or capture is, from its channel count, rate and sound (silent channels,
mic-like loopbacks, the geometry fit), and the array ``edge-msl locate`` uses for a recording without
--array. Pure numpy; it must not open devices, and refuses with the fix when the board is ambiguous.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .arrays import ArrayConfigError, MicArray
from .channel_check import (MIN_SECONDS, RELATIVE_MSC, ROOM_MSC, capture_frames, channel_roles, median,
                            join_channels)
from .coherence import (FIT_BAND_HZ, FLOOR_FACTOR, channel_levels_dbfs, coherence, cross_spectra, estimation_floor,
                        geometry_residual, n_segments, segment_length)

log = logging.getLogger("edge_msl.channel_check")  # one name in logs for the whole start-up check

@dataclass(frozen=True)
class Identification:
    """Which built-in array a capture comes from, as far as its shape and sound tell."""

    array_name: str | None
    """The array to use, or None when the evidence does not single one out (refuse, name the candidates)."""
    candidates: tuple[str, ...]
    """Built-in arrays that deliver this many channels (and fit the device's card id, if known)."""
    reason: str
    """One phrase: the evidence that decided, or why nothing did."""
    certain: bool
    """False when only the sample rate broke the tie (a loud warning, not a silent guess)."""
    mics_only: bool = False
    """True when ``array_name``'s mics alone fit best (its other capture channels were left out)."""


def room_coherence(array: MicArray, frames: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """``check_channels(array, frames, sample_rate_hz=...).room_coherence`` alone (the same numbers, empty
    when the audio is too short): per capture channel, its low-band coherence with its m-th most coherent
    live partner. The identification needs only this; the rest of the channel check (the geometry fit of
    every consistent rotation) costs about 4 times more."""
    frames = capture_frames(array, frames, "board identification")
    fs = int(sample_rate_hz)
    if len(frames) / fs < MIN_SECONDS or len(frames) < 4 * segment_length(fs):
        return np.zeros(0)
    _, _, _, score = channel_roles(array, frames, fs, channel_levels_dbfs(frames))
    return score


def _best_fit(cands: list[MicArray], frames: np.ndarray, sample_rate_hz: int) -> tuple[MicArray, str] | None:
    """The candidate whose geometry the mics' coherence fits clearly best (half the rivals' residual, above
    the estimation noise), with the residuals as text; None when no candidate stands out."""
    fs = int(sample_rate_hz)
    freqs, spec = cross_spectra(frames, fs, FIT_BAND_HZ[0], min(FIT_BAND_HZ[1], 0.45 * fs))
    coh = coherence(spec)
    n_seg = n_segments(len(frames), fs)
    fits = []
    for a in cands:
        m = list(a.channel_map)
        fits.append((geometry_residual(coh[:, m][:, :, m], freqs, a.positions()), a))
    fits.sort(key=lambda t: t[0])
    (r0, best), rest = fits[0], fits[1:]
    m0 = list(best.channel_map)
    noise = FLOOR_FACTOR * estimation_floor(coh[:, m0][:, :, m0], n_seg)
    if rest and rest[0][0] - r0 < max(noise, r0) or r0 >= 0.5:
        return None
    return best, "residual " + ", ".join(f"{a.name} {r:.2f}" for r, a in fits)


def identify_array(n_channels: int, sample_rate_hz: int, frames: np.ndarray | None = None,
                   pcm_name: str | None = None) -> Identification:
    """Pick the built-in array a capture of ``n_channels`` at ``sample_rate_hz`` comes from.

    Evidence, strongest first: the device's card id (``pcm_name``); the channel count; a channel that is
    digital zero rules out every array with a mic there, and silent spare channels where a board has
    them point at it; the mics' coherence fits one geometry clearly better than the others; last, the
    board's native rate (then ``certain`` is False)."""
    from .arrays import boards_for_device, get_array, list_arrays, spare_channels

    builtin = [get_array(n) for n in list_arrays()]
    cands = [a for a in builtin if a.n_channels == n_channels]
    hinted = boards_for_device(pcm_name) if pcm_name else ()
    if hinted:
        both = [a for a in cands if a.name in hinted]
        if both:
            cands = both
            if len(cands) == 1:
                return Identification(cands[0].name, (cands[0].name,), f"the device {pcm_name} is its card", True)
    names = tuple(a.name for a in cands)
    # the mics of a board alone (its loopback/processed channels dropped) also have this many channels
    alone = [dataclasses.replace(a, channel_map=tuple(range(a.n_mics)), n_channels=a.n_mics) for a in builtin
             if a.n_mics == n_channels and a.n_channels != n_channels and not hinted]
    enough = frames is not None and len(frames) >= MIN_SECONDS * sample_rate_hz
    # the digital-zero channels, read once for both uses below (only cands can shrink in between)
    zero = ({c for c, v in enumerate(channel_levels_dbfs(np.asarray(frames))) if not np.isfinite(v)}
            if enough and (alone or len(cands) > 1) else set())
    if alone and enough:
        # a digital-zero channel is no mic: that rules out every board's mics alone (all their channels are mics)
        # before the geometry fit (33 ms of `locate --array respeaker-usb-v2`'s start-up, whose loopback is silent)
        alone = [a for a in alone if not zero & set(a.channel_map)]
    if alone and enough:
        fit = _best_fit(cands + alone, frames, sample_rate_hz)
        if fit is not None and fit[0] in alone:
            return Identification(fit[0].name, tuple(a.name for a in alone), f"its {n_channels} channels fit the "
                                  f"geometry of {fit[0].name}'s mics best ({fit[1]})", True, mics_only=True)
    why: list[str] = []
    if enough and cands:
        # a loopback channel as coherent with the mics as they are with each other is a mic: not this board
        against = {}
        for a in cands:
            loop = [c for c, k in spare_channels(a).items() if k == "loopback"]
            if not loop:
                continue
            score = room_coherence(a, frames, sample_rate_hz)
            if not len(score):
                continue
            typical = median(np.sort(score)[::-1][:a.n_mics])
            micish = [c for c in loop if typical >= ROOM_MSC and score[c] >= RELATIVE_MSC * typical]
            if micish:
                against[a.name] = micish
        left = [a for a in cands if a.name not in against]
        if against and not left and alone:
            pick = _best_fit(alone, frames, sample_rate_hz) if len(alone) > 1 else (alone[0], "")
            if pick is not None:
                return Identification(pick[0].name, tuple(a.name for a in alone), "the loopback channel(s) of "
                                      + ", ".join(f"{n} ({join_channels(c)})" for n, c in against.items())
                                      + " sound like mics", True, mics_only=True)
        if against and left:
            why.append(", ".join(f"{n}'s loopback channel(s) {join_channels(c)} sound like mics" for n, c in against.items()))
            cands = left
        elif against:
            return Identification(None, names, ", ".join(f"{n}'s loopback channel(s) {join_channels(c)} sound like mics"
                                                         for n, c in against.items()), False)
    if not cands:
        return Identification(None, (), f"no built-in array delivers {n_channels} channels", False)
    if len(cands) == 1:
        why.append(f"the only built-in array with {n_channels} capture channels")
        return Identification(cands[0].name, names, "; ".join(why), True)
    if enough:
        frames = np.asarray(frames)
        if zero:
            live = [a for a in cands if not zero & set(a.channel_map)]
            if live and len(live) < len(cands):
                why.append(f"channel(s) {join_channels(sorted(zero))} digital zero")
                cands = live
            # the silent channels are exactly a board's loopback/unused ones: that board
            exact = [a for a in cands if zero == {c for c, k in spare_channels(a).items() if k != "processed"}]
            if len(exact) == 1 and len(cands) > 1:
                cands = exact
        if len(cands) == 1:
            return Identification(cands[0].name, names, ", ".join(why) or "its silent channels", True)
        fit = _best_fit(cands, frames, sample_rate_hz)
        if fit is not None:
            why.append(f"the mics' coherence fits its geometry best ({fit[1]})")
            return Identification(fit[0].name, names, "; ".join(why), True)
        why.append(f"the first {len(frames) / sample_rate_hz:.0f} s do not fit one of their geometries clearly better")
    native = [a for a in cands if a.native_rate_hz == sample_rate_hz]
    if len(native) == 1:
        why.append(f"{native[0].name} is the only one of them that captures at {sample_rate_hz} Hz natively")
        return Identification(native[0].name, names, "; ".join(why), False)
    why.append(f"none of them captures at {sample_rate_hz} Hz natively" if not native else
               f"{', '.join(a.name for a in native)} all capture at {sample_rate_hz} Hz natively")
    return Identification(None, tuple(a.name for a in (native or cands)), "; ".join(why), False)



def _pan_fix(path: str, n_mics: int, cmap: Sequence[int], n_channels: int) -> str:
    pan = "|".join(f"c{c}=c{i}" for i, c in enumerate(cmap))
    return f"ffmpeg -i {path} -af 'pan={n_channels}c|{pan}' capture.wav"


def array_for_recording(n_channels: int, sample_rate_hz: int, head: np.ndarray | None, what: str,
                        array: MicArray | None = None) -> MicArray:
    """The array to read a recording with: ``array`` (from ``--array``) checked against the recording's
    channels, or, without one, the built-in array the recording shows (see :func:`identify_array`).

    Logs one line on how it was chosen (a warning when only the rate decided); raises
    :class:`ArrayConfigError` with the fix when the channels do not fit or the board cannot be told."""
    from .arrays import capture_layout, get_array, list_arrays

    counts = ", ".join(f"{n} {get_array(n).n_channels}" for n in list_arrays())
    if array is not None:
        if n_channels == array.n_channels:
            if array.name in list_arrays():
                other = identify_array(n_channels, sample_rate_hz, head)
                if other.array_name not in (None, array.name) and other.certain:
                    log.warning("%s does not sound like %s but like %s (%s); check --array", what, array.name,
                                other.array_name, other.reason)
            return array
        layout = capture_layout(array)
        if n_channels == array.n_mics:
            raise ArrayConfigError(
                f"{what} has {n_channels} channels: {array.name}'s {array.n_mics} mics alone, without the rest of its "
                f"capture ({array.n_channels} channels: {layout}); record all {array.n_channels} channels (arecord -c "
                f"{array.n_channels}), or lay the mics out as the board does: "
                f"{_pan_fix(what, array.n_mics, array.channel_map, array.n_channels)}")
        other = identify_array(n_channels, sample_rate_hz, head)
        hint = (f"a {n_channels}-channel capture is {other.array_name}'s: --array {other.array_name}"
                if other.array_name else f"channels per built-in array: {counts}")
        raise ArrayConfigError(f"{what} has {n_channels} channels, array {array.name!r} expects {array.n_channels} "
                               f"({layout}); give the array that recorded it ({hint}) or a TOML file with an [array] "
                               f"table")
    found = identify_array(n_channels, sample_rate_hz, head)
    where = f"{what}: {n_channels} channels at {sample_rate_hz} Hz"
    if found.mics_only and found.array_name:
        a = get_array(found.array_name)
        raise ArrayConfigError(
            f"{where} look like {a.name}'s {a.n_mics} mics alone ({found.reason}), without the rest of its capture "
            f"({a.n_channels} channels: {capture_layout(a)}); record all {a.n_channels} channels, or lay the mics out "
            f"as the board does: {_pan_fix(what, a.n_mics, a.channel_map, a.n_channels)}, or give --array NAME")
    if found.array_name is None:
        if not found.candidates:
            mics_only = [n for n in list_arrays() if get_array(n).n_mics == n_channels]
            extra = (f"; if these are the mics of {' or '.join(mics_only)} alone, lay them out as the board does "
                     f"(--array {mics_only[0]} prints the command)" if mics_only else "")
            raise ArrayConfigError(f"{where}: no built-in array delivers {n_channels} channels (channels per array: "
                                   f"{counts}){extra}; give --array NAME, or a TOML file with an [array] table "
                                   f"(docs/boards.md, Arrays)")
        raise ArrayConfigError(f"{where} could be any of {', '.join(found.candidates)} ({found.reason}); give the "
                               f"board with --array NAME, e.g. --array {found.candidates[0]}")
    chosen = get_array(found.array_name)
    if found.certain:
        log.info("%s: array %s (%s); --array NAME to override", where, chosen.name, found.reason)
    else:
        log.warning("%s: ASSUMING array %s (%s); if another board (%s) recorded it, give --array NAME", where,
                    chosen.name, found.reason, ", ".join(c for c in found.candidates if c != chosen.name))
    return chosen
