"""Region coding: the one place that turns source positions into network targets and back.

Training (``train_tf``) encodes with :func:`encode`; the device decodes with :func:`decode`;
both use this module so the two cannot drift apart. Pure numpy, no TensorFlow.

Layout: N equal azimuth sectors; sector k covers [offset + k w, offset + (k + 1) w) with
w = 360 / N. Each sector owns three outputs: active (0/1), normalized distance, normalized
azimuth. Rules (see docs/training.md, "Region coding"):

* A source belongs to exactly one sector (half-open intervals), so a source on a border is
  encoded once; on decode, detections closer than ``min_separation_deg`` are merged (the more
  confident one is kept), so a border source that fires in both neighbours comes out once.
* Two sources in one sector: the stronger one (larger ``weight``; by default the nearer one)
  keeps the sector. The weaker one moves to the neighbouring sector on its side if that sector
  is free and the source lies within ``margin_deg`` of the shared border (only when
  ``margin_deg`` > 0, which widens every sector's fine-azimuth range by the margin on both
  sides); otherwise it is dropped and reported as such. Sources closer than
  ``min_separation_deg`` to a stronger kept source are dropped too, as decode would merge them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .settings_check import Settings, SettingError, boolean, integer, invalid, number, setting

ACTIVE, DISTANCE, AZIMUTH = 0, 1, 2
"""Column order of a target / output array of shape (n_regions, 3)."""


RegionConfigError = SettingError
"""A region layout is invalid (the one settings error, under its former name)."""


@dataclass(frozen=True)
class RegionLayout(Settings):
    """How space around the array is split into regions and how fine outputs are normalized."""

    n_regions: int = setting(8, integer(1, 360))
    """Number of equal azimuth sectors (the paper uses 8)."""
    d_min_m: float = setting(0.2, number(0.0, math.inf))
    """Horizontal distance mapped to normalized distance 0."""
    d_max_m: float = setting(4.0, number(0.0, math.inf))
    """Horizontal distance mapped to normalized distance 1 (farther sources are clipped to it)."""
    offset_deg: float = setting(0.0, number(-math.inf, math.inf))
    """Azimuth where sector 0 starts (counter-clockwise from the array's x axis)."""
    margin_deg: float = setting(0.0, number(0.0, 180.0))
    """Overlap: each sector's fine azimuth spans its width plus this margin on both sides."""
    min_separation_deg: float = setting(10.0, number(0.0, 180.0, hi_open=True))
    """Detections closer than this are one source (duplicate suppression on decode)."""
    label_overlap: bool = setting(False, boolean)
    """A source within ``margin_deg`` of its sector's border is also labelled in the neighbouring
    sector (when that one holds no source of its own), so neither sector's fine azimuth is cut off
    at the border; decode merges the two estimates. Needs ``margin_deg`` > 0."""
    fine_stretch: float = setting(1.0, number(0.5, 2.0))
    """Decode only: a fine azimuth output ``p`` is read as ``0.5 + fine_stretch * (p - 0.5)`` of
    the sector. A sigmoid output regressed on [0, 1] shrinks toward the sector's centre (the
    shipped network's outputs span about 0.1-0.9), which pulls estimates near a border inward;
    the factor is fitted on validation hits (``python -m train_tf.evaluate --fit-stretch``)."""

    KEY = "regions.{}"
    TABLE = "region"

    def check_together(self) -> None:
        """The distance range in order, the margin within half a sector, label_overlap's needs."""
        if not self.d_min_m < self.d_max_m:
            raise invalid("regions.d_min_m", self.d_min_m, f"0 <= d_min_m < d_max_m = {self.d_max_m}")
        if self.margin_deg > self.width_deg / 2:
            raise invalid("regions.margin_deg", self.margin_deg, f"a number in [0, {self.width_deg / 2:g}] (half a sector)")
        if self.label_overlap and self.margin_deg <= 0:
            raise invalid("regions.label_overlap", True, "false while margin_deg = 0 (label_overlap needs margin_deg "
                                                         "> 0: the overlap is the margin)")
        if self.label_overlap and self.min_separation_deg < 2 * self.margin_deg:
            raise invalid("regions.min_separation_deg", self.min_separation_deg,
                          f"at least 2 * margin_deg = {2 * self.margin_deg:g} with label_overlap (label_overlap needs "
                          "it: two talkers inside one overlap could not be told apart)")

    @property
    def width_deg(self) -> float:
        """Angular width of one sector."""
        return 360.0 / self.n_regions

    def region_of(self, azimuth_deg: float | np.ndarray) -> np.ndarray:
        """Home sector index of each azimuth (half-open sectors, so borders belong to one sector)."""
        rel = np.mod(np.asarray(azimuth_deg, dtype=np.float64) - self.offset_deg, 360.0)
        return np.minimum((rel // self.width_deg).astype(np.int64), self.n_regions - 1)

    def fine_range_deg(self, region: int) -> tuple[float, float]:
        """(low, high) azimuth mapped to normalized azimuth 0 and 1 for ``region`` (not wrapped)."""
        lo = self.offset_deg + region * self.width_deg - self.margin_deg
        return lo, lo + self.width_deg + 2 * self.margin_deg

    def normalize_azimuth(self, region: int, azimuth_deg: float) -> float:
        """Position of ``azimuth_deg`` inside ``region``'s fine range, in [0, 1]."""
        lo, hi = self.fine_range_deg(region)
        # unwrap the azimuth to the branch nearest the range's centre
        centre = (lo + hi) / 2
        az = centre + wrap180(azimuth_deg - centre)
        return float(np.clip((az - lo) / (hi - lo), 0.0, 1.0))

    def normalize_distance(self, distance_m: float | np.ndarray) -> np.ndarray:
        """Distance mapped linearly to [0, 1] (clipped) over [d_min_m, d_max_m]."""
        return np.clip((np.asarray(distance_m, dtype=np.float64) - self.d_min_m) / (self.d_max_m - self.d_min_m), 0, 1)


@dataclass(frozen=True)
class Detection:
    """One decoded source."""

    azimuth_deg: float
    """Azimuth in [0, 360), counter-clockwise from the array's x axis."""
    distance_m: float
    """Horizontal distance from the array centre."""
    confidence: float
    """The region's activity probability."""
    region: int
    """Index of the region whose outputs produced it."""


@dataclass(frozen=True)
class Encoding:
    """Result of :func:`encode`: the target and where each input source went."""

    target: np.ndarray
    """Float32 array (n_regions, 3): active, normalized distance, normalized azimuth."""
    assigned_region: np.ndarray
    """For each input source, its region, or -1 when it was dropped (see module rules)."""


def wrap360(deg: float | np.ndarray) -> np.ndarray:
    """Azimuth(s) in [0, 360); a tiny negative value maps to 0, not to 360."""
    out = np.mod(np.asarray(deg, dtype=np.float64), 360.0)
    return np.where(out >= 360.0, 0.0, out)


def wrap180(deg: float | np.ndarray) -> float | np.ndarray:
    """Angle(s) in [-180, 180): a Python float stays one (the temporal decode's per-track arithmetic)."""
    if isinstance(deg, (int, float)):
        return (deg + 180.0) % 360.0 - 180.0
    return (np.asarray(deg) + 180.0) % 360.0 - 180.0


def angular_distance_deg(a: float | np.ndarray, b: float | np.ndarray) -> np.ndarray:
    """Absolute circular difference between azimuths, in [0, 180]."""
    return np.abs(wrap180(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))


def encode(
    layout: RegionLayout,
    azimuth_deg: Sequence[float] | np.ndarray,
    distance_m: Sequence[float] | np.ndarray,
    weight: Sequence[float] | np.ndarray | None = None,
) -> Encoding:
    """Encode sources (azimuth, horizontal distance, optional strength) into a region target.

    ``weight`` ranks sources when two compete for a sector; by default nearer sources rank
    higher (1 / distance), which for equal source power is the louder one at the array.
    """
    az = wrap360(np.asarray(azimuth_deg, dtype=np.float64).reshape(-1))
    dist = np.asarray(distance_m, dtype=np.float64).reshape(-1)
    if az.shape != dist.shape:
        raise ValueError(f"azimuth_deg has {az.size} entries but distance_m has {dist.size}")
    if not (np.all(np.isfinite(az)) and np.all(np.isfinite(dist))):
        raise ValueError("source azimuths and distances must be finite")
    w = 1.0 / np.maximum(dist, 1e-3) if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1)
    if w.shape != az.shape:
        raise ValueError(f"weight has {w.size} entries but there are {az.size} sources")
    target = np.zeros((layout.n_regions, 3), dtype=np.float32)
    assigned = np.full(az.shape, -1, dtype=np.int64)
    occupied = np.zeros(layout.n_regions, dtype=bool)
    kept_az: list[float] = []
    # strongest first; ties broken by azimuth so the result does not depend on input order
    order = sorted(range(az.size), key=lambda i: (-w[i], az[i], dist[i]))
    for i in order:
        if kept_az and np.min(angular_distance_deg(az[i], np.asarray(kept_az))) < layout.min_separation_deg:
            continue
        region = int(layout.region_of(az[i]))
        if occupied[region]:
            region = _free_neighbour(layout, az[i], region, occupied)
            if region < 0:
                continue
        occupied[region] = True
        assigned[i] = region
        kept_az.append(float(az[i]))
        target[region, ACTIVE] = 1.0
        target[region, DISTANCE] = layout.normalize_distance(dist[i])
        target[region, AZIMUTH] = layout.normalize_azimuth(region, az[i])
    if layout.label_overlap and layout.n_regions > 1:
        # after every source has its own sector: near-border sources also in a free neighbour
        for i in order:
            if assigned[i] < 0:
                continue
            other = _margin_neighbour(layout, float(az[i]), int(assigned[i]), inclusive=False)
            if other >= 0 and not occupied[other]:
                occupied[other] = True
                target[other, ACTIVE] = 1.0
                target[other, DISTANCE] = layout.normalize_distance(dist[i])
                target[other, AZIMUTH] = layout.normalize_azimuth(other, az[i])
    return Encoding(target=target, assigned_region=assigned)


def _merge_overlap(layout: RegionLayout, candidates: list[Detection]) -> list[Detection]:
    """One detection per source seen by two neighbouring sectors (``label_overlap``): two
    detections of adjacent sectors that both lie within ``margin_deg`` of their shared border are
    replaced by the confidence-weighted mean, with the stronger one's confidence and region."""
    merged: list[Detection] = []
    used = [False] * len(candidates)
    for i, a in enumerate(candidates):  # strongest first
        if used[i]:
            continue
        used[i] = True
        for j in range(i + 1, len(candidates)):
            b = candidates[j]
            step = (b.region - a.region) % layout.n_regions
            if used[j] or step not in (1, layout.n_regions - 1):
                continue
            upper = a.region if step == layout.n_regions - 1 else b.region  # the sector above the border
            border = _sector_start(layout, upper)
            if layout.n_regions == 2 and angular_distance_deg(a.azimuth_deg, border) >= layout.margin_deg:
                border += 180.0  # two sectors share two borders
            if angular_distance_deg(a.azimuth_deg, border) >= layout.margin_deg or \
                    angular_distance_deg(b.azimuth_deg, border) >= layout.margin_deg:
                continue
            used[j] = True
            w = b.confidence / (a.confidence + b.confidence)
            az = float(wrap360(a.azimuth_deg + w * wrap180(b.azimuth_deg - a.azimuth_deg)))
            a = Detection(az, (1 - w) * a.distance_m + w * b.distance_m, a.confidence, a.region)
            break
        merged.append(a)
    return merged


def _sector_start(layout: RegionLayout, region: int) -> float:
    """Azimuth of ``region``'s lower border (not wrapped)."""
    return layout.offset_deg + region * layout.width_deg


def _margin_neighbour(layout: RegionLayout, az: float, region: int, inclusive: bool = True) -> int:
    """The sector across the border of ``region`` that ``az`` lies within ``margin_deg`` of
    (``inclusive``: at exactly the margin counts), or -1."""
    lo = _sector_start(layout, region)
    for border, step in ((lo, -1), (lo + layout.width_deg, 1)):
        d = angular_distance_deg(az, border)
        if d < layout.margin_deg or (inclusive and d == layout.margin_deg):
            return (region + step) % layout.n_regions
    return -1


def _free_neighbour(layout: RegionLayout, az: float, home: int, occupied: np.ndarray) -> int:
    if layout.margin_deg <= 0 or layout.n_regions < 2:
        return -1
    cand = _margin_neighbour(layout, az, home)
    return -1 if cand < 0 or occupied[cand] else cand


def encode_batch(
    layout: RegionLayout,
    azimuth_deg: np.ndarray,
    distance_m: np.ndarray,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """Targets (B, n_regions, 3) for padded source arrays (B, K); NaN azimuth marks padding."""
    az = np.asarray(azimuth_deg, dtype=np.float64)
    dist = np.asarray(distance_m, dtype=np.float64)
    out = np.zeros((az.shape[0], layout.n_regions, 3), dtype=np.float32)
    for b in range(az.shape[0]):
        valid = np.isfinite(az[b])
        wb = None if weight is None else np.asarray(weight[b], dtype=np.float64)[valid]
        out[b] = encode(layout, az[b][valid], dist[b][valid], wb).target
    return out


def decode(layout: RegionLayout, outputs: np.ndarray, threshold: float = 0.5) -> list[Detection]:
    """Turn network outputs (n_regions, 3) into detections, sorted by azimuth.

    Regions whose activity is >= ``threshold`` give a source; then detections closer than
    ``layout.min_separation_deg`` to a more confident one are suppressed.
    """
    out = np.asarray(outputs, dtype=np.float64)
    if out.shape != (layout.n_regions, 3):
        raise ValueError(f"outputs must have shape ({layout.n_regions}, 3), got {out.shape}")
    candidates: list[Detection] = []
    for region in np.flatnonzero(out[:, ACTIVE] >= threshold):
        lo, hi = layout.fine_range_deg(int(region))
        fine = 0.5 + layout.fine_stretch * (float(np.clip(out[region, AZIMUTH], 0, 1)) - 0.5)
        az = float(wrap360(lo + fine * (hi - lo)))
        dist = layout.d_min_m + float(np.clip(out[region, DISTANCE], 0, 1)) * (layout.d_max_m - layout.d_min_m)
        candidates.append(Detection(az, dist, float(out[region, ACTIVE]), int(region)))
    candidates.sort(key=lambda d: (-d.confidence, d.region))
    if layout.label_overlap:
        candidates = _merge_overlap(layout, candidates)
    kept: list[Detection] = []
    for det in candidates:
        if all(angular_distance_deg(det.azimuth_deg, k.azimuth_deg) >= layout.min_separation_deg for k in kept):
            kept.append(det)
    kept.sort(key=lambda d: d.azimuth_deg)
    return kept


__all__ = [
    "ACTIVE", "DISTANCE", "AZIMUTH", "RegionConfigError", "RegionLayout", "Detection", "Encoding",
    "angular_distance_deg", "wrap360", "wrap180", "encode", "encode_batch", "decode",
]
