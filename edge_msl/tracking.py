"""Source tracking on circular azimuth: per-window detections in, sources with stable ids out.

Used by the streaming pipeline after decode. Pure Python + math, no audio, no model, no I/O.
It must not extrapolate an unobserved track (ODAS tracks drift into silence and never end,
introlab/odas#206): a track that is not seen holds its place and ends after a fixed timeout.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from .regions import Detection, angular_distance_deg, wrap360
from .settings_check import reject_unknown_keys


class TrackerConfigError(ValueError):
    """Tracker settings are invalid; the message names the key, the value and what is allowed."""


@dataclass(frozen=True)
class TrackerSettings:
    """How detections become tracks (defaults chosen with ``benchmarks/locate_bench.py``)."""

    gate_deg: float = 25.0
    """A detection farther than this (circular azimuth) from a track cannot continue it."""
    confirm_hits: int = 2
    """A new track is published once it has this many detections ...  (k of n)."""
    confirm_windows: int = 3
    """... within its first this-many windows; otherwise it is discarded as a false alarm."""
    confirm_confidence: float = 0.6
    """A new track whose first detection is at least this probable is published at once (1: never)."""
    end_after_s: float = 0.6
    """A published track not detected for this long ends; its id is never reused."""
    direction_alpha: float = 0.6
    """Weight of a new detection in the smoothed direction (exponential on unit vectors; 1 = raw)."""
    distance_alpha: float = 0.3
    """Weight of a new detection in the smoothed distance (1 = raw)."""
    confidence_alpha: float = 0.5
    """Weight of this window's probability (0 when missed) in the published confidence."""
    merge_deg: float = 12.0
    """Two published tracks closer than this are one source: the younger one ends."""

    def __post_init__(self) -> None:
        def bad(key: str, allowed: str) -> TrackerConfigError:
            return TrackerConfigError(f"tracking.{key} = {getattr(self, key)!r} is invalid; allowed: {allowed}")

        for key in ("gate_deg", "merge_deg"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < 180.0:
                raise bad(key, "a number of degrees in (0, 180)")
        for key in ("confirm_hits", "confirm_windows"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(key, "an integer >= 1")
        if self.confirm_hits > self.confirm_windows:
            raise bad("confirm_hits", f"an integer in [1, confirm_windows = {self.confirm_windows}]")
        v = self.end_after_s
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v <= 3600.0:
            raise bad("end_after_s", "seconds in (0, 3600]")
        for key in ("direction_alpha", "distance_alpha", "confidence_alpha", "confirm_confidence"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v <= 1.0:
                raise bad(key, "a number in (0, 1]")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (TOML/JSON); :meth:`from_dict` reads it back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> "TrackerSettings":
        """Settings from a config table; unknown keys and bad values are refused by name."""
        if not isinstance(cfg, Mapping):
            raise TrackerConfigError(f"tracking must be a table of settings, got {type(cfg).__name__}")
        reject_unknown_keys(cls, cfg, "tracking key", TrackerConfigError)
        return cls(**dict(cfg))


@dataclass(frozen=True)
class TrackedSource:
    """One published track at one instant."""

    id: int
    """Track id: unique, increasing in order of publication, never reused (also not after a reset)."""
    azimuth_deg: float
    """Smoothed azimuth in [0, 360), counter-clockwise from the array's x axis."""
    distance_m: float
    """Smoothed horizontal distance from the array centre."""
    confidence: float
    """Smoothed region probability; decays while the track is not detected."""
    region: int
    """Region of the latest detection."""
    active: bool
    """True when the track was detected in this window, False while it is held through a dropout."""


class _Track:
    __slots__ = ("ux", "uy", "distance_m", "confidence", "region", "id", "born", "windows", "hits",
                 "last_hit_t_s", "active")

    def __init__(self, det: Detection, t_s: float) -> None:
        a = math.radians(det.azimuth_deg)
        self.ux, self.uy = math.cos(a), math.sin(a)
        self.distance_m = float(det.distance_m)
        self.confidence = float(det.confidence)
        self.region = int(det.region)
        self.id: int | None = None
        self.windows = 1
        self.hits = 1
        self.last_hit_t_s = t_s
        self.active = True

    @property
    def azimuth_deg(self) -> float:
        return float(wrap360(math.degrees(math.atan2(self.uy, self.ux))))

    def hit(self, det: Detection, t_s: float, s: TrackerSettings) -> None:
        a = math.radians(det.azimuth_deg)
        ux = (1.0 - s.direction_alpha) * self.ux + s.direction_alpha * math.cos(a)
        uy = (1.0 - s.direction_alpha) * self.uy + s.direction_alpha * math.sin(a)
        norm = math.hypot(ux, uy)
        if norm > 1e-9:  # two opposite directions average to nothing: keep the new one then
            self.ux, self.uy = ux / norm, uy / norm
        else:
            self.ux, self.uy = math.cos(a), math.sin(a)
        self.distance_m += s.distance_alpha * (float(det.distance_m) - self.distance_m)
        self.confidence += s.confidence_alpha * (float(det.confidence) - self.confidence)
        self.region = int(det.region)
        self.windows += 1
        self.hits += 1
        self.last_hit_t_s = t_s
        self.active = True

    def miss(self, s: TrackerSettings) -> None:
        self.confidence *= 1.0 - s.confidence_alpha
        self.windows += 1
        self.active = False

    def report(self) -> TrackedSource:
        assert self.id is not None
        return TrackedSource(self.id, self.azimuth_deg, self.distance_m, self.confidence, self.region, self.active)


class Tracker:
    """Associates each window's detections with tracks; publishes confirmed tracks with ids.

    Per window: greedy global-nearest assignment on circular azimuth within ``gate_deg``
    (published tracks first), smoothing of matched tracks, new tentative tracks from the
    unmatched detections, k-of-n confirmation, end after ``end_after_s`` without a detection,
    and merging of published tracks that meet.
    """

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._last_t_s: float | None = None

    def reset(self) -> None:
        """Forget every track (after a gap in the audio); ids keep increasing from where they were."""
        self._tracks = []
        self._last_t_s = None

    @property
    def next_id(self) -> int:
        """The id the next published track will get."""
        return self._next_id

    def update(self, detections: Sequence[Detection], t_s: float) -> list[TrackedSource]:
        """Feed one window's detections (at time ``t_s``); returns the published tracks, by id."""
        s = self.settings
        if self._last_t_s is not None and t_s < self._last_t_s:
            raise ValueError(f"time went backwards: {t_s} s after {self._last_t_s} s; call reset() after a gap")
        self._last_t_s = t_s
        # every (track, detection) pair inside the gate, nearest first; published tracks before
        # tentative ones so a false alarm next to a talker cannot take the talker's detection
        pairs = []
        for ti, tr in enumerate(self._tracks):
            az = tr.azimuth_deg
            for di, det in enumerate(detections):
                d = float(angular_distance_deg(az, det.azimuth_deg))
                if d <= s.gate_deg:
                    pairs.append((tr.id is None, d, ti, di))
        pairs.sort()
        used_t: set[int] = set()
        used_d: set[int] = set()
        for _, _, ti, di in pairs:
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            self._tracks[ti].hit(detections[di], t_s, s)
        for ti, tr in enumerate(self._tracks):
            if ti not in used_t:
                tr.miss(s)
        for di, det in enumerate(detections):
            if di not in used_d:
                self._tracks.append(_Track(det, t_s))
        # merge before publishing, so a duplicate never takes an id that is then thrown away
        kept: list[_Track] = []
        for tr in self._merge(self._tracks):
            if tr.id is None:
                if tr.hits >= s.confirm_hits or (tr.windows == 1 and tr.confidence >= s.confirm_confidence):
                    tr.id = self._next_id
                    self._next_id += 1
                elif tr.hits + (s.confirm_windows - tr.windows) < s.confirm_hits:
                    continue  # can no longer reach k hits in its first n windows: a false alarm
            elif t_s - tr.last_hit_t_s >= s.end_after_s - 1e-9:
                continue
            kept.append(tr)
        self._tracks = kept
        return sorted((tr.report() for tr in self._tracks if tr.id is not None), key=lambda r: r.id)

    def _merge(self, tracks: list[_Track]) -> list[_Track]:
        # seniority: published tracks by id, then tentative ones by age (list order is birth order)
        order = sorted(tracks, key=lambda t: (t.id is None, t.id or 0, -t.windows))
        dropped: set[int] = set()
        for i, older in enumerate(order):
            if id(older) in dropped:
                continue
            for younger in order[i + 1:]:
                if id(younger) not in dropped and \
                        angular_distance_deg(older.azimuth_deg, younger.azimuth_deg) < self.settings.merge_deg:
                    dropped.add(id(younger))
                    # the survivor takes the latest evidence of the one that goes
                    if younger.last_hit_t_s > older.last_hit_t_s:
                        older.last_hit_t_s = younger.last_hit_t_s
                        older.active = older.active or younger.active
                    if older.id is None:
                        older.hits = max(older.hits, younger.hits)

        return [t for t in tracks if id(t) not in dropped]


__all__ = ["TrackerConfigError", "TrackerSettings", "TrackedSource", "Tracker"]
