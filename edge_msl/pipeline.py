"""The one streaming path shared by ``edge-msl locate`` and the daemon: capture frames -> channel
map -> (resampler) -> ring buffer -> window at the hop -> int8 model -> decode -> tracker ->
JSON-ready messages of schema ``edge-msl/sources-v1`` (``edge_msl/schema/sources-v1.json``).

It must not do I/O: frames come in through :meth:`Pipeline.push`, messages go out as dicts.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Sequence

import numpy as np

from .arrays import ArrayConfigError, MicArray
from .refine import SrpRefiner, hop_segments
from .regions import Detection, decode, gate_count, pool_count, pool_outputs
from .runtime import Model
from .stream import Resampler, Windower, design, to_float
from .symmetry import model_cycle
from .tracking import TrackedSource, Tracker, TrackerSettings

SCHEMA = "edge-msl/sources-v1"
"""Value of every message's ``schema`` field; a change that breaks readers gets a new version."""
SCHEMA_FILE = "schema/sources-v1.json"
"""JSON Schema of one message, relative to the ``edge_msl`` package."""


class PipelineError(ValueError):
    """The input does not fit the model (channels, rate, hop); one line saying expected vs found."""


def schema_path() -> str:
    """Path of the packaged JSON Schema of one message."""
    from pathlib import Path

    return str(Path(__file__).resolve().parent / SCHEMA_FILE)


def _source(id_: int | None, azimuth_deg: float, distance_m: float, confidence: float, region: int,
            active: bool) -> dict[str, Any]:
    a = math.radians(azimuth_deg)
    az = round(azimuth_deg, 1)
    return {
        "id": id_,
        "azimuth_deg": 0.0 if az >= 360.0 else az,
        "elevation_deg": None,  # the model estimates direction in the array plane only
        "distance_m": round(distance_m, 2),
        "x_m": round(distance_m * math.cos(a), 2),
        "y_m": round(distance_m * math.sin(a), 2),
        "confidence": round(confidence, 3),
        "region": region,
        "active": active,
    }


def message(t_s: float, sources: Sequence[TrackedSource | Detection]) -> dict[str, Any]:
    """One ``edge-msl/sources-v1`` message: tracked sources carry ids, raw detections ``id: null``."""
    out = []
    for s in sources:
        if isinstance(s, TrackedSource):
            out.append(_source(s.id, s.azimuth_deg, s.distance_m, s.confidence, s.region, s.active))
        else:
            out.append(_source(None, s.azimuth_deg, s.distance_m, s.confidence, s.region, True))
    return {"schema": SCHEMA, "t_s": round(t_s, 3), "sources": out}


ODAS_SLOTS = 4
"""ODAS' sst module always lists 4 tracks (empty ones with id 0); so does ``--format odas``."""


def to_odas(msg: dict[str, Any], time_stamp: int) -> dict[str, Any]:
    """An ODAS ``sst`` frame for one message: unit vector x/y/z and ``activity`` per track."""
    src = []
    for s in msg["sources"]:
        a = math.radians(s["azimuth_deg"])
        src.append({"id": s["id"] if s["id"] is not None else 0, "tag": "dynamic", "x": round(math.cos(a), 3),
                    "y": round(math.sin(a), 3), "z": 0.0, "activity": s["confidence"]})
    while len(src) < ODAS_SLOTS:
        src.append({"id": 0, "tag": "", "x": 0.0, "y": 0.0, "z": 0.0, "activity": 0.0})
    return {"timeStamp": time_stamp, "src": src}


