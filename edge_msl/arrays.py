"""Microphone-array geometries and channel maps, shared by training and the device.

One frame everywhere: metres, x forward, y left, z up, origin at the array's centre;
azimuth counter-clockwise from +x in degrees, elevation up from the x-y plane.
This module only describes arrays; it must not import TensorFlow or touch audio devices.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .settings_check import Settings, SettingError, integer, invalid, required, setting, text

SPEED_OF_SOUND_M_S = 343.0
"""Speed of sound used for delays everywhere in the project (dry air at about 20 degC)."""

_MIN_MIC_SPACING_M = 1e-3
_MAX_APERTURE_M = 2.0


ArrayConfigError = SettingError
"""A microphone array description is invalid, or captured audio does not fit the array (the one settings
error, under its former name)."""


def _positions(key: str, v: Any) -> tuple[tuple[float, float, float], ...]:
    """At least 2 microphones, each [x, y, z] finite numbers in metres, at least 1 mm apart, at most 2 m."""
    try:
        ok = not isinstance(v, (str, bytes, Mapping)) and all(
            not isinstance(p, (str, bytes, Mapping)) and len(p) == 3 and all(
                isinstance(c, numbers.Real) and not isinstance(c, bool) for c in p) for p in v)
    except TypeError:
        ok = False
    if not ok:
        raise invalid(key, v, "a list of [x, y, z] in metres (3 numbers per microphone)")
    pos = np.array(v, dtype=np.float64).reshape(-1, 3)
    if len(pos) < 2:
        raise invalid(key, v, "at least 2 microphones, [x, y, z] in metres each")
    if not np.all(np.isfinite(pos)):
        raise invalid(key, v, "finite numbers (no nan or inf), [x, y, z] in metres")
    dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1) + np.eye(len(pos)) * 1e9
    i, j = np.unravel_index(np.argmin(dist), dist.shape)
    if dist[i, j] < _MIN_MIC_SPACING_M:
        raise invalid(key, v, f"microphones at least {_MIN_MIC_SPACING_M * 1000:g} mm apart (microphones {i} and {j} "
                      f"are {dist[i, j] * 1000:.2f} mm apart: positions are in metres, not millimetres, and two "
                      "microphones cannot share a place)")
    aperture = float(np.max(dist[dist < 1e8]))
    if aperture > _MAX_APERTURE_M:
        raise invalid(key, v, f"an aperture of at most {_MAX_APERTURE_M:g} m (this one is {aperture:.2f} m: "
                      "positions are in metres)")
    return tuple(tuple(float(c) for c in p) for p in v)


def _channels(key: str, v: Any) -> tuple[int, ...]:
    """A list of capture channel indices (integers), one per microphone; their range is checked with
    ``n_channels``."""
    if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, (Sequence, np.ndarray)) or not all(
            isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in v):
        raise invalid(key, v, "a list of capture channel indices, one per microphone")
    return tuple(int(c) for c in v)


@dataclass(frozen=True)
class MicArray(Settings):
    """A microphone array: where each microphone is and which capture channel carries it."""

    name: str = required(text(what="a non-empty name", empty=False))
    """Identifier used on the command line, in configs and inside models (e.g. ``uca8-r10``)."""
    positions_m: tuple[tuple[float, float, float], ...] = required(_positions)
    """Microphone positions (x, y, z) in metres in the array frame, one per microphone."""
    channel_map: tuple[int, ...] = required(_channels)
    """For microphone i, the 0-based index of the capture channel that carries it."""
    n_channels: int = required(integer(1))
    """Number of channels the capture device delivers (may exceed the number of microphones)."""
    native_rate_hz: int = setting(16000, integer(8000, 192000))
    """Sample rate the board captures at by default."""
    source: str = setting("user configuration", text())
    """Where the geometry comes from (vendor document, driver, measurement)."""
    notes: str = setting("", text())
    """Anything a user should know about the channels (loopback channels, firmware)."""

    KEY = "array.{}"
    TABLE = "array"

    def check_together(self) -> None:
        """One capture channel per microphone, each a channel of the device, none twice."""
        cmap, n = self.channel_map, self.n_channels
        if len(cmap) != self.n_mics:
            raise invalid("array.channel_map", cmap, f"one capture channel per microphone ({self.n_mics} microphones)")
        if any(not 0 <= c < n for c in cmap):
            raise invalid("array.channel_map", cmap, f"a channel index in [0, {n - 1}] per microphone "
                          f"(n_channels = {n})")
        if len(set(cmap)) != len(cmap):
            raise invalid("array.channel_map", cmap, "distinct channels (this one uses a channel twice)")

    @property
    def n_mics(self) -> int:
        """Number of microphones used for localization."""
        return len(self.positions_m)

    def positions(self) -> np.ndarray:
        """Microphone positions as a float64 array of shape (n_mics, 3)."""
        return np.asarray(self.positions_m, dtype=np.float64)

    def aperture_m(self) -> float:
        """Largest distance between two microphones."""
        p = self.positions()
        return float(np.max(np.linalg.norm(p[:, None, :] - p[None, :, :], axis=-1)))

    def select_channels(self, frames: np.ndarray) -> np.ndarray:
        """Pick the microphone channels, in microphone order, from captured frames.

        ``frames`` has shape (n_samples, n_channels) as delivered by the device.
        """
        frames = np.asarray(frames)
        if frames.ndim != 2 or frames.shape[1] != self.n_channels:
            found = frames.shape[1] if frames.ndim == 2 else f"an array of shape {frames.shape}"
            raise ArrayConfigError(
                f"array {self.name!r} expects {self.n_channels} capture channels, found {found}; "
                f"check the device or the array name"
            )
        return frames[:, list(self.channel_map)]

    def rotated(self, yaw_deg: float) -> np.ndarray:
        """Microphone positions rotated counter-clockwise about z by ``yaw_deg``."""
        a = math.radians(yaw_deg)
        rot = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
        return self.positions() @ rot.T

    def to_dict(self) -> dict[str, Any]:
        """A JSON/TOML-friendly description that :func:`from_dict` reads back."""
        return {
            "name": self.name,
            "positions_m": [list(p) for p in self.positions_m],
            "channel_map": list(self.channel_map),
            "n_channels": self.n_channels,
            "native_rate_hz": self.native_rate_hz,
            "source": self.source,
            "notes": self.notes,
        }

    def same_geometry(self, other: "MicArray", tol_m: float = 1e-4) -> bool:
        """True when both arrays have the same microphones in the same order (names may differ)."""
        if self.n_mics != other.n_mics:
            return False
        return bool(np.all(np.abs(self.positions() - other.positions()) <= tol_m))


def circular_positions(n_mics: int, radius_m: float, first_deg: float = 0.0) -> tuple[tuple[float, float, float], ...]:
    """Positions of ``n_mics`` on a horizontal circle, mic k at ``first_deg + 360 k / n_mics``."""
    out = []
    for k in range(n_mics):
        a = math.radians(first_deg + 360.0 * k / n_mics)
        out.append((round(radius_m * math.cos(a), 9), round(radius_m * math.sin(a), 9), 0.0))
    return tuple(out)


def _xy(points_mm: Iterable[Sequence[float]]) -> tuple[tuple[float, float, float], ...]:
    return tuple((x / 1000.0, y / 1000.0, 0.0) for x, y in points_mm)


_BUILTIN: dict[str, MicArray] = {}


def _register(array: MicArray) -> None:
    _BUILTIN[array.name] = array


_register(MicArray(
    name="uca8-r10",
    positions_m=circular_positions(8, 0.10),
    channel_map=tuple(range(8)),
    n_channels=8,
    native_rate_hz=16000,
    source="reference design: 8-mic uniform circular array, r = 0.10 m (AV16.3-like), mic k at 45 k deg",
    notes="AV16.3 numbers its mics from 180 deg; reorder its channels as mic5..8, mic1..4 to use this map",
))
_register(MicArray(
    name="respeaker-4mic",
    positions_m=_xy([(-40.5, 0.0), (0.0, 40.5), (40.5, 0.0), (0.0, -40.5)]),
    channel_map=(0, 1, 2, 3),
    n_channels=4,
    native_rate_hz=16000,
    source="Seeed ReSpeaker 4-Mic Array for Raspberry Pi (AC108); coordinates as published for this "
           "board in ODAS' config/odaslive/respeaker_4_mic_array.cfg (mics on a 40.5 mm radius)",
    notes="seeed-voicecard driver; 4 capture channels, all microphones",
))
_register(MicArray(
    name="respeaker-6mic",
    positions_m=_xy([(-23.2, 40.1), (-46.3, 0.0), (-23.2, -40.1), (23.2, -40.1), (46.3, 0.0), (23.2, 40.1)]),
    channel_map=(0, 1, 2, 3, 4, 5),
    n_channels=8,
    native_rate_hz=16000,
    source="Seeed ReSpeaker 6-Mic Circular Array Kit for Raspberry Pi; circle of radius 46.3 mm as published "
           "in ODAS' config/odaslive/respeaker_6_mic_array.cfg and Seeed's wiki",
    notes="8 capture channels: 1-6 are the microphones, 7-8 are the playback loopback (echo reference)",
))
_register(MicArray(
    name="respeaker-usb-v2",
    positions_m=_xy([(-32.0, 0.0), (0.0, -32.0), (32.0, 0.0), (0.0, 32.0)]),
    channel_map=(1, 2, 3, 4),
    n_channels=6,
    native_rate_hz=16000,
    source="Seeed ReSpeaker USB Mic Array v2.0 (XVF-3000), 6_channels_firmware: square of 45.3 mm side; "
           "coordinates as in ODAS' config/odaslive/respeaker_usb_4_mic_array.cfg",
    notes="6 capture channels: 0 = processed (ASR) audio, 1-4 = raw microphones, 5 = playback reference",
))
_register(MicArray(
    name="matrix-voice",
    positions_m=_xy([(0.0, 0.0), (-38.133, 3.576), (-20.980, 32.043), (11.971, 36.381),
                     (35.908, 13.323), (32.805, -19.767), (4.999, -37.972), (-26.571, -27.584)]),
    channel_map=tuple(range(8)),
    n_channels=8,
    native_rate_hz=48000,
    source="MATRIX Voice: microphone locations from MATRIX HAL (micarray_location, mm), the same as in "
           "ODAS' config/odaslive/matrix_voice.cfg; 7 mics on a 38.3 mm circle plus one in the centre",
    notes="matrixio-kernel-modules ALSA driver; capture at 48 kHz by default",
))
_register(MicArray(
    name="matrix-creator",
    positions_m=_xy([(20.091, -48.504), (-20.091, -48.504), (-48.504, -20.091), (-48.504, 20.091),
                     (-20.091, 48.504), (20.091, 48.504), (48.504, 20.091), (48.504, -20.091)]),
    channel_map=tuple(range(8)),
    n_channels=8,
    native_rate_hz=48000,
    source="MATRIX Creator: microphone locations from MATRIX HAL (micarray_location, mm), the same as in "
           "ODAS' config/odaslive/matrix_creator.cfg; 8 mics on a 52.5 mm circle",
    notes="matrixio-kernel-modules ALSA driver; capture at 48 kHz by default",
))
_register(MicArray(
    name="minidsp-uma8",
    positions_m=_xy([(0.0, 0.0), (0.0, 43.0), (37.0, 21.0), (37.0, -21.0), (0.0, -43.0), (-37.0, -21.0),
                     (-37.0, 21.0)]),
    channel_map=(0, 1, 2, 3, 4, 5, 6),
    n_channels=8,
    native_rate_hz=48000,
    source="miniDSP UMA-8 USB mic array (raw firmware): 6 mics on a 43 mm circle plus one in the centre, "
           "per miniDSP's user manual; coordinates as in ODAS' config/odaslive/minidsp.cfg",
    notes="8 capture channels with the raw (no DSP) firmware, channels 1-7 are microphones, 8 is unused",
))

DEFAULT_ARRAY = "uca8-r10"


def list_arrays() -> list[str]:
    """Names of the built-in arrays, sorted."""
    return sorted(_BUILTIN)


def get_array(name: str) -> MicArray:
    """The built-in array called ``name``; unknown names raise with the list of known ones."""
    try:
        return _BUILTIN[name]
    except (KeyError, TypeError):
        raise ArrayConfigError(
            f"unknown array {name!r}; known arrays: {', '.join(list_arrays())}, or describe a custom one "
            f"with positions_m and channel_map", key="array", value=name,
            allowed=f"a built-in array ({', '.join(list_arrays())}) or a custom one with positions_m and channel_map"
        ) from None


def from_dict(cfg: Mapping[str, Any]) -> MicArray:
    """Build an array from a config table (the keys of :class:`MicArray`).

    ``{"name": "uca8-r10"}`` alone picks a built-in array; a built-in name with ``channel_map``
    and/or ``n_channels`` keeps the built-in geometry (and so its packaged model) with the
    capture channels changed, e.g. for a driver that rotates the channel order. A custom array
    gives ``positions_m`` (list of [x, y, z] in metres) and optionally ``channel_map`` (default
    0..n-1) and ``n_channels`` (default: one past the largest channel used).
    """
    MicArray.check_keys(cfg)
    if "positions_m" not in cfg:
        if "name" not in cfg:
            raise invalid("array", dict(cfg), "a built-in array's name, or positions_m for a custom array")
        base = get_array(cfg["name"])
        fixed = sorted(set(cfg) - {"name", "channel_map", "n_channels"})
        if fixed:
            raise invalid(f"array.{fixed[0]}", cfg[fixed[0]], f"only channel_map and n_channels can be changed for "
                          f"the built-in array {base.name!r}; give positions_m and another name for a custom array")
        if "channel_map" not in cfg and "n_channels" not in cfg:
            return base
        notes = (base.notes + " " if base.notes else "") + "channel map set in the configuration"
        return MicArray.from_dict({**cfg, "notes": notes}, base=base)
    table = {"name": "custom", **cfg}
    if isinstance(table["name"], str) and table["name"] in _BUILTIN:
        raise invalid("array.name", table["name"], "a name no built-in array has (for a custom array; without "
                      "positions_m the built-in one is used)")
    positions = table["positions_m"]
    n_mics = len(positions) if isinstance(positions, (list, tuple)) else 0
    cmap = table.setdefault("channel_map", list(range(n_mics)))
    if "n_channels" not in table:
        ints = isinstance(cmap, (list, tuple)) and cmap and all(isinstance(c, int) for c in cmap)
        table["n_channels"] = max(cmap) + 1 if ints else n_mics
    return MicArray.from_dict(table)


SPARE_KINDS = ("loopback", "processed", "unused")
"""What a capture channel that is no microphone carries: the playback reference (digital zero while nothing
plays), the board's own processed (beamformed, ASR) audio, or nothing."""

