"""The public Python API: :class:`Localizer` turns a recording or captured frames into messages.

A thin front of :func:`edge_msl.runtime.load_model` and :class:`edge_msl.pipeline.Pipeline`: every
decision (model, decode, schema) is theirs, so the API says what the command line and daemon say.
It must not import TensorFlow, ALSA or MQTT.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .arrays import MicArray, from_dict, get_array
from .audio_io import open_audio
from .pipeline import Pipeline
from .runtime import Model, ModelInfo, load_model

EXAMPLE = "example"
"""Name of the bundled 3-talker recording (``edge_msl/examples/uca8-r10-3talkers.wav``)."""


def example_path(suffix: str = ".wav") -> str:
    """The bundled example recording (``.wav``) or its ground truth (``.truth.json``)."""
    return str(Path(__file__).resolve().parent / "examples" / f"uca8-r10-3talkers{suffix}")


def resolve_array(array: str | os.PathLike[str] | MicArray | None) -> MicArray | None:
    """A :class:`MicArray` from a built-in name, a TOML file with an ``[array]`` table, or a MicArray."""
    if array is None or isinstance(array, MicArray):
        return array
    spec = os.fspath(array)
    if spec.endswith(".toml"):
        with open(spec, "rb") as f:
            cfg = tomllib.load(f)
        if "array" not in cfg:
            raise ValueError(f"{spec}: no [array] table; see docs/boards.md for a custom array")
        return from_dict(cfg["array"])
    return get_array(spec)


class Localizer:
    """Where are the talkers? Messages of schema ``edge-msl/sources-v2`` from audio of a mic array.

    ``array``: a built-in array name (``edge-msl arrays``), a TOML file with an ``[array]`` table,
    a :class:`~edge_msl.arrays.MicArray`, or None for the model's array. ``model``: an int8
    ``.tflite`` with its ``.json`` sidecar, or None for the model packaged for ``array``
    (default ``uca8-r10``). ``hop_s``: seconds between analysed windows. ``threshold``, ``track``
    and the keyword ``decode`` settings (e.g. ``keep_threshold=0.25``, ``resume_s=2.0``; see
    docs/decode.md) go to the temporal decode over the model's own settings.

    Example, the bundled recording (three talkers, one after the other, overlapping)::

        >>> from edge_msl import Localizer
        >>> loc = Localizer(array="uca8-r10")
        >>> messages = list(loc.locate("example"))      # a path, or "example"
        >>> len(messages), messages[0]["schema"]
        (44, 'edge-msl/sources-v2')
        >>> sorted({s["id"] for m in messages for s in m["sources"]})
        [1, 2, 3]
        >>> [round(s["azimuth_deg"]) for s in messages[10]["sources"]]
        [320, 82]

    Streaming, as captured (``(n, n_channels)`` int16/int32/float32 frames at ``input_rate_hz``)::

        >>> import numpy as np
        >>> loc = Localizer(array="respeaker-6mic", input_rate_hz=16000)
        >>> silence = np.zeros((16000, 8), dtype=np.int16)  # 1 s of the 8 capture channels
        >>> [m["sources"] for m in loc.push(silence)]     # one message per hop once a window is full
        [[], [], [], [], [], []]
    """

    def __init__(self, array: str | os.PathLike[str] | MicArray | None = None,
                 model: str | os.PathLike[str] | None = None, *, hop_s: float = 0.1,
                 threshold: float | None = None, track: bool = True, input_rate_hz: int | None = None,
                 num_threads: int = 1, **decode: Any) -> None:
        self.array = resolve_array(array)
        self.model: Model = load_model(model, array=self.array, num_threads=num_threads)
        self._settings = dict(hop_s=hop_s, threshold=threshold, track=track, decode=dict(decode), array=self.array)
        self.input_rate_hz = int(input_rate_hz or self.model.info.sample_rate_hz)
        # fail now, not at the first push, on a bad hop, threshold or decode key
        self._stream: Pipeline | None = self._pipeline(self.input_rate_hz)

    @property
    def info(self) -> ModelInfo:
        """The model's parameters (array, sample rate, window, regions, decode settings)."""
        return self.model.info

    def _pipeline(self, input_rate_hz: int) -> Pipeline:
        return Pipeline(self.model, input_rate_hz=input_rate_hz, **self._settings)

    def locate(self, path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
        """Messages for a recording (WAV, or what ffmpeg decodes; ``"example"`` = the bundled one).

        Channels in the capture order of the array; rates above the model's are resampled. Each
        call starts afresh (new ids, ``t_s`` from 0). Raises ``ValueError`` subclasses with a
        one-line reason and fix (no such file, wrong channel count, rate too low, ...). The
        constructor raises :class:`~edge_msl.runtime.ModelError` for a missing or mismatched model.
        """
        path = os.fspath(path)
        if path == EXAMPLE and not os.path.exists(path):
            path = example_path(".wav")
        with open_audio(path) as reader:
            info = reader.info
            pipe = self._pipeline(info.sample_rate_hz)
            pipe.check_input(info.n_channels, info.sample_rate_hz, what=path)
            block = max(1, int(round(pipe.hop_s * info.sample_rate_hz)))
            for frames in reader.blocks(block):
                yield from pipe.push(frames)

    def push(self, frames: np.ndarray) -> list[dict[str, Any]]:
        """Feed captured frames ``(n, n_channels)`` at ``input_rate_hz``, any n; returns the messages of
        the windows they complete (often none, sometimes several)."""
        if self._stream is None:
            self._stream = self._pipeline(self.input_rate_hz)
        return self._stream.push(frames)

    def reset(self, gap_s: float = 0.0) -> None:
        """After a capture gap: drop buffered audio and talkers; ids keep increasing, ``t_s`` goes on."""
        if self._stream is not None:
            self._stream.reset(gap_s)


__all__ = ["Localizer", "EXAMPLE", "example_path", "resolve_array"]
