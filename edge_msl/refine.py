"""Refine the network's azimuths with a local SRP-PHAT search.

The network places a talker inside its region from one fine output, which is least precise near
the region's borders. The phase of the microphones' cross-spectra holds the direction directly:
for each detection, the steered response power (SRP-PHAT) is evaluated on a fine grid within
``half_deg`` of it, and the detection moves ``weight`` of the way to the highest response if that
peak lies strictly inside the arc (a maximum on the arc's edge is a slope towards something else,
often another talker: the detection stays). The search is local, so it cannot add, drop or swap
detections; the network still decides how many talkers there are and roughly where.

Enabled by a model's sidecar (``decode.srp_refine = {"fmax_hz": 8000, "half_deg": 8, "weight": 0.5}``);
the cross-spectra are averaged over the audio of the windows pooled for the decode, computed once
per hop on the audio that hop added (:func:`hop_segments`). numpy only. The steered response itself is
:mod:`edge_msl.srp`'s (:class:`edge_msl.srp.GccTable`); what is this module's is the cross-spectra it is computed
from (per-frame PHAT, averaged over a window) and where it searches.

Elevation (:meth:`SrpRefiner.elevation`, :class:`ElevationTracks`) comes from the same cross-spectra: the
response on a grid of elevations around the decoded azimuth, read only; it never moves an azimuth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .regions import Detection
from .settings_check import Settings, SettingError, checked_fields, number, required
from .srp import GccTable, pair_delays_s, phat, plane_directions, stft

NFFT = 512
FMIN_HZ = 300.0
STEP_DEG = 0.5
UPSAMPLE = 8
EL_STEP_DEG = 2.0
"""Grid step of the elevation search."""
EL_AZ_STEP_DEG = 2.0
"""Grid step of the azimuths searched with it."""
EL_AZ_HALF_DEG = 4.0
"""The elevation search also tries azimuths this far either side of the decoded one (the peak's elevation
is read; the azimuth stays the decoded one), so a small azimuth error does not bend the elevation."""
EL_FORGET = 0.7
"""Per window, a track's accumulated elevation response is multiplied by this before the new one is added."""


RefineConfigError = SettingError
"""Invalid ``decode.srp_refine`` settings (the one settings error, under its former name)."""

_MAX_FMAX_HZ = 96000.0
"""Half the highest sample rate a board captures at; :func:`check_settings` narrows it to the model's."""


@dataclass(frozen=True)
class RefineSettings(Settings):
    """``decode.srp_refine`` of a model's sidecar: the local SRP-PHAT search (every key must be given)."""

    fmax_hz: float = required(number(FMIN_HZ, _MAX_FMAX_HZ, lo_open=True, noun="Hz"))
    """Highest frequency of the cross-spectra searched (from ``FMIN_HZ``); at most half the sample rate."""
    half_deg: float = required(number(STEP_DEG, 45.0, lo_open=True, noun="degrees"))
    """The search covers this far either side of the decoded azimuth."""
    weight: float = required(number(0.0, 1.0))
    """How far a detection moves towards the response's peak (0 = not at all, 1 = onto it)."""

    KEY = "decode.srp_refine.{}"
    TABLE = "decode.srp_refine"


KEYS = tuple(f.name for f in checked_fields(RefineSettings))


def check_settings(settings: Mapping[str, Any], sample_rate_hz: int) -> dict[str, float]:
    """Validated ``{"fmax_hz", "half_deg", "weight"}`` (floats); a :class:`SettingError` names key, value and what
    is allowed."""
    if isinstance(settings, Mapping) and "fmax_hz" in settings:  # the model's rate narrows the field's range
        number(FMIN_HZ, sample_rate_hz / 2, lo_open=True, noun="Hz")("decode.srp_refine.fmax_hz", settings["fmax_hz"])
    return RefineSettings.from_dict(settings).to_dict()


def hop_segments(x: np.ndarray, hop: int) -> list[np.ndarray]:
    """Consecutive pieces of ``x`` (n_samples, n_mics), each ``hop`` samples (at least ``NFFT``,
    then overlapping), ending at its end: the audio a stream adds per hop, as
    :class:`edge_msl.pipeline.Pipeline` keeps their cross-spectra (oldest first)."""
    size = max(int(hop), NFFT)
    ends = range(len(x), size - 1, -int(hop))
    return [x[e - size:e] for e in reversed(ends)]