_SPARE: dict[str, dict[int, str]] = {
    "respeaker-6mic": {6: "loopback", 7: "loopback"},
    "respeaker-usb-v2": {0: "processed", 5: "loopback"},
    "minidsp-uma8": {7: "unused"},
}

# ALSA card ids the boards' drivers register (what ``hw:CARD=<id>`` names; ``arecord -l`` shows them)
BOARD_CARD_IDS: dict[str, tuple[str, ...]] = {
    "seeed4micvoicec": ("respeaker-4mic",),       # seeed-voicecard, 4-mic HAT
    "seeed8micvoicec": ("respeaker-6mic",),       # seeed-voicecard, 6-mic HAT (8 channels with the loopback)
    "ArrayUAC10": ("respeaker-usb-v2",),          # ReSpeaker USB Mic Array v2.0 (UAC1.0)
    "MATRIXIOSOUND": ("matrix-voice", "matrix-creator"),  # matrixio-kernel-modules: one driver for both
}
"""Card id -> the built-in arrays it can be. The UMA-8 enumerates as a generic USB audio card (no id here)."""


def spare_channels(array: MicArray) -> dict[int, str]:
    """Capture channels of ``array`` that carry no microphone, with what they carry (one of SPARE_KINDS);
    channels of a custom array not in its channel map are "unused"."""
    known = _SPARE.get(array.name, {}) if array.name in _BUILTIN and array.n_channels == _BUILTIN[
        array.name].n_channels else {}
    return {c: known.get(c, "unused") for c in range(array.n_channels) if c not in array.channel_map}


