"""Which way an array is turned or mirrored, from a talker at a known direction: the planar isometries of an
array, the steered response of its mics, and the report that says the fix (a channel map). Pure numpy;
it must not open devices.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .arrays import MicArray
from .channel_check import MIN_SECONDS, capture_frames
from .coherence import cross_spectra, pair_indices, segment_length
from .srp import directions, pair_delays_s, phat, steered_power

log = logging.getLogger("edge_msl.channel_check")  # one name in logs for the whole start-up check

@dataclass(frozen=True)
class Isometry:
    """A rotation or reflection of the plane that maps the array's mics onto its own mics."""

    kind: str
    """``rotation`` (by ``angle_deg``, counter-clockwise) or ``reflection`` (about the axis at ``angle_deg``)."""
    angle_deg: float
    """Rotation angle, or azimuth of the mirror axis, in [0, 360) (an axis also in [0, 180))."""
    perm: tuple[int, ...]
    """Mic i lands on mic ``perm[i]``."""

    def image_deg(self, azimuth_deg: float) -> float:
        """Where a talker at ``azimuth_deg`` appears when the channel of each mic i carries mic ``perm[i]``."""
        if self.kind == "rotation":
            return (azimuth_deg - self.angle_deg) % 360.0
        return (2.0 * self.angle_deg - azimuth_deg) % 360.0

    def describe(self) -> str:
        if self.kind == "rotation":
            return f"turned by {self.angle_deg:.0f} deg"
        return f"mirrored about the {self.angle_deg:.0f} deg axis"


def planar_isometries(array: MicArray, tol_m: float = 1e-3) -> list[Isometry]:
    """Every rotation (other than none) and reflection of the x-y plane about the array centre that maps
    the mics onto themselves. None of them can be seen in the sound alone: the pairwise distances, and
    so every delay and coherence, are those of the configured order with the talkers moved to the image
    directions; only a talker at a known direction tells them apart."""
    pos = array.positions()
    if np.ptp(pos[:, 2]) > tol_m:
        return []
    xy = pos[:, :2]
    radius = np.linalg.norm(xy, axis=1)
    ref = int(np.argmax(radius))
    a_ref = math.atan2(xy[ref, 1], xy[ref, 0])
    out: list[Isometry] = []
    seen = set()
    for j in range(len(xy)):
        if abs(radius[j] - radius[ref]) > tol_m:
            continue
        a_j = math.atan2(xy[j, 1], xy[j, 0])
        for kind in ("rotation", "reflection"):
            if kind == "rotation":
                t = a_j - a_ref
                m = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
                angle = math.degrees(t) % 360.0
            else:
                b = 0.5 * (a_j + a_ref)  # the axis halfway between the mic and its image
                m = np.array([[math.cos(2 * b), math.sin(2 * b)], [math.sin(2 * b), -math.cos(2 * b)]])
                angle = math.degrees(b) % 180.0
            img = xy @ m.T
            d = np.linalg.norm(img[:, None] - xy[None], axis=-1)
            perm = tuple(int(k) for k in np.argmin(d, axis=1))
            if np.max(np.min(d, axis=1)) > tol_m or len(set(perm)) != len(perm):
                continue
            if perm == tuple(range(len(xy))) or perm in seen:
                continue
            seen.add(perm)
            out.append(Isometry(kind, round(angle, 6), perm))
    return out


def mirrored_map(array: MicArray, iso: Isometry) -> tuple[int, ...]:
    """The channel map that undoes ``iso``: with ``array.channel_map`` each mic i's channel carried mic
    ``iso.perm[i]``; the returned map reads mic j from the channel that carried it."""
    inv = [0] * len(iso.perm)
    for i, j in enumerate(iso.perm):
        inv[j] = i
    return tuple(array.channel_map[inv[j]] for j in range(len(inv)))


ORIENTATION_TOL_DEG = 10.0
"""A talker found within this of a predicted direction matches it (room echoes and the grid move the peak)."""

MIN_PEAK = 0.15
"""Steered-response peak (PHAT, 1 = every pair and bin agrees) below which no single talker dominates."""


