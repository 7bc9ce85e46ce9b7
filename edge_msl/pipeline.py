"""The one streaming path shared by ``edge-msl locate`` and the daemon: capture frames -> channel
map -> (resampler) -> ring buffer -> window at the hop -> int8 model -> temporal decode
(:mod:`edge_msl.temporal`) -> JSON-ready messages of schema ``edge-msl/sources-v2``
(``edge_msl/schema/sources-v2.json``).

It must not do I/O: frames come in through :meth:`Pipeline.push`, messages go out as dicts.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Sequence

import numpy as np

from .arrays import ArrayConfigError, MicArray
from .config import HOP_S, THRESHOLD
from .refine import ElevationTracks, SrpRefiner, hop_segments
from .regions import Detection, decode
from .runtime import Model
from .stream import Resampler, Windower, design, to_float
from .settings_check import SettingError
from .symmetry import model_cycle
from .temporal import DecodeSettings, Talker, TemporalDecoder

SCHEMA = "edge-msl/sources-v2"
"""Value of every message's ``schema`` field; a change that breaks readers gets a new version
(v2: ``sources`` lists only the talkers present in the window; v1 also listed held tracks)."""
SCHEMA_FILE = "schema/sources-v2.json"
"""JSON Schema of one message, relative to the ``edge_msl`` package."""


class PipelineError(ValueError):
    """The input does not fit the model (channels, rate, hop); one line saying expected vs found."""


def schema_path() -> str:
    """Path of the packaged JSON Schema of one message."""
    from pathlib import Path

    return str(Path(__file__).resolve().parent / SCHEMA_FILE)


def _source(id_: int | None, azimuth_deg: float, distance_m: float, confidence: float, region: int,
            active: bool, rate_deg_s: float | None = None, elevation_deg: float | None = None) -> dict[str, Any]:
    a = math.radians(azimuth_deg)
    az = round(azimuth_deg, 1)
    return {
        "id": id_,
        "azimuth_deg": 0.0 if az >= 360.0 else az,
        "elevation_deg": None if elevation_deg is None else round(elevation_deg, 1) + 0.0,
        "distance_m": round(distance_m, 2),
        "x_m": round(distance_m * math.cos(a), 2),
        "y_m": round(distance_m * math.sin(a), 2),
        "confidence": round(confidence, 3),
        "region": region,
        "active": active,
        "azimuth_rate_deg_s": None if rate_deg_s is None else round(rate_deg_s, 1) + 0.0,  # never -0.0
    }


def message(t_s: float, sources: Sequence[Talker | Detection],
            elevations_deg: Sequence[float | None] | None = None) -> dict[str, Any]:
    """One ``edge-msl/sources-v2`` message: talkers carry ids, raw detections ``id: null``;
    ``elevations_deg`` (one per source) fills ``elevation_deg`` (default null)."""
    out = []
    els = list(elevations_deg) if elevations_deg is not None else [None] * len(sources)
    for s, el in zip(sources, els):
        if isinstance(s, Talker):
            out.append(_source(s.id, s.azimuth_deg, s.distance_m, s.confidence, s.region, s.active, s.rate_deg_s, el))
        else:
            out.append(_source(None, s.azimuth_deg, s.distance_m, s.confidence, s.region, True, None, el))
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


def add_hop_crosses(refiner: SrpRefiner, crosses: deque, window: np.ndarray, hop_samples: int) -> None:
    """Keep the cross-spectra of the window's hops in ``crosses`` (a deque of the window's length in
    hops): the first window after a start or reset brings all its hops, later ones their newest hop."""
    pieces = hop_segments(window, hop_samples)
    for piece in pieces if not crosses else pieces[-1:]:
        crosses.append(refiner.cross(piece))


class Message(dict):
    """One message: a plain dict to every writer, with the window's ``candidates`` beside it (not in the
    JSON): its detections before the temporal decode, refined as the decode saw them (ODAS ssl frames)."""

    candidates: tuple[Detection, ...] = ()


def newest_peak(refiner: SrpRefiner, hops: Sequence[np.ndarray]) -> Any:
    """``(azimuth_deg, half_deg) -> (peak_deg, strength) | None``: the SRP-PHAT peak of the newest hops'
    mean cross-spectra (``hops``, :meth:`SrpRefiner.cross` of each) within ``half_deg`` of an azimuth
    (None at the search's edge), and its strength, the response there as a share of a single plane
    wave's (0-1: how clearly the newest audio comes from there). Mean and GCC are computed at the
    first call, if any."""
    gcc: list[np.ndarray] = []

    def peak(azimuth_deg: float, half_deg: float) -> tuple[float, float] | None:
        if not gcc:
            gcc.append(refiner.gcc(np.mean(hops, axis=0)))
        found = refiner.peak(gcc[0], azimuth_deg, half_deg)
        if found is None:
            return None
        return found, float(refiner.response(gcc[0], np.array([found]))[0]) / refiner.plane_wave_gcc

    return peak


class WindowCross:
    """The mean cross-spectra of the hops in ``crosses`` (:func:`add_hop_crosses`), computed at the first
    call and kept: the refinement and the elevation of one window read the same."""

    def __init__(self, crosses: deque) -> None:
        self.crosses = crosses
        self._mean: np.ndarray | None = None

    def __call__(self) -> np.ndarray:
        if self._mean is None:
            self._mean = np.mean(self.crosses, axis=0)
        return self._mean


def decode_window(decoder: TemporalDecoder, outputs: np.ndarray, window: np.ndarray, t_s: float,
                  refiner: SrpRefiner | None, crosses: deque, hop_samples: int,
                  candidates: list[Detection] | None = None, window_cross: WindowCross | None = None) -> list[Talker]:
    """One step of the temporal decode for a window and its network outputs, with the model's SRP
    refinement (candidates on the window's hops, talkers measured at the newest hops' peak): the
    step the pipeline takes per window and ``train_tf.evaluate`` per sub-window. ``candidates``, if
    given, receives the window's candidates as the decode takes them (refined); ``window_cross`` (of
    ``crosses``), if given, keeps their mean cross-spectra for the caller once the hops are in."""
    def seen(dets: list[Detection]) -> list[Detection]:
        candidates.extend(dets)
        return dets

    if refiner is None:
        return decoder.update(outputs, t_s, seen if candidates is not None else None)
    add_hop_crosses(refiner, crosses, window, hop_samples)
    peak = newest_peak(refiner, list(crosses)[-decoder.settings.now_hops:])
    mean_cross = window_cross or WindowCross(crosses)

    def refine(dets: list[Detection]) -> list[Detection]:
        dets = refiner.refine(dets, mean_cross())
        return seen(dets) if candidates is not None else dets

    return decoder.update(outputs, t_s, refine, peak)


class Pipeline:
    """frames -> ring buffer -> windows at the hop -> int8 model -> temporal decode -> messages.

    ``decode`` (a :class:`~edge_msl.temporal.DecodeSettings`, or a table of some of its keys
    over the model's) sets the temporal decode; default: the model's ``decode.temporal``.
    ``threshold`` sets its birth threshold (and caps the keep threshold); with ``track`` False
    each window is decoded alone at ``threshold`` (default: the model's ``decode.threshold``) and
    messages list raw detections (``id`` null). With the model's ``decode.symmetry`` "cycle",
    each window runs on the next of the array's symmetric images (:mod:`edge_msl.symmetry`).

    One per stream and thread (it holds the model's buffers). ``array`` (default: the model's)
    gives the capture channel map; its geometry must be the model's. ``srp_refine`` False leaves
    the decoded azimuths as they are even where the model's sidecar sets ``decode.srp_refine``
    (:mod:`edge_msl.refine`); ``symmetry`` False runs every window as it is. ``elevation`` (needs the
    sidecar's ``srp_refine``) fills ``elevation_deg`` from the same cross-spectra; it never moves an azimuth.
    ``audio_listener`` (e.g. :class:`edge_msl.separate.SeparatedAudio`) gets the analysed audio and messages.
    A model with a learned temporal head (its sidecar's ``temporal_head``) gives each window's outputs from the
    embeddings of the last few windows (:class:`edge_msl.runtime.TemporalHead`; the symmetric images are then not
    cycled); ``temporal_head`` False runs the network's own heads on each window alone.
    """

    def __init__(self, model: Model, *, hop_s: float = 0.1, threshold: float | None = None, track: bool = True,
                 decode: DecodeSettings | dict | None = None, input_rate_hz: int | None = None,
                 array: MicArray | None = None, srp_refine: bool = True, symmetry: bool = True,
                 elevation: bool = True, temporal_head: bool = True) -> None:
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
        # the config's checks, so a value the config accepts is one the pipeline accepts
        try:
            self.hop_s = HOP_S("hop_s", hop_s)
        except SettingError as exc:
            raise PipelineError(f"{exc} (0.1 is the default)") from None
        self.hop_samples = max(1, int(round(self.hop_s * self.sample_rate_hz)))
        try:
            THRESHOLD("threshold", threshold)
        except SettingError as exc:
            raise PipelineError(f"{exc} (the model's is "
                                f"{info.temporal.birth_threshold if track else info.threshold})") from None
        self.track = bool(track)
        self.decoder: TemporalDecoder | None = None
        if self.track:
            try:
                settings = decode if isinstance(decode, DecodeSettings) else \
                    DecodeSettings.from_dict(decode or {}, base=info.temporal)
                if threshold is not None:
                    settings = DecodeSettings.from_dict({"birth_threshold": float(threshold), "keep_threshold":
                                                         min(settings.keep_threshold, float(threshold))}, base=settings)
            except SettingError as exc:
                raise PipelineError(str(exc)) from None
            self.decoder = TemporalDecoder(info.layout, settings)
            self.threshold = settings.birth_threshold
        else:
            self.threshold = info.threshold if threshold is None else float(threshold)
        self.windower = Windower(info.window_samples, self.hop_samples, self.array.n_mics)
        self._layout = info.layout
        # decode.srp_refine: candidates' azimuths refined on the cross-spectra of the window's hops;
        # talkers are measured, and walkers reported, at the SRP peak of the newest hops (DecodeSettings.now_*)
        self._refiner = SrpRefiner(info.array.positions(), info.sample_rate_hz, info.srp_refine) \
            if info.srp_refine and srp_refine else None
        self._elevations = ElevationTracks(self._refiner) if self._refiner is not None and elevation else None
        self.audio_listener: Any = None
        """Optional: ``push(x, [(index into x after a window's end, message), ...])`` with the audio (mic
        order, model rate) each :meth:`push` analysed, and ``reset()`` on :meth:`reset`."""
        self._crosses: deque[np.ndarray] = deque(maxlen=max(1, info.window_samples // self.hop_samples))
        # the model's learned temporal head, if it has one: the outputs of each window from its embedding and
        # those of the windows before it (edge_msl.runtime.TemporalHead), all in the array's own frame
        self._head = model.temporal_head() if temporal_head else None
        # decode.symmetry cycle (models without a temporal head): each window runs on the next symmetric image
        self._cycle = model_cycle(info.array.positions(), info.layout) \
            if symmetry and info.symmetry == "cycle" and self.track and self._head is None else []
        self._offset_s = 0.0  # stream time before the last reset, so t_s never goes back
        self.windows_analysed = 0

    @property
    def window_s(self) -> float:
        """Length of an analysed window in seconds."""
        return self.model.info.window_samples / self.sample_rate_hz

    @property
    def settings(self) -> DecodeSettings | None:
        """The temporal decode's settings (None with ``track`` False)."""
        return self.decoder.settings if self.decoder is not None else None

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
        before = self.windower.samples_seen
        ends = []
        for end, window in self.windower.push(x):
            t_s = self._offset_s + end / self.sample_rate_hz - delay_s
            out.append(self.analyse(window, t_s))
            ends.append(end - before)
        if self.audio_listener is not None:
            self.audio_listener.push(x, list(zip(ends, out)))
        return out

    def outputs(self, window: np.ndarray) -> np.ndarray:
        """The network's outputs (n_regions, 3) for the next window (on its symmetric image when cycling)."""
        if self._cycle:
            image = self._cycle[self.windows_analysed % len(self._cycle)]
            y = image.restore(self.model.outputs(image.permute(window)))
        else:
            y = self.model.outputs(window)
            if self._head is not None:
                y = self._head.step(self.model.embedding())
        self.windows_analysed += 1
        return np.asarray(y, dtype=np.float64)

    def _hop_crosses(self, window: np.ndarray) -> None:
        add_hop_crosses(self._refiner, self._crosses, window, self.hop_samples)

    def detections(self, window: np.ndarray, window_cross: WindowCross | None = None) -> list[Detection]:
        """The next window decoded alone at ``threshold`` (refined), untracked; ``window_cross`` as
        :func:`decode_window`'s."""
        dets = decode(self._layout, self.outputs(window), self.threshold)
        if self._refiner is None:
            return dets
        self._hop_crosses(window)
        return self._refiner.refine(dets, (window_cross or WindowCross(self._crosses))()) if dets else dets

    def _elevations_of(self, sources: Sequence[Talker | Detection], window_cross: WindowCross) -> list[float] | None:
        if self._elevations is None or not sources:
            return None
        gcc = self._refiner.gcc(window_cross())
        return self._elevations.update(gcc, [(getattr(s, "id", None), s.azimuth_deg, getattr(s, "active", True))
                                             for s in sources])

    def analyse(self, window: np.ndarray, t_s: float) -> dict[str, Any]:
        """Run the model on one window (mic order, model rate) that ends at ``t_s``; returns its message
        (a :class:`Message`, with the window's candidates)."""
        window_cross = WindowCross(self._crosses)  # read once the window's hops are in
        if self.decoder is None:
            dets = self.detections(window, window_cross)
            msg = Message(message(t_s, dets, self._elevations_of(dets, window_cross)))
            msg.candidates = tuple(dets)
            return msg
        candidates: list[Detection] = []
        talkers = decode_window(self.decoder, self.outputs(window), window, t_s, self._refiner, self._crosses,
                                self.hop_samples, candidates, window_cross)
        msg = Message(message(t_s, talkers, self._elevations_of(talkers, window_cross)))
        msg.candidates = tuple(candidates)
        return msg

    def reset(self, gap_s: float = 0.0) -> None:
        """After a capture gap: drop buffered audio and tracks; ids keep increasing, t_s keeps counting
        (plus ``gap_s``, the length of the gap if the caller knows it)."""
        self._offset_s += self.windower.samples_seen / self.sample_rate_hz + max(0.0, float(gap_s))
        self.windower.reset()
        self._crosses.clear()
        if self._elevations is not None:
            self._elevations.reset()
        if self.audio_listener is not None:
            self.audio_listener.reset()
        if self.resampler is not None:
            self.resampler.reset()
        if self._head is not None:
            self._head.reset()
        if self.decoder is not None:
            self.decoder.reset()


__all__ = ["SCHEMA", "SCHEMA_FILE", "PipelineError", "Pipeline", "Message", "message", "to_odas", "schema_path",
           "ODAS_SLOTS", "add_hop_crosses", "decode_window", "WindowCross"]