def to_capture(array: MicArray, mics: np.ndarray) -> np.ndarray:
    """Microphone signals (n, n_mics), in mic order, laid out as the board delivers them (n, n_channels):
    each mic on its channel, loopback and unused channels digital zero (nothing playing), a processed
    channel the mean of the mics (a stand-in for the board's beamformed output). dtype is kept.

    The one capture layout per board: the simulator writes it, ``locate``, ``calibrate`` and the daemon read it."""
    mics = np.asarray(mics)
    if mics.ndim != 2 or mics.shape[1] != array.n_mics:
        raise ArrayConfigError(f"array {array.name!r} has {array.n_mics} microphones, got signals of shape "
                               f"{mics.shape}; give (samples, {array.n_mics}) in microphone order")
    out = np.zeros((len(mics), array.n_channels), dtype=mics.dtype)
    out[:, list(array.channel_map)] = mics
    for c, kind in spare_channels(array).items():
        if kind == "processed":
            out[:, c] = np.mean(mics, axis=1, dtype=np.float64).astype(mics.dtype)
    return out


def boards_for_device(pcm_name: str) -> tuple[str, ...]:
    """The built-in arrays an ALSA PCM name points at by its card id (``hw:CARD=seeed8micvoicec,DEV=0``,
    ``plughw:ArrayUAC10``), or () when the name says nothing (``default``, a card number, a plugin)."""
    name = pcm_name.split(":", 1)[1] if ":" in pcm_name else ""
    fields = [f.split("=", 1)[-1] for f in name.split(",")]
    for card_id, boards in BOARD_CARD_IDS.items():
        if any(f == card_id for f in fields):
            return boards
    return ()