@dataclass(frozen=True)
class OrientationReport:
    """Where one talker at a known direction comes out, under the configured channel order."""

    array_name: str
    """The configured array."""
    status: str
    """``ok``, ``mirrored`` (a reflection of the ring: every azimuth would be mirrored), ``rotated``,
    ``off`` (no order of this geometry puts the talker there) or ``cannot_tell``."""
    reason: str
    """One line: what was found."""
    problem: bool
    """True when the user should act."""
    talker_azimuth_deg: float
    """Where the user says the talker is."""
    found_azimuth_deg: float | None
    """Where the steered response of the configured order peaks."""
    peak: float
    """Height of that peak (0..1)."""
    isometry: Isometry | None = None
    """The rotation or reflection the channels follow (status mirrored or rotated)."""
    remapped_channel_map: tuple[int, ...] | None = None
    """The channel map that puts the mics back (status mirrored or rotated)."""
    unresolved: tuple[str, ...] = ()
    """Orders this talker's direction cannot tell from the one found (it sits near their mirror axis)."""
    better_azimuths_deg: tuple[float, ...] = ()
    """Talker directions at which every order of this geometry puts the talker somewhere else."""

    def describe(self) -> str:
        """One line for the log: what was found and the fix."""
        where = f"orientation check ({self.array_name}, talker at {self.talker_azimuth_deg:.0f} deg)"
        tail = ""
        if self.unresolved:
            tail = (f"; from this direction it cannot rule out an order {', '.join(self.unresolved)}: repeat with the "
                    f"talker at {', '.join(f'{a:.0f}' for a in self.better_azimuths_deg)} deg")
        if self.status == "ok":
            return f"{where}: ok, found at {self.found_azimuth_deg:.0f} deg{tail}"
        if self.status in ("mirrored", "rotated"):
            assert self.isometry is not None
            return (f"{where}: found at {self.found_azimuth_deg:.0f} deg: the channel order is "
                    f"{self.isometry.describe()} ({self.reason}). Fix: set [array] channel_map = "
                    f"{list(self.remapped_channel_map or ())} (or --array a TOML file with it){tail}")
        if self.status == "off":
            return (f"{where}: {self.reason}. Fix: check where the array's x axis points (docs/boards.md), the "
                    f"talker's direction, and that [array] is this board")
        return f"{where}: cannot tell: {self.reason}; talk steadily from one place, alone, and check again"


def steered_response(frames_mics: np.ndarray, positions_m: np.ndarray, sample_rate_hz: int,
                     azimuths_deg: np.ndarray, elevations_deg: Sequence[float] = (0.0, 20.0, 40.0)
                     ) -> np.ndarray:
    """SRP-PHAT (azimuths,) of mic frames (n, M): per azimuth the best over ``elevations_deg``, normalized
    so that 1 means every pair and frequency bin agrees with a plane wave from there. The cross-spectra
    are Welch averages with PHAT after averaging (a loud moment weighs more, unlike the decode's per-frame
    PHAT); the response is :func:`edge_msl.srp.steered_power`."""
    f_hi = min(8000.0, 0.45 * sample_rate_hz)
    freqs, s = cross_spectra(frames_mics, sample_rate_hz, 200.0, f_hi)
    i, j = pair_indices(len(positions_m))
    c = phat(s[:, i, j].T, floor=1e-30)                               # (P, F)
    offsets = positions_m[i] - positions_m[j]
    best = np.full(len(azimuths_deg), -np.inf)
    for el in elevations_deg:
        p = steered_power(c, freqs, pair_delays_s(offsets, directions(azimuths_deg, el))) / c.size
        best = np.maximum(best, p)
    return best