class SrpRefiner:
    """Local SRP-PHAT refinement for one array (mic positions in metres, model order)."""

    def __init__(self, positions_m: np.ndarray | Sequence[Sequence[float]], sample_rate_hz: int,
                 settings: Mapping[str, Any]):
        s = check_settings(settings, sample_rate_hz)
        self.fmax_hz, self.half_deg, self.weight = s["fmax_hz"], s["half_deg"], s["weight"]
        xy = np.asarray(positions_m, dtype=np.float64)[:, :2]
        self.n_mics = len(xy)
        i, j = np.triu_indices(len(xy), k=1)
        self._i, self._j = i, j
        self._dxy = xy[i] - xy[j]
        f = np.fft.rfftfreq(NFFT, 1.0 / sample_rate_hz)
        self._band = (f >= FMIN_HZ) & (f <= self.fmax_hz)
        self._f = f[self._band]
        bins = np.nonzero(self._band)[0]
        self._band_bins = slice(int(bins[0]), int(bins[-1]) + 1)  # the same bins, as a view
        self._window = np.hanning(NFFT).astype(np.float32)
        self._grid = np.arange(-self.half_deg, self.half_deg + STEP_DEG / 2, STEP_DEG)
        xyz = np.asarray(positions_m, dtype=np.float64)
        self._dxyz = xyz[i] - xyz[j]
        # a planar array hears a source at +e and -e alike: search above the plane only
        self.planar = bool(np.ptp(xyz[:, 2]) < 1e-6)
        self.elevation_grid_deg = np.arange(0.0 if self.planar else -90.0, 90.0 + EL_STEP_DEG / 2, EL_STEP_DEG)
        self._el_az = np.arange(-EL_AZ_HALF_DEG, EL_AZ_HALF_DEG + EL_AZ_STEP_DEG / 2, EL_AZ_STEP_DEG)
        el = np.radians(self.elevation_grid_deg)[None, :]
        self._el_cos, self._el_sin = np.cos(el), np.sin(el)
        self._table = GccTable(self._dxyz, sample_rate_hz, NFFT, bins, UPSAMPLE)
        self.n_lags = self._table.n_lags
        self.plane_wave_gcc = self._table.plane_wave
        """The SRP-PHAT response (:meth:`response`) of a single plane wave at its direction: a GCC-PHAT
        peaks at 2 n_bins / n_lags on every pair."""

    def cross(self, window: np.ndarray) -> np.ndarray:
        """(n_samples >= 512, n_mics) audio -> (n_pairs, n_bins) mean phase-transformed cross-spectra."""
        x = np.asarray(window, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_mics or x.shape[0] < NFFT:
            raise ValueError(f"window must be (n >= {NFFT}, {self.n_mics}), got {x.shape}")
        spec = stft(x, NFFT, self._band_bins, self._window)
        phat(spec, out=spec)  # per frame, so every frame votes alike
        # the pair products dominate the cost: single precision (numpy < 2 transforms in double)
        spec = spec.astype(np.complex64, copy=False)
        return np.einsum("ptf,ptf->pf", spec[self._i], np.conj(spec)[self._j]) / spec.shape[1]

    def response(self, gcc: np.ndarray, azimuth_deg: np.ndarray) -> np.ndarray:
        """SRP-PHAT steered to each azimuth (far field, in the array's plane): the sum over pairs of
        each pair's GCC-PHAT (:meth:`gcc`), interpolated at the pair's delay (``UPSAMPLE`` x)."""
        return self._table.response(gcc, pair_delays_s(self._dxy, plane_directions(azimuth_deg)))

    def gcc(self, cross: np.ndarray) -> np.ndarray:
        """(n_pairs, 2 L + 1) GCC-PHAT of each pair at lags -L .. L, lag k = k / (UPSAMPLE * fs) seconds: the
        inverse transform (``n_lags`` points, circular) of the band's cross-spectra where the array's delays
        reach, L just beyond them (:meth:`edge_msl.srp.GccTable.gcc`, which keeps the last two)."""
        return self._table.gcc(cross)

    def peak(self, gcc: np.ndarray, azimuth_deg: float, half_deg: float | None = None) -> float | None:
        """The SRP-PHAT peak (:meth:`gcc` of some audio) within ``half_deg`` (default: the
        settings') of ``azimuth_deg``, or None when the largest response is at the search's edge."""
        half = self.half_deg if half_deg is None else half_deg
        grid = np.arange(-half, half + STEP_DEG / 2, STEP_DEG)
        best = int(np.argmax(self.response(gcc, azimuth_deg + grid)))
        return float((azimuth_deg + grid[best]) % 360.0) if 0 < best < len(grid) - 1 else None

    def elevation_response(self, gcc: np.ndarray, azimuth_deg: float) -> np.ndarray:
        """SRP-PHAT on (azimuths within ``EL_AZ_HALF_DEG`` of ``azimuth_deg``) x ``elevation_grid_deg``,
        the best azimuth's value per elevation: (n_elevations,). Far field, full 3-D delays."""
        az = np.radians(azimuth_deg + self._el_az)[:, None]
        u = np.stack(np.broadcast_arrays(self._el_cos * np.cos(az), self._el_cos * np.sin(az), self._el_sin), axis=-1)
        delays = pair_delays_s(self._dxyz, u.reshape(-1, 3).T)  # (P, A*E)
        return self._table.response(gcc, delays).reshape(len(self._el_az), -1).max(axis=0)

    def elevation_peak(self, response: np.ndarray) -> float:
        """Elevation (degrees) of the maximum of an :meth:`elevation_response`, refined by a parabola
        through the grid's three points around it."""
        k = int(np.argmax(response))
        el = float(self.elevation_grid_deg[k])
        if 0 < k < len(response) - 1:
            a, b, c = response[k - 1], response[k], response[k + 1]
            den = a - 2 * b + c
            if den < 0:
                el += EL_STEP_DEG * float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
        return el

    def elevation(self, gcc: np.ndarray, azimuth_deg: float) -> float:
        """Elevation in degrees of the SRP-PHAT peak at ``azimuth_deg`` (:meth:`gcc` of some audio):
        for a planar array the angle above the plane in [0, 90] (it cannot tell up from down)."""
        return self.elevation_peak(self.elevation_response(gcc, azimuth_deg))

    def refine(self, detections: Sequence[Detection], cross: np.ndarray) -> list[Detection]:
        """The detections, each moved towards a local SRP peak (see the module's doc)."""
        out = []
        gcc = self.gcc(cross) if len(detections) else None
        for d in detections:
            az = d.azimuth_deg + self._grid
            best = int(np.argmax(self.response(gcc, az)))
            if 0 < best < len(az) - 1 and self.weight > 0:
                new = (d.azimuth_deg + self.weight * (az[best] - d.azimuth_deg)) % 360.0
                d = dataclasses.replace(d, azimuth_deg=float(new))
            out.append(d)
        out.sort(key=lambda det: det.azimuth_deg)
        return out


class ElevationTracks:
    """Each track's elevation from its SRP responses accumulated over windows (forgetting
    ``EL_FORGET`` per window), so a still talker's elevation settles instead of jumping per window."""

    def __init__(self, refiner: SrpRefiner) -> None:
        self.refiner = refiner
        self._sum: dict[int, np.ndarray] = {}

    def update(self, gcc: np.ndarray, tracks: Sequence[tuple[int | None, float, bool]]) -> list[float]:
        """Elevations (degrees) of ``tracks`` = (id or None, azimuth_deg, active) for one window's GCC.
        An inactive track keeps its accumulated response; ids no longer listed are forgotten."""
        out = []
        seen = set()
        for id_, az, active in tracks:
            acc = self._sum.get(id_) if id_ is not None else None
            if active or acc is None:
                r = np.maximum(self.refiner.elevation_response(gcc, az), 0.0)
                acc = r if acc is None else EL_FORGET * acc + r
            if id_ is not None:
                self._sum[id_] = acc
                seen.add(id_)
            out.append(self.refiner.elevation_peak(acc))
        for id_ in set(self._sum) - seen:
            del self._sum[id_]
        return out

    def reset(self) -> None:
        self._sum.clear()


__all__ = ["SrpRefiner", "ElevationTracks", "RefineSettings", "RefineConfigError", "check_settings", "hop_segments", "KEYS"]
