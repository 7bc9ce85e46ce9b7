"""What a simulated scene looks like: :class:`SimSettings` (stored with every dataset), the shard format
version and the dry-signal kind codes. Pure settings: it must not simulate or read files.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from edge_msl.arrays import MicArray, get_array
from edge_msl.regions import RegionLayout
from edge_msl.settings_check import (Settings, choice, integer, invalid, items, number, pair, setting, table_of,
                                     text)

FORMAT_VERSION = 1
"""Version of the shard layout; bumped when arrays or their meaning change."""

KIND_CODES = {"speech_real": 0, "speech_synth": 1, "music": 2, "noise": 3}
"""Integer code stored per source for the kind of dry signal it plays."""

DIFFUSE_KINDS = ("white", "pink", "brown", "hum", "fan", "clicks", "music", "babble")
"""Kinds the diffuse field may play: ``train_tf.bank.synth.NOISE_KINDS`` and babble (a test keeps them equal)."""


def _num(lo: float, hi: float, **kw: Any):
    """A number in the interval, kept as given (a stored 20 reads back and writes out as 20, not 20.0)."""
    return number(lo, hi, as_given=True, **kw)


_PROB = _num(0.0, 1.0, noun="a probability")
"""A probability, kept as given."""


def _kind_weights(key: str, v: Any) -> tuple[tuple[str, float], ...]:
    """A list of [kind, weight] (kinds of ``KIND_CODES``, each once; weights finite and >= 0, not all 0), the
    weights as floats."""
    allowed = f"a list of [kind, weight] with kinds of {sorted(KIND_CODES)} (each once), weights >= 0, not all 0"
    try:
        out = tuple((k, float(w)) for k, w in v)
        ok = not isinstance(v, (str, bytes, dict)) and len(out) > 0 and all(
            k in KIND_CODES and not isinstance(w, bool) for k, w in v)
    except (TypeError, ValueError):
        ok = False
    if not ok or len({k for k, _ in out}) != len(out) or not all(math.isfinite(w) and w >= 0 for _, w in out) \
            or sum(w for _, w in out) <= 0:
        raise invalid(key, v, allowed)
    return out


@dataclass(frozen=True)
class SimSettings(Settings):
    """Everything that decides what a simulated scene looks like (stored with every dataset's meta.json and every
    trained model's params.json as JSON data: :meth:`to_dict`, read back by :meth:`from_dict`)."""

    array: str = setting("uca8-r10", text(what="an array name", empty=False))
    """Built-in array name (``edge_msl.arrays``)."""
    sample_rate_hz: int = setting(16000, integer(8000, 192000))
    """Sample rate of rendered audio and RIRs."""
    window_s: float = setting(0.5, _num(0.0, 60.0, lo_open=True))
    """Length of one rendered window."""
    room_x_m: tuple[float, float] = setting((3.0, 10.0), pair(_num(0.0, 100.0, lo_open=True)))
    """Range of room length."""
    room_y_m: tuple[float, float] = setting((3.0, 8.0), pair(_num(0.0, 100.0, lo_open=True)))
    """Range of room width."""
    room_z_m: tuple[float, float] = setting((2.4, 4.0), pair(_num(0.0, 100.0, lo_open=True)))
    """Range of room height."""
    rt60_s: tuple[float, float] = setting((0.1, 0.9), pair(_num(0.0, 10.0)))
    """Range of reverberation time for reverberant rooms (clamped to what Sabine allows)."""
    anechoic_prob: float = setting(0.1, _PROB)
    """Fraction of rooms simulated without reflections (direct path only)."""
    max_image_order: int = setting(17, integer(0, 100))
    """Cap on the image-source order; a stochastic diffuse tail continues the decay beyond it."""
    rand_ism_m: float = setting(0.05, _num(0.0, 1.0))
    """Random image displacement (pyroomacoustics' randomized ISM) against sweeping echoes."""
    array_wall_clearance_m: float = setting(0.5, _num(0.0, 10.0))
    """Minimum distance from the array centre to any wall."""
    array_height_m: tuple[float, float] = setting((0.5, 2.0), pair(_num(0.0, 100.0)))
    """Range of array height above the floor."""
    array_wall_prob: float = setting(0.0, _PROB)
    """Fraction of rooms whose array stands against a side wall (a wall-mounted camera or a
    device on a shelf) instead of anywhere clear of the walls; its talkers are then in front."""
    array_wall_gap_m: tuple[float, float] = setting((0.05, 0.3), pair(_num(0.0, 10.0)))
    """Range of the gap between such an array's edge and its wall."""
    wall_absorption_spread: float = setting(0.0, _num(0.0, 10.0))
    """Spread of the six surfaces' absorption about the room's mean: each is the mean times
    ``exp(u)``, ``u`` uniform in +/- this value, rescaled so that the total absorption (and so
    Sabine's RT60) is kept - hard walls and a carpeted floor instead of one material. 0 = one
    material for every surface."""
    n_sources: tuple[int, int] = setting((0, 4), pair(integer(0, 64)))
    """Inclusive range of simultaneous sources per window (uniform)."""
    source_distance_m: tuple[float, float] = setting((0.3, 4.0), pair(_num(0.0, 100.0, lo_open=True)))
    """Range of source distance from the array centre (3-D)."""
    source_elevation_deg: tuple[float, float] = setting((-40.0, 40.0), pair(_num(-90.0, 90.0)))
    """Range of source elevation seen from the array."""
    source_wall_clearance_m: float = setting(0.2, _num(0.0, 10.0))
    """Minimum distance from a source to any wall, floor or ceiling."""
    min_source_separation_deg: float = setting(10.0, _num(0.0, 180.0))
    """Minimum azimuth difference between simultaneous sources."""
    positions_per_room: int = setting(8, integer(1))
    """Source positions simulated per room (windows draw their sources from these)."""
    windows_per_room: int = setting(4, integer(1))
    """Windows rendered per simulated room in window mode."""
    source_level_db: tuple[float, float] = setting((-6.0, 6.0), pair(_num(-100.0, 100.0)))
    """Range of each source's dry level relative to the others (before distance attenuation)."""
    snr_diffuse_db: tuple[float, float] = setting((0.0, 40.0), pair(_num(-100.0, 200.0)))
    """Range of SNR of spatially diffuse noise (pink/white/brown/babble/fan) w.r.t. the sources."""
    snr_sensor_db: tuple[float, float] = setting((5.0, 40.0), pair(_num(-100.0, 200.0)))
    """Range of SNR of independent sensor (white) noise w.r.t. the sources."""
    mic_gain_db: float = setting(1.0, _num(0.0, 20.0))
    """Per-microphone gain error, uniform in +/- this value."""
    mic_jitter_m: float = setting(0.001, _num(0.0, 0.1))
    """Per-axis microphone position error, uniform in +/- this value."""
    level_dbfs: tuple[float, float] = setting((-50.0, -20.0), pair(_num(-150.0, 0.0)))
    """Range of the sources' RMS level at the microphones, in dB re full scale (int16)."""
    kind_weights: tuple[tuple[str, float], ...] = setting((
        ("speech_real", 0.4), ("speech_synth", 0.35), ("music", 0.1), ("noise", 0.15)), _kind_weights)
    """Probability of each dry-signal kind for a source."""
    diffuse_kinds: tuple[str, ...] = setting(("pink", "white", "brown", "babble", "fan"),
                                             items(choice(*DIFFUSE_KINDS), 1))
    """Noise kinds used for the diffuse field."""
    rir_bank_samples: int = setting(8192, integer(1))
    """RIR length kept in rir-bank mode (longer tails are cut)."""
    echo_prob: float = setting(0.0, _PROB)
    """On-the-fly training only (``train_tf.mixer``): probability that a source also arrives as a
    strong discrete echo from another direction - its own signal through the RIR of another
    position of the room, delayed and attenuated, and *not* labelled a source - as a whiteboard,
    window or screen near the array makes in a real room. Teaches the network that a delayed
    coherent copy is a reflection, not a second talker. 0 = off (the shoebox's own reflections)."""
    echo_gain_db: tuple[float, float] = setting((-12.0, -3.0), pair(_num(-100.0, 20.0)))
    """Range of an echo's direct-path level relative to its source's direct path."""
    echo_delay_ms: tuple[float, float] = setting((1.0, 12.0), pair(_num(0.0, 1000.0)))
    """Range of an echo's delay after its source."""
    echo_min_separation_deg: float = setting(30.0, _num(0.0, 180.0))
    """Smallest azimuth difference between an echo and every source of its window."""
    move_chains: int = setting(0, integer(0))
    """RIR banks only: this many of each room's positions start a *chain*, two more positions
    along an arc at the same distance and elevation (half a step, then a whole step of
    ``move_step_deg`` away), stored after the ``positions_per_room`` positions: position c's
    chain is (c, P + 2c, P + 2c + 1). The mixer renders a talker walking through them during one
    window (``move_prob``). 0 = none (the bank is as before)."""
    move_step_deg: tuple[float, float] = setting((8.0, 45.0), pair(_num(0.0, 180.0)))
    """Range of a chain's whole step, either way round: the azimuth a talker covers in one
    window (45 degrees in 0.5 s is 1.5 m/s at 1 m)."""
    move_prob: float = setting(0.0, _PROB)
    """On-the-fly training only: probability that a window's first source walks along one of its
    room's chains during the window, cross-faded start -> middle -> end (labelled at the middle,
    where it is at the window's centre). Needs a bank with ``move_chains`` > 0."""
    move_label: str = setting("middle", choice("middle", "end"))
    """Where a walking source is labelled: "middle" of its chain (its place at the window's centre,
    what the temporal decode's ``lead_s`` 0.25 models) or "end" (its place at the window's end, for a
    network that reports walkers where they are now, with ``lead_s`` 0)."""
    gate_prob: float = setting(0.0, _PROB)
    """On-the-fly training only: probability that a source starts or stops talking inside the
    window (or stopped up to ``gate_lead_s`` before it, leaving only its reverberation), so the
    network learns to drop a talker who stopped and to take one who starts, as turn-taking does."""
    gate_lead_s: float = setting(0.3, _num(0.0, 60.0))
    """How long before the window a gated source may have stopped (its tail still in the window)."""
    min_voice_s: float = setting(0.0, _num(0.0, 60.0))
    """On-the-fly training only: a source is labelled present only with at least this much voice
    (active 20 ms frames of its dry signal, after gating) inside the window, the rule by which the
    project's scene truth lists a talker. 0 = every source is labelled (as before)."""
    regions: RegionLayout = setting(RegionLayout(), table_of(RegionLayout))
    """Region layout used for the stored region targets (training may re-encode)."""

    KEY = "sim.{}"
    TABLE = "simulation"
    PLAIN_DATA = True

    @property
    def window_samples(self) -> int:
        """Samples in one window."""
        return int(round(self.window_s * self.sample_rate_hz))

    def mic_array(self) -> MicArray:
        """The array geometry these settings simulate."""
        return get_array(self.array)

    def replace(self, **changes: Any) -> "SimSettings":
        """A copy with some fields changed (checked as a new one is)."""
        return dataclasses.replace(self, **changes)