def _ang(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def probe_azimuths_deg(array: MicArray, n: int = 4) -> tuple[float, ...]:
    """Talker directions that tell every symmetric order of ``array`` apart best (farthest from every mirror
    axis): the images of such a talker under all rotations and reflections are as far apart as they get."""
    isos = planar_isometries(array)
    if not isos:
        return (0.0, 90.0, 180.0, 270.0)[:n]
    grid = np.arange(0.0, 360.0, 1.0)
    sep = np.array([min(_ang(g.image_deg(a), a) for g in isos) for a in grid])
    top = float(np.max(sep))
    good = [float(a) for a, v in zip(grid, sep) if v >= top - 1.0]
    # one per cluster of neighbouring degrees, at most n, spread around the circle
    picks: list[float] = []
    for a in good:
        if all(_ang(a, b) > 5.0 for b in picks):
            picks.append(a)
    step = max(1, len(picks) // n)
    return tuple(picks[::step][:n])


def check_orientation(array: MicArray, frames: np.ndarray, talker_azimuth_deg: float, *,
                      sample_rate_hz: int | None = None, tol_deg: float = ORIENTATION_TOL_DEG) -> OrientationReport:
    """From a capture (n, array.n_channels) of one talker at a known azimuth, tell whether the channel
    order is right, mirrored (the ring numbered the other way round) or turned.

    No capture without a known direction can: a mirrored ring hears a talker at azimuth a exactly as the
    right ring hears one at the mirror image of a. Here the configured order's steered response peaks
    at some azimuth; the right order puts it at the talker, a ring mirrored about axis b at 2b - a, one
    turned by t at a - t. The talker must be off the mirror axis (a != b, b + 180)."""
    frames = capture_frames(array, frames, "orientation check")
    fs = int(sample_rate_hz or array.native_rate_hz)
    theta = float(talker_azimuth_deg) % 360.0
    base = dict(array_name=array.name, talker_azimuth_deg=theta)
    if len(frames) < 4 * segment_length(fs) or len(frames) / fs < MIN_SECONDS:
        return OrientationReport(status="cannot_tell", reason=f"only {len(frames) / fs:.2f} s of audio (needs "
                                 f"{MIN_SECONDS} s)", problem=False, found_azimuth_deg=None, peak=0.0, **base)
    mics = array.select_channels(frames)
    grid = np.arange(0.0, 360.0, 1.0)
    srp = steered_response(mics, array.positions(), fs, grid)
    k = int(np.argmax(srp))
    found, peak = float(grid[k]), float(srp[k])
    if peak < MIN_PEAK:
        return OrientationReport(status="cannot_tell", reason=f"no single talker stands out (steered-response peak "
                                 f"{peak:.2f} < {MIN_PEAK})", problem=False, found_azimuth_deg=found, peak=peak,
                                 **base)
    isos = planar_isometries(array)
    # candidates: the configured order and every symmetry, each with where it would put the talker
    cands: list[tuple[float, Isometry | None]] = [(_ang(found, theta), None)]
    cands += [(_ang(found, g.image_deg(theta)), g) for g in isos]
    err, best = min(cands, key=lambda c: (c[0], c[1] is not None))
    if err > tol_deg:
        return OrientationReport(status="off", reason=f"found at {found:.0f} deg, {_ang(found, theta):.0f} deg from "
                                 f"the talker, and no mirror or turn of this ring puts it there", problem=True,
                                 found_azimuth_deg=found, peak=peak, **base)
    best_img = theta if best is None else best.image_deg(theta)
    others = [theta] + [g.image_deg(theta) for g in isos if g is not best] if best is not None else \
        [g.image_deg(theta) for g in isos]
    names = (["the configured order"] if best is not None else []) + [g.describe() for g in isos if g is not best]
    unresolved = tuple(n for n, img in zip(names, others) if _ang(img, best_img) < 2 * tol_deg)
    if best is None:
        return OrientationReport(status="ok", reason="found where the talker is", problem=False,
                                 found_azimuth_deg=found, peak=peak, unresolved=unresolved,
                                 better_azimuths_deg=probe_azimuths_deg(array) if unresolved else (), **base)
    status = "mirrored" if best.kind == "reflection" else "rotated"
    if status == "mirrored":
        why = f"a ring mirrored about the {best.angle_deg:.0f} deg axis puts a talker at {theta:.0f} deg at " \
              f"{best_img:.0f} deg; every azimuth would come out mirrored"
    else:
        why = f"a ring turned by {best.angle_deg:.0f} deg puts the talker at {best_img:.0f} deg"
    return OrientationReport(status=status, reason=why, problem=True, found_azimuth_deg=found, peak=peak,
                             isometry=best, remapped_channel_map=mirrored_map(array, best), unresolved=unresolved,
                             better_azimuths_deg=probe_azimuths_deg(array) if unresolved else (), **base)