class Pipeline:
    """frames -> ring buffer -> windows at the hop -> int8 model -> decode -> tracker -> messages.

    ``pool_s`` (default: the model's ``decode.pool_s``) averages the outputs of the windows in the
    last ``pool_s`` seconds before decoding (:func:`~edge_msl.regions.pool_outputs`): more audio of
    evidence per message at no extra model runs; the first messages after a start or a reset pool
    fewer windows. With the model's ``decode.symmetry`` "cycle", each pooled window runs on the
    next of the array's symmetric images (:mod:`edge_msl.symmetry`). The model's
    ``decode.gate_s`` / ``gate_threshold`` let a pooled region go when none of its windows in the
    last ``gate_s`` seconds was active enough.

    One per stream and thread (it holds the model's buffers). ``array`` (default: the model's)
    gives the capture channel map; its geometry must be the model's. ``srp_refine`` False leaves
    the decoded azimuths as they are even where the model's sidecar sets ``decode.srp_refine``
    (:mod:`edge_msl.refine`); ``symmetry`` False runs every window as it is even where the
    sidecar sets ``decode.symmetry`` "cycle".
    """

    def __init__(self, model: Model, *, hop_s: float = 0.1, threshold: float | None = None, track: bool = True,
                 tracking: TrackerSettings | None = None, input_rate_hz: int | None = None,
                 array: MicArray | None = None, pool_s: float | None = None, srp_refine: bool = True,
                 symmetry: bool = True) -> None:
        info = model.info
        self.model = model
        self.array = array or info.array
        if not self.array.same_geometry(info.array):
            raise PipelineError(f"array {self.array.name!r} ({self.array.n_mics} mics) has another geometry than the "
                                f"model's {info.array.name!r} ({info.array.n_mics} mics); use a model for "
                                f"{self.array.name!r} or configure {info.array.name!r}")
        self.sample_rate_hz = info.sample_rate_hz
        self.input_rate_hz = int(input_rate_hz or info.sample_rate_hz)
        if self.input_rate_hz < self.sample_rate_hz:
            raise PipelineError(f"audio at {self.input_rate_hz} Hz is below the model's {self.sample_rate_hz} Hz, which "
                                f"cannot be made up by resampling; capture or record at {self.sample_rate_hz} Hz or more")
        self.resampler: Resampler | None = None
        if self.input_rate_hz != self.sample_rate_hz:
            try:
                design(self.input_rate_hz, self.sample_rate_hz)
            except ValueError as exc:
                raise PipelineError(str(exc)) from None
            self.resampler = Resampler(self.input_rate_hz, self.sample_rate_hz, self.array.n_mics)
        if isinstance(hop_s, bool) or not isinstance(hop_s, (int, float)) or not math.isfinite(hop_s) \
                or not 1.0 / self.sample_rate_hz <= hop_s <= 60.0:
            raise PipelineError(f"hop_s = {hop_s!r} is invalid; allowed: seconds in [1/{self.sample_rate_hz}, 60] "
                                f"(0.1 is the default)")
        self.hop_s = float(hop_s)
        self.hop_samples = max(1, int(round(self.hop_s * self.sample_rate_hz)))
        self.pool_s = info.pool_s if pool_s is None else pool_s
        if isinstance(self.pool_s, bool) or not isinstance(self.pool_s, (int, float)) or not math.isfinite(self.pool_s) \
                or not 0.0 <= self.pool_s <= 60.0:
            raise PipelineError(f"pool_s = {pool_s!r} is invalid; allowed: seconds in [0, 60] (0: each window alone; "
                                f"the model's is {info.pool_s:g})")
        self.pool_windows = pool_count(float(self.pool_s), info.window_samples / info.sample_rate_hz,
                                       self.hop_samples / info.sample_rate_hz)
        self._recent: deque[np.ndarray] = deque(maxlen=self.pool_windows)
        # decode.gate_s: a pooled region must have reached gate_threshold in one of its latest windows
        self._gate_windows = gate_count(info.gate_s, info.window_samples / info.sample_rate_hz,
                                        self.hop_samples / info.sample_rate_hz)
        self._gate_threshold = info.gate_threshold
        # pooled: decode max(latest, mean * gain) at the onset threshold, i.e. the latest window at
        # onset_threshold or the mean at pool_threshold (a given threshold scales both)
        self._pool_gain = info.onset_threshold / info.pool_threshold
        model_threshold = info.onset_threshold if self.pool_windows > 1 else info.threshold
        self.threshold = model_threshold if threshold is None else threshold
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not 0.0 < self.threshold < 1.0:
            raise PipelineError(f"threshold = {threshold!r} is invalid; allowed: a probability in (0, 1) "
                                f"(the model's is {model_threshold})")
        self.track = bool(track)
        self.tracker = Tracker(tracking) if self.track else None
        self.windower = Windower(info.window_samples, self.hop_samples, self.array.n_mics)
        self._layout = info.layout
        # decode.srp_refine: azimuths refined on the cross-spectra of the pooled windows
        self._refiner = SrpRefiner(info.array.positions(), info.sample_rate_hz, info.srp_refine) \
            if info.srp_refine and srp_refine else None
        # one cross-spectrum per hop of audio, over the span of the pooled windows
        span = info.window_samples + (self.pool_windows - 1) * self.hop_samples
        self._crosses: deque[np.ndarray] = deque(maxlen=max(1, span // self.hop_samples))
        # decode.symmetry cycle: each pooled window runs on the next symmetric image of the array
        self._cycle = model_cycle(info.array.positions(), info.layout) \
            if symmetry and info.symmetry == "cycle" and self.pool_windows > 1 else []
        self._offset_s = 0.0  # stream time before the last reset, so t_s never goes back
        self.windows_analysed = 0

    @property
    def window_s(self) -> float:
        """Length of an analysed window in seconds."""
        return self.model.info.window_samples / self.sample_rate_hz

    def check_input(self, n_channels: int, sample_rate_hz: int, what: str = "input") -> None:
        """Raise :class:`PipelineError` if a stream of this shape cannot be fed to :meth:`push`."""
        if n_channels != self.array.n_channels:
            cmap = list(self.array.channel_map)
            raise PipelineError(f"{what} has {n_channels} channels, array {self.array.name!r} expects "
                                f"{self.array.n_channels} (mics on channels {cmap}); give the array of the board "
                                f"that recorded it (--array) or record all {self.array.n_channels} channels")
        if sample_rate_hz != self.input_rate_hz:
            raise PipelineError(f"{what} is at {sample_rate_hz} Hz, the pipeline was set up for {self.input_rate_hz} Hz; "
                                f"set input_rate_hz to the capture rate")

    def push(self, frames: np.ndarray) -> list[dict[str, Any]]:
        """Feed (n, n_channels) frames as captured (int16/int32/float32, all channels, any n).

        Returns one message per window completed by these frames (often none, sometimes several).
        """
        try:
            mics = self.array.select_channels(frames)
        except ArrayConfigError as exc:
            raise PipelineError(str(exc)) from None
        x = to_float(mics)
        if self.resampler is not None:
            x = self.resampler.process(x)
            delay_s = self.resampler.delay_s
        else:
            delay_s = 0.0
        out = []
        for end, window in self.windower.push(x):
            t_s = self._offset_s + end / self.sample_rate_hz - delay_s
            out.append(self.analyse(window, t_s))
        return out

    def detections(self, window: np.ndarray) -> list[Detection]:
        """Run the model on the next window (mic order, model rate) and decode it, pooled with the
        windows before it (``pool_s``); untracked."""
        if self._cycle:
            image = self._cycle[self.windows_analysed % len(self._cycle)]
            y = image.restore(self.model.outputs(image.permute(window)))
        else:
            y = self.model.outputs(window)
        self.windows_analysed += 1
        self._recent.append(np.asarray(y, dtype=np.float64))
        outputs = self._recent[0] if self.pool_windows == 1 else pool_outputs(np.stack(self._recent), self._pool_gain,
                                                                                 self._gate_windows, self._gate_threshold)
        dets = decode(self._layout, outputs, self.threshold)
        if self._refiner is None:
            return dets
        # the first window after a start or reset brings all its hops, later ones their newest hop
        pieces = hop_segments(window, self.hop_samples)
        for piece in pieces if not self._crosses else pieces[-1:]:
            self._crosses.append(self._refiner.cross(piece))
        return self._refiner.refine(dets, np.mean(self._crosses, axis=0)) if dets else dets

    def analyse(self, window: np.ndarray, t_s: float) -> dict[str, Any]:
        """Run the model on one window (mic order, model rate) that ends at ``t_s``; returns its message."""
        dets = self.detections(window)
        if self.tracker is None:
            return message(t_s, dets)
        return message(t_s, self.tracker.update(dets, t_s))

    def reset(self, gap_s: float = 0.0) -> None:
        """After a capture gap: drop buffered audio and tracks; ids keep increasing, t_s keeps counting
        (plus ``gap_s``, the length of the gap if the caller knows it)."""
        self._offset_s += self.windower.samples_seen / self.sample_rate_hz + max(0.0, float(gap_s))
        self.windower.reset()
        self._recent.clear()
        self._crosses.clear()
        if self.resampler is not None:
            self.resampler.reset()
        if self.tracker is not None:
            self.tracker.reset()


__all__ = ["SCHEMA", "SCHEMA_FILE", "PipelineError", "Pipeline", "message", "to_odas", "schema_path", "ODAS_SLOTS"]
