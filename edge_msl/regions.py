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
  keeps the sector; the weaker one is dropped and reported as such. Sources closer than
  ``min_separation_deg`` to a stronger kept source are dropped too, as decode would merge them.

(Overlapping sectors, ``margin_deg`` > 0 with ``label_overlap``, were an experiment no shipped
model used; removed 2026-12-06. Older sidecars' ``margin_deg = 0`` / ``label_overlap = false``
are still read.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .settings_check import Settings, SettingError, integer, invalid, number, setting

ACTIVE, DISTANCE, AZIMUTH = 0, 1, 2
"""Column order of a target / output array of shape (n_regions, 3)."""


RegionConfigError = SettingError
"""A region layout is invalid (the one settings error, under its former name)."""

_RETIRED = {"margin_deg": 0.0, "label_overlap": False}
"""Keys of the removed overlapping sectors that sidecars and data sets written before 2026-12-06 carry:
read when they have these values (every shipped model does), refused otherwise."""


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
    min_separation_deg: float = setting(10.0, number(0.0, 180.0, hi_open=True))
    """Detections closer than this are one source (duplicate suppression on decode)."""
    fine_stretch: float = setting(1.0, number(0.5, 2.0))
    """Decode only: a fine azimuth output ``p`` is read as ``0.5 + fine_stretch * (p - 0.5)`` of
    the sector. A sigmoid output regressed on [0, 1] shrinks toward the sector's centre (the
    shipped network's outputs span about 0.1-0.9), which pulls estimates near a border inward;
    the factor is fitted on validation hits (``python -m train_tf.evaluate --fit-stretch``)."""

    KEY = "regions.{}"
    TABLE = "region"

    @classmethod
    def from_dict(cls, table: Any, base: "Settings | None" = None) -> Any:
        """:meth:`Settings.from_dict`, reading an older sidecar's retired overlap keys at their inert values."""
        if isinstance(table, Mapping) and any(k in table for k in _RETIRED):
            table = dict(table)
            for key, inert in _RETIRED.items():
                value = table.pop(key, inert)
                if value != inert or isinstance(value, bool) != isinstance(inert, bool):
                    raise invalid(f"regions.{key}", value, f"{str(inert).lower()} or absent (overlapping sectors were "
                                  "an experiment, removed)")
        return super().from_dict(table, base)

    def check_together(self) -> None:
        """The distance range in order."""
        if not self.d_min_m < self.d_max_m:
            raise invalid("regions.d_min_m", self.d_min_m, f"0 <= d_min_m < d_max_m = {self.d_max_m}")

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
        lo = self.offset_deg + region * self.width_deg
        return lo, lo + self.width_deg

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
            continue
        occupied[region] = True
        assigned[i] = region
        kept_az.append(float(az[i]))
        target[region, ACTIVE] = 1.0
        target[region, DISTANCE] = layout.normalize_distance(dist[i])
        target[region, AZIMUTH] = layout.normalize_azimuth(region, az[i])
    return Encoding(target=target, assigned_region=assigned)


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
