"""What a simulated scene looks like: :class:`SimSettings` (stored with every dataset), the shard format
version and the dry-signal kind codes. Pure settings: it must not simulate or read files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from edge_msl.arrays import MicArray, get_array
from edge_msl.regions import RegionLayout
from edge_msl.settings_check import plain_from_dict, plain_to_dict, reject_unknown_keys

FORMAT_VERSION = 1
"""Version of the shard layout; bumped when arrays or their meaning change."""

KIND_CODES = {"speech_real": 0, "speech_synth": 1, "music": 2, "noise": 3}
"""Integer code stored per source for the kind of dry signal it plays."""


@dataclass(frozen=True)
class SimSettings:
    """Everything that decides what a simulated scene looks like (stored with every dataset)."""

    array: str = "uca8-r10"
    """Built-in array name (``edge_msl.arrays``)."""
    sample_rate_hz: int = 16000
    """Sample rate of rendered audio and RIRs."""
    window_s: float = 0.5
    """Length of one rendered window."""
    room_x_m: tuple[float, float] = (3.0, 10.0)
    """Range of room length."""
    room_y_m: tuple[float, float] = (3.0, 8.0)
    """Range of room width."""
    room_z_m: tuple[float, float] = (2.4, 4.0)
    """Range of room height."""
    rt60_s: tuple[float, float] = (0.1, 0.9)
    """Range of reverberation time for reverberant rooms (clamped to what Sabine allows)."""
    anechoic_prob: float = 0.1
    """Fraction of rooms simulated without reflections (direct path only)."""
    max_image_order: int = 17
    """Cap on the image-source order; a stochastic diffuse tail continues the decay beyond it."""
    rand_ism_m: float = 0.05
    """Random image displacement (pyroomacoustics' randomized ISM) against sweeping echoes."""
    array_wall_clearance_m: float = 0.5
    """Minimum distance from the array centre to any wall."""
    array_height_m: tuple[float, float] = (0.5, 2.0)
    """Range of array height above the floor."""
    array_wall_prob: float = 0.0
    """Fraction of rooms whose array stands against a side wall (a wall-mounted camera or a
    device on a shelf) instead of anywhere clear of the walls; its talkers are then in front."""
    array_wall_gap_m: tuple[float, float] = (0.05, 0.3)
    """Range of the gap between such an array's edge and its wall."""
    wall_absorption_spread: float = 0.0
    """Spread of the six surfaces' absorption about the room's mean: each is the mean times
    ``exp(u)``, ``u`` uniform in +/- this value, rescaled so that the total absorption (and so
    Sabine's RT60) is kept - hard walls and a carpeted floor instead of one material. 0 = one
    material for every surface."""
    n_sources: tuple[int, int] = (0, 4)
    """Inclusive range of simultaneous sources per window (uniform)."""
    source_distance_m: tuple[float, float] = (0.3, 4.0)
    """Range of source distance from the array centre (3-D)."""
    source_elevation_deg: tuple[float, float] = (-40.0, 40.0)
    """Range of source elevation seen from the array."""
    source_wall_clearance_m: float = 0.2
    """Minimum distance from a source to any wall, floor or ceiling."""
    min_source_separation_deg: float = 10.0
    """Minimum azimuth difference between simultaneous sources."""
    positions_per_room: int = 8
    """Source positions simulated per room (windows draw their sources from these)."""
    windows_per_room: int = 4
    """Windows rendered per simulated room in window mode."""
    source_level_db: tuple[float, float] = (-6.0, 6.0)
    """Range of each source's dry level relative to the others (before distance attenuation)."""
    snr_diffuse_db: tuple[float, float] = (0.0, 40.0)
    """Range of SNR of spatially diffuse noise (pink/white/brown/babble/fan) w.r.t. the sources."""
    snr_sensor_db: tuple[float, float] = (5.0, 40.0)
    """Range of SNR of independent sensor (white) noise w.r.t. the sources."""
    mic_gain_db: float = 1.0
    """Per-microphone gain error, uniform in +/- this value."""
    mic_jitter_m: float = 0.001
    """Per-axis microphone position error, uniform in +/- this value."""
    level_dbfs: tuple[float, float] = (-50.0, -20.0)
    """Range of the sources' RMS level at the microphones, in dB re full scale (int16)."""
    kind_weights: tuple[tuple[str, float], ...] = (
        ("speech_real", 0.4), ("speech_synth", 0.35), ("music", 0.1), ("noise", 0.15))
    """Probability of each dry-signal kind for a source."""
    diffuse_kinds: tuple[str, ...] = ("pink", "white", "brown", "babble", "fan")
    """Noise kinds used for the diffuse field."""
    rir_bank_samples: int = 8192
    """RIR length kept in rir-bank mode (longer tails are cut)."""
    echo_prob: float = 0.0
    """On-the-fly training only (``train_tf.mixer``): probability that a source also arrives as a
    strong discrete echo from another direction - its own signal through the RIR of another
    position of the room, delayed and attenuated, and *not* labelled a source - as a whiteboard,
    window or screen near the array makes in a real room. Teaches the network that a delayed
    coherent copy is a reflection, not a second talker. 0 = off (the shoebox's own reflections)."""
    echo_gain_db: tuple[float, float] = (-12.0, -3.0)
    """Range of an echo's direct-path level relative to its source's direct path."""
    echo_delay_ms: tuple[float, float] = (1.0, 12.0)
    """Range of an echo's delay after its source."""
    echo_min_separation_deg: float = 30.0
    """Smallest azimuth difference between an echo and every source of its window."""
    move_chains: int = 0
    """RIR banks only: this many of each room's positions start a *chain*, two more positions
    along an arc at the same distance and elevation (half a step, then a whole step of
    ``move_step_deg`` away), stored after the ``positions_per_room`` positions: position c's
    chain is (c, P + 2c, P + 2c + 1). The mixer renders a talker walking through them during one
    window (``move_prob``). 0 = none (the bank is as before)."""
    move_step_deg: tuple[float, float] = (8.0, 45.0)
    """Range of a chain's whole step, either way round: the azimuth a talker covers in one
    window (45 degrees in 0.5 s is 1.5 m/s at 1 m)."""
    move_prob: float = 0.0
    """On-the-fly training only: probability that a window's first source walks along one of its
    room's chains during the window, cross-faded start -> middle -> end (labelled at the middle,
    where it is at the window's centre). Needs a bank with ``move_chains`` > 0."""
    gate_prob: float = 0.0
    """On-the-fly training only: probability that a source starts or stops talking inside the
    window (or stopped up to ``gate_lead_s`` before it, leaving only its reverberation), so the
    network learns to drop a talker who stopped and to take one who starts, as turn-taking does."""
    gate_lead_s: float = 0.3
    """How long before the window a gated source may have stopped (its tail still in the window)."""
    min_voice_s: float = 0.0
    """On-the-fly training only: a source is labelled present only with at least this much voice
    (active 20 ms frames of its dry signal, after gating) inside the window, the rule by which the
    project's scene truth lists a talker. 0 = every source is labelled (as before)."""
    regions: RegionLayout = field(default_factory=RegionLayout)
    """Region layout used for the stored region targets (training may re-encode)."""

    @property
    def window_samples(self) -> int:
        """Samples in one window."""
        return int(round(self.window_s * self.sample_rate_hz))

    def mic_array(self) -> MicArray:
        """The array geometry these settings simulate."""
        return get_array(self.array)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        return plain_to_dict(self)

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "SimSettings":
        """Settings from :meth:`to_dict` output; unknown keys are refused."""
        reject_unknown_keys(cls, cfg, "simulation setting")
        cfg = dict(cfg)
        if "regions" in cfg:
            cfg["regions"] = RegionLayout.from_dict(cfg["regions"])
        if "kind_weights" in cfg:
            cfg["kind_weights"] = tuple((str(k), float(w)) for k, w in cfg["kind_weights"])
        return plain_from_dict(cls, cfg, "simulation setting")

    def replace(self, **changes: Any) -> "SimSettings":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)