def capture_layout(array: MicArray) -> str:
    """One phrase: which channel carries what, e.g. ``mics on 0-5, loopback on 6, 7``."""
    def span(chs: list[int]) -> str:
        chs = sorted(chs)
        if len(chs) > 2 and chs == list(range(chs[0], chs[-1] + 1)):
            return f"{chs[0]}-{chs[-1]}"
        return ", ".join(str(c) for c in chs)
    parts = [f"mics on {span(list(array.channel_map))}"]
    spare = spare_channels(array)
    for kind in SPARE_KINDS:
        chs = [c for c, k in spare.items() if k == kind]
        if chs:
            parts.append(f"{kind} on {span(chs)}")
    return ", ".join(parts)


def azimuth_deg(xyz: np.ndarray) -> np.ndarray:
    """Azimuth in [0, 360) of points (..., 3) or (..., 2), counter-clockwise from +x."""
    xyz = np.asarray(xyz, dtype=np.float64)
    return np.mod(np.degrees(np.arctan2(xyz[..., 1], xyz[..., 0])), 360.0)


def direction_vector(azimuth_deg_: float | np.ndarray, elevation_deg: float | np.ndarray = 0.0) -> np.ndarray:
    """Unit vector(s) (..., 3) pointing towards azimuth/elevation in the array frame."""
    az = np.radians(azimuth_deg_)
    el = np.radians(elevation_deg)
    return np.stack(np.broadcast_arrays(np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)), axis=-1)


def far_field_delays_s(array: MicArray, azimuth_deg_: float, elevation_deg: float = 0.0) -> np.ndarray:
    """Arrival time of a plane wave at each mic relative to the array centre (negative = earlier)."""
    u = direction_vector(azimuth_deg_, elevation_deg)
    return -(array.positions() @ u) / SPEED_OF_SOUND_M_S


__all__ = [
    "ArrayConfigError", "MicArray", "SPEED_OF_SOUND_M_S", "DEFAULT_ARRAY", "get_array", "list_arrays",
    "from_dict", "circular_positions", "azimuth_deg", "direction_vector", "far_field_delays_s",
    "SPARE_KINDS", "BOARD_CARD_IDS", "spare_channels", "to_capture", "boards_for_device", "capture_layout",
]
