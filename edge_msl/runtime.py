"""Load an int8 TFLite model with its sidecar parameters and run it one window at a time.

The one place that picks the TFLite runtime (ai_edge_litert, then tflite_runtime, then
tensorflow.lite only if neither is installed) and checks a model before use. It must not import
TensorFlow while another runtime is installed, and must not allocate more than needed per window.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .arrays import ArrayConfigError, MicArray
from .features import normalize_window, parse_scaling
from .model_store import HEAD_SUFFIX, head_file
from .refine import RefineConfigError, check_settings
from .regions import Detection, RegionConfigError, RegionLayout, decode
from .settings_check import SettingError, integer, number
from .symmetry import symmetry_mode
from .temporal import DecodeSettings

log = logging.getLogger("edge_msl.runtime")

SIDECAR_FORMAT = "edge-msl-tflite-params"
"""Value of the sidecar's ``format`` key (written by ``python -m convert``)."""
SIDECAR_VERSIONS = (1,)
"""Sidecar versions this loader understands."""
DEFAULT_ARRAY_NAME = "uca8-r10"
"""Array of the model shipped inside the package."""
RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow.lite")
"""TFLite runtimes in order of preference."""

_MODELS_DIR = Path(__file__).resolve().parent / "models"
_OUTPUT_COLUMNS = ["active", "distance", "azimuth"]
EMBEDDING = "embedding"
"""Sidecar key (and output name) of the network's embedding, the input of its temporal head."""
TEMPORAL_HEAD = "temporal_head"
"""Sidecar key of the learned temporal head (:class:`TemporalHead`)."""


class ModelError(RuntimeError):
    """A model cannot be used; ``str()`` is one line: ``model <file>: <reason>; <fix>``."""

    def __init__(self, path: str | Path, reason: str, fix: str) -> None:
        self.path = Path(path)
        self.reason = reason
        self.fix = fix
        super().__init__(f"model {path}: {reason}; {fix}".replace("\n", " "))


@dataclass(frozen=True)
class ModelInfo:
    """What the sidecar ``<model>.json`` says about a model, checked against the .tflite file."""

    path: Path
    """The .tflite file."""
    sidecar_path: Path
    """The parameters file next to it (same name, suffix .json)."""
    sha256: str
    """Hex sha256 of the .tflite file (equal to the sidecar's ``tflite_sha256``)."""
    sample_rate_hz: int
    """Sample rate the model was trained at."""
    window_samples: int
    """Samples per analysed window."""
    array: MicArray
    """Microphone geometry and order the model was trained for."""
    layout: RegionLayout
    """Region layout used to decode the outputs."""
    threshold: float
    """Activity threshold chosen at training time for decoding."""
    temporal: DecodeSettings
    """The temporal decode's settings for this model (``decode.temporal``; unset keys: the
    defaults of :class:`~edge_msl.temporal.DecodeSettings`)."""
    raw: dict
    """The whole sidecar."""
    srp_refine: dict | None = None
    """Checked ``decode.srp_refine`` settings (:mod:`edge_msl.refine`), or None: azimuths as decoded."""
    symmetry: str = "none"
    """``decode.symmetry``: "cycle" runs each window on the next of the array's symmetric images
    (:mod:`edge_msl.symmetry`), so the temporal decode averages over them; "none" (the default)
    runs the windows as they are."""

    @property
    def window_s(self) -> float:
        """Window length in seconds."""
        return self.window_samples / self.sample_rate_hz


@dataclass(frozen=True)
class Runtime:
    """The TFLite runtime picked by :func:`pick_runtime`."""

    name: str
    """One of :data:`RUNTIMES`."""
    version: str
    """The runtime package's version."""
    interpreter: Callable[..., Any]
    """Its ``Interpreter`` class."""


_RUNTIME: Runtime | None = None


def pick_runtime(for_model: str | Path = "(any)") -> Runtime:
    """The first installed runtime of :data:`RUNTIMES` (cached; logged once at INFO); ``for_model``
    names the model in the error raised when none is installed."""
    global _RUNTIME
    if _RUNTIME is not None:
        return _RUNTIME
    tried = []
    for name in RUNTIMES:
        try:
            if name == "tensorflow.lite":
                # only reached when neither light runtime is installed (a training machine)
                tf = importlib.import_module("tensorflow")
                interpreter, version = tf.lite.Interpreter, tf.__version__
            else:
                module = importlib.import_module(f"{name}.interpreter")
                interpreter = module.Interpreter
                version = getattr(importlib.import_module(name), "__version__", "unknown")
        except ImportError as exc:
            tried.append(f"{name} ({exc.__class__.__name__})")
            continue
        _RUNTIME = Runtime(name, str(version), interpreter)
        log.info("TFLite runtime: %s %s", name, version)
        return _RUNTIME
    raise ModelError(for_model, f"no TFLite runtime is installed (tried {', '.join(tried)})", _runtime_fix())


def _runtime_fix(machine: str | None = None, pointer_bits: int | None = None) -> str:
    """What to install on this machine: ai-edge-litert has wheels for 64-bit x86 and ARM only, and
    tflite-runtime's last release (2.14) one for 32-bit ARM (armv7l, cp311, glibc >= 2.34) built for numpy 1."""
    import platform
    import struct

    machine = (machine or platform.machine()).lower()
    bits = pointer_bits or struct.calcsize("P") * 8
    if machine.startswith("armv6"):
        return ("no TFLite runtime has a wheel for armv6 (Pi 1, Zero W); use a Pi 2 or later, best with the "
                "64-bit Raspberry Pi OS")
    if machine.startswith(("arm", "aarch64")) and bits == 32:
        return ("32-bit ARM: ai-edge-litert has no wheel here; pip install 'tflite-runtime==2.14.0' 'numpy<2' "
                "(Python 3.11: Raspberry Pi OS Bookworm), or use the 64-bit OS")
    return "pip install ai-edge-litert"


def available_models() -> list[str]:
    """Array names that have a model packaged in ``edge_msl/models``."""
    return sorted(p.stem for p in _MODELS_DIR.glob("*.tflite") if not p.name.endswith(HEAD_SUFFIX))


def default_model_path(array_name: str = DEFAULT_ARRAY_NAME) -> Path:
    """The packaged model for ``array_name``: ``edge_msl/models/<array_name>.tflite``."""
    path = _MODELS_DIR / f"{array_name}.tflite"
    if not path.is_file():
        have = ", ".join(available_models()) or "none (the package was installed without its models)"
        raise ModelError(path, f"no packaged model for array {array_name!r} (packaged: {have})",
                         "pass a model converted for this array with --model, or use a packaged array")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _get(side: dict, key: str, kind: type | tuple[type, ...], path: Path, sidecar: Path) -> Any:
    value: Any = side
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ModelError(path, f"sidecar {sidecar.name} has no {key!r}",
                             "reconvert the model with python -m convert (it writes a complete sidecar)")
        value = value[part]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ModelError(path, f"sidecar {sidecar.name}: {key!r} is {value!r}, not a {_kind_name(kind)}",
                         "reconvert the model with python -m convert")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _describe(array: MicArray) -> str:
    return f"{array.name!r} ({array.n_mics} mics, aperture {array.aperture_m() * 1000:.1f} mm)"


_PROBABILITY = number(0.0, 1.0, lo_open=True, hi_open=True, noun="a probability")
_POSITIVE = integer(1)


def read_info(path: str | Path) -> ModelInfo:
    """Check a .tflite file against its sidecar and return the model's parameters.

    Refuses (:class:`ModelError`) a missing file, a missing or invalid sidecar, a file whose
    size or sha256 differs from the sidecar's, and a file that is not a TFLite flatbuffer.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(path, "file not found", "give the path of a .tflite written by python -m convert, "
                         "or leave the model unset to use the packaged one")
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        raise ModelError(path, f"its parameters file {sidecar.name} is missing",
                         "keep the .json that python -m convert wrote next to the .tflite (copy both together)")
    try:
        side = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(path, f"sidecar {sidecar.name} is not valid JSON ({exc})",
                         "restore it from the conversion output or reconvert the model") from None
    if not isinstance(side, dict) or side.get("format") != SIDECAR_FORMAT:
        found = side.get("format") if isinstance(side, dict) else type(side).__name__
        raise ModelError(path, f"sidecar {sidecar.name} has format {found!r}, expected {SIDECAR_FORMAT!r}",
                         "give the .json that python -m convert wrote for this model")
    if side.get("version") not in SIDECAR_VERSIONS:
        raise ModelError(path, f"sidecar version {side.get('version')!r} is not supported "
                         f"(this edge-msl reads {list(SIDECAR_VERSIONS)})", "upgrade edge-msl or reconvert the model")
    want_sha = _get(side, "tflite_sha256", str, path, sidecar)
    want_bytes = _get(side, "tflite_bytes", int, path, sidecar)
    size = path.stat().st_size
    if size != want_bytes:
        raise ModelError(path, f"file is {size} bytes but its sidecar says {want_bytes} (truncated or incomplete "
                         f"copy)", "copy the .tflite again, completely")
    sha = _sha256(path)
    if sha != want_sha:
        raise ModelError(path, f"sha256 {sha[:12]}... differs from the sidecar's {want_sha[:12]}... (the .tflite "
                         f"and {sidecar.name} do not belong together, or the file is corrupt)",
                         "copy the .tflite and its .json from the same conversion")
    with path.open("rb") as f:
        head = f.read(8)
    # every TFLite flatbuffer carries the identifier "TFL3" at bytes 4..8
    if head[4:8] != b"TFL3":
        raise ModelError(path, "not a TFLite flatbuffer (no TFL3 identifier)",
                         "give the .tflite written by python -m convert")
    try:
        array_cfg = _get(side, "array", dict, path, sidecar)
        array = MicArray(
            name=str(array_cfg["name"]),
            positions_m=tuple(tuple(float(v) for v in p) for p in array_cfg["positions_m"]),
            channel_map=tuple(array_cfg.get("channel_map", range(len(array_cfg["positions_m"])))),
            n_channels=int(array_cfg.get("n_channels", len(array_cfg["positions_m"]))),
            native_rate_hz=int(array_cfg.get("native_rate_hz", 16000)),
            source=str(array_cfg.get("source", "model sidecar")),
            notes=str(array_cfg.get("notes", "")),
        )
        layout = RegionLayout.from_dict(_get(side, "regions", dict, path, sidecar))
    except (KeyError, TypeError, ValueError, ArrayConfigError, RegionConfigError) as exc:
        raise ModelError(path, f"sidecar {sidecar.name} has an invalid array or region layout ({exc})",
                         "reconvert the model with python -m convert") from None
    # the settings' own checks (edge_msl.settings_check), each error naming key, value and what is allowed
    try:
        threshold = _PROBABILITY("decode.threshold", _get(side, "decode.threshold", (int, float), path, sidecar))
    except SettingError as exc:
        raise ModelError(path, f"sidecar {sidecar.name}: {exc}", "fix decode.threshold in the sidecar") from None
    try:
        temporal = DecodeSettings.from_dict(side["decode"].get("temporal", {}))
    except SettingError as exc:
        raise ModelError(path, f"sidecar {sidecar.name}: {exc}", "fix decode.temporal in the sidecar or remove it "
                         "(the defaults then apply)") from None
    try:
        rate = _POSITIVE("sample_rate_hz", _get(side, "sample_rate_hz", int, path, sidecar))
        window = _POSITIVE("window_samples", _get(side, "window_samples", int, path, sidecar))
    except SettingError as exc:
        raise ModelError(path, f"sidecar {sidecar.name}: {exc}", "reconvert the model with python -m convert") \
            from None
    try:
        symmetry = symmetry_mode(side["decode"])
    except ValueError as exc:
        raise ModelError(path, str(exc), "fix decode.symmetry in the sidecar or remove it") from None
    srp_refine = side.get("decode", {}).get("srp_refine")
    if srp_refine is not None:
        try:
            srp_refine = check_settings(srp_refine, rate)
        except RefineConfigError as exc:
            raise ModelError(path, str(exc), "fix decode.srp_refine in the sidecar or remove it") from None
    return ModelInfo(path=path, sidecar_path=sidecar, sha256=sha, sample_rate_hz=rate, window_samples=window,
                     array=array, layout=layout, threshold=threshold, temporal=temporal, raw=side,
                     srp_refine=srp_refine, symmetry=symmetry)


def _scaling(info: ModelInfo) -> dict[str, Any]:
    """The input scaling the model was trained with (its sidecar's ``input_scaling``)."""
    try:
        return parse_scaling(info.raw.get("input_scaling"))
    except ValueError as exc:
        raise ModelError(info.path, str(exc), "upgrade edge-msl or reconvert") from None


class Model:
    """An int8 TFLite model ready to localize: one window of audio in, region outputs out.

    Not thread-safe: one ``Model`` per thread (each holds its own interpreter and buffers).
    """

    info: ModelInfo
    runtime: str

    def __init__(self, info: ModelInfo, num_threads: int = 1) -> None:
        rt = pick_runtime(info.path)
        self.info = info
        self.runtime = rt.name
        self.runtime_version = rt.version
        self.num_threads = num_threads
        self._scaling = _scaling(info)
        side, path = info.raw, info.path
        sig_name = _get(side, "signature", str, path, info.sidecar_path)
        in_name = _get(side, "input.name", str, path, info.sidecar_path)
        out_name = _get(side, "output.name", str, path, info.sidecar_path)
        columns = side["output"].get("columns", _OUTPUT_COLUMNS)
        if columns != _OUTPUT_COLUMNS:
            raise ModelError(path, f"output columns {columns} differ from {_OUTPUT_COLUMNS} (edge_msl.regions order)",
                             "reconvert the model with this edge-msl's convert")
        try:
            interp = rt.interpreter(model_path=str(path), num_threads=num_threads)
            interp.allocate_tensors()
            signatures = list(interp.get_signature_list())
            if signatures != [sig_name]:
                raise ModelError(path, f"signatures {signatures} are not the sidecar's [{sig_name!r}]",
                                 "the sidecar belongs to another model; reconvert")
            runner = interp.get_signature_runner(sig_name)
            in_det = runner.get_input_details()[in_name]
            out_det = runner.get_output_details()[out_name]
        except ModelError:
            raise
        except KeyError as exc:
            raise ModelError(path, f"signature {sig_name!r} has no tensor {exc} named in the sidecar",
                             "the sidecar belongs to another model; reconvert") from None
        except (ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise ModelError(path, f"{rt.name} cannot load it ({first})",
                             "the file is corrupt; copy it again or reconvert the model") from None
        for what, det in (("input", in_det), ("output", out_det)):
            if np.dtype(det["dtype"]) != np.int8:
                raise ModelError(path, f"{what} tensor {det['name']!r} is {np.dtype(det['dtype']).name}, not int8",
                                 "convert with python -m convert (full-integer int8 quantization)")
        want_in = (1, info.window_samples, info.array.n_mics)
        want_out = (1, info.layout.n_regions, 3)
        got_in, got_out = (tuple(int(v) for v in det["shape"]) for det in (in_det, out_det))
        if got_in != want_in or got_out != want_out:
            raise ModelError(path, f"tensor shapes {got_in} -> {got_out} differ "
                             f"from the sidecar's {want_in} -> {want_out}", "the sidecar belongs to another model")
        self._emb_index: int | None = None
        if EMBEDDING in side:  # the network's embedding, a second output (python -m convert.temporal_head)
            emb_name = _get(side, "embedding.name", str, path, info.sidecar_path)
            try:
                emb_det = runner.get_output_details()[emb_name]
            except KeyError:
                raise ModelError(path, f"signature {sig_name!r} has no output {emb_name!r} named in the sidecar's "
                                 "embedding", "the sidecar belongs to another model; reconvert") from None
            self._emb_index = int(emb_det["index"])
            self._emb_scale, self._emb_zero = (float(v) for v in emb_det["quantization"])
        self._in_scale, self._in_zero = (float(v) for v in in_det["quantization"])
        self._out_scale, self._out_zero = (float(v) for v in out_det["quantization"])
        if not (self._in_scale > 0 and self._out_scale > 0 and math.isfinite(self._in_scale)):
            raise ModelError(path, "input or output tensor has no quantization scale",
                             "convert with python -m convert (full-integer int8 quantization)")
        # the signature's tensors, looked up by name above, are used by index on the hot path:
        # the signature runner would resize and re-allocate the tensors on every call
        self._interp = interp
        self._in_index = int(in_det["index"])
        self._out_index = int(out_det["index"])
        self._qf = np.empty(want_in[1:], dtype=np.float32)
        self._q = np.empty(want_in, dtype=np.int8)
        self.temporal_head()  # a missing or broken head fails here, at load time

    def __repr__(self) -> str:
        return (f"Model({str(self.info.path)!r}, array={self.info.array.name!r}, runtime={self.runtime!r}, "
                f"num_threads={self.num_threads})")

    def quantize(self, window: np.ndarray) -> np.ndarray:
        """The int8 input tensor (1, window_samples, n_mics) for a window (reused buffer)."""
        shape = self._qf.shape
        w = np.asarray(window)
        if w.shape != shape:
            raise ValueError(f"window must have shape {shape} (window_samples, n_mics in the model's mic order), "
                             f"got {w.shape}; select the array's channels and cut windows of "
                             f"{shape[0]} samples")
        x = normalize_window(w, **self._scaling)
        np.divide(x, self._in_scale, out=self._qf)
        self._qf += self._in_zero
        np.rint(self._qf, out=self._qf)
        np.clip(self._qf, -128, 127, out=self._qf)
        np.copyto(self._q[0], self._qf, casting="unsafe")
        return self._q

    def outputs(self, window: np.ndarray) -> np.ndarray:
        """Region outputs (n_regions, 3) float32 (active, distance, azimuth) for one window.

        ``window``: (window_samples, n_mics) int16 PCM or float full-scale, in the model's mic
        order (already channel-selected). Scaled by ``edge_msl.features.normalize_window``.
        """
        self._interp.set_tensor(self._in_index, self.quantize(window))
        self._interp.invoke()
        return _dequantize(self._interp.get_tensor(self._out_index)[0], self._out_scale, self._out_zero)

    def embedding(self) -> np.ndarray:
        """The embedding (dim,) float32 of the window of the last :meth:`outputs` call: the values the network's heads
        read, which its temporal head takes (ValueError if the model has no ``embedding`` output)."""
        if self._emb_index is None:
            raise ValueError(f"model {self.info.path.name} has no embedding output (python -m convert.temporal_head)")
        return _dequantize(self._interp.get_tensor(self._emb_index)[0], self._emb_scale, self._emb_zero)

    @property
    def has_temporal_head(self) -> bool:
        """Whether the sidecar names a learned temporal head (:meth:`temporal_head` makes one)."""
        return TEMPORAL_HEAD in self.info.raw

    def temporal_head(self) -> TemporalHead | None:
        """A new :class:`TemporalHead` (one per stream) if the sidecar names one, else None."""
        if not self.has_temporal_head:
            return None
        if self._emb_index is None:
            raise ModelError(self.info.path, "its sidecar names a temporal_head but no embedding output",
                             "give it both with python -m convert.temporal_head, or remove temporal_head")
        return TemporalHead(self.info, self.num_threads)

    def detections(self, window: np.ndarray, threshold: float | None = None) -> list[Detection]:
        """Decoded sources of one window alone, no pooling (``threshold`` defaults to the model's)."""
        return decode_outputs(self.info, self.outputs(window), threshold)


def _dequantize(y: np.ndarray, scale: float, zero: float) -> np.ndarray:
    """An int8 tensor's values as float32."""
    return (y.astype(np.float32) - np.float32(zero)) * np.float32(scale)


class TemporalHead:
    """A model's learned temporal head (the sidecar's ``temporal_head``, an int8 TFLite file next to the model): the
    embeddings (:meth:`Model.embedding`) of the last ``k`` windows in, the newest window's region outputs out, from
    what the ``k`` windows heard together (``train_tf.temporal_head``). It holds one stream's history: at the
    stream's start, and after :meth:`reset`, the oldest embedding it has stands in for the missing ones."""

    def __init__(self, info: ModelInfo, num_threads: int = 1) -> None:
        side = info.raw[TEMPORAL_HEAD]
        path = head_file(info.path)
        name = path.name
        fix = f"copy the model's {HEAD_SUFFIX} file next to it as {name} (python -m convert.temporal_head writes it)"
        if not path.exists():
            raise ModelError(info.path, f"its temporal head {name} is missing", fix)
        if _sha256(path) != side.get("sha256"):
            raise ModelError(info.path, f"its temporal head {name} differs from the one the sidecar describes "
                             "(sha256)", fix)
        self.k = int(side["k"])
        self.path = path
        try:
            interp = pick_runtime(path).interpreter(model_path=str(path), num_threads=num_threads)
            interp.allocate_tensors()
            runner = interp.get_signature_runner()
            in_det = runner.get_input_details()[side["input"]["name"]]
            out_det = runner.get_output_details()[side["output"]["name"]]
        except (KeyError, ValueError, RuntimeError) as exc:
            raise ModelError(info.path, f"its temporal head {name} cannot be loaded ({exc})", fix) from None
        want_out = (1, info.layout.n_regions, 3)
        got_in, got_out = (tuple(int(v) for v in d["shape"]) for d in (in_det, out_det))
        if got_in[:2] != (1, self.k) or got_out != want_out:
            raise ModelError(info.path, f"its temporal head's tensors {got_in} -> {got_out} differ from "
                             f"(1, {self.k}, dim) -> {want_out}", fix)
        self._interp = interp
        self._in_index, self._out_index = int(in_det["index"]), int(out_det["index"])
        self._in_scale, self._in_zero = (float(v) for v in in_det["quantization"])
        self._out_scale, self._out_zero = (float(v) for v in out_det["quantization"])
        self._history: deque[np.ndarray] = deque(maxlen=self.k)
        self._q = np.empty(got_in, dtype=np.int8)

    def step(self, embedding: np.ndarray) -> np.ndarray:
        """Region outputs (n_regions, 3) float32 of the newest window, given its embedding."""
        e = np.asarray(embedding, dtype=np.float32)
        if not self._history:
            self._history.extend([e] * (self.k - 1))
        self._history.append(e)
        x = np.rint(np.stack(self._history) / np.float32(self._in_scale) + np.float32(self._in_zero))
        np.copyto(self._q[0], np.clip(x, -128, 127), casting="unsafe")
        self._interp.set_tensor(self._in_index, self._q)
        self._interp.invoke()
        return _dequantize(self._interp.get_tensor(self._out_index)[0], self._out_scale, self._out_zero)

    def reset(self) -> None:
        """Forget the history (a gap in the stream)."""
        self._history.clear()


def decode_outputs(info: ModelInfo, outputs: np.ndarray, threshold: float | None = None) -> list[Detection]:
    """Decoded sources of one window's outputs (:meth:`Model.outputs`) of a model described by ``info``
    (``threshold`` defaults to the model's)."""
    return decode(info.layout, outputs, info.threshold if threshold is None else threshold)


def load_model(path: str | Path | None = None, *, array: MicArray | None = None, num_threads: int = 1) -> Model:
    """Load and check a model; ``path`` None takes the packaged model of ``array`` (default uca8-r10).

    Refuses (:class:`ModelError`) a missing or corrupt file, a missing or mismatched sidecar, a
    model that is not full-int8, and a model trained for a different array geometry than ``array``.
    """
    if not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 1:
        raise ValueError(f"num_threads must be an integer >= 1, got {num_threads!r}")
    if path is None:
        path = default_model_path(array.name if array is not None else DEFAULT_ARRAY_NAME)
    info = read_info(path)
    if array is not None and not info.array.same_geometry(array):
        raise ModelError(info.path, f"trained for array {_describe(info.array)}, but the configured array is "
                         f"{_describe(array)} with a different geometry",
                         f"use a model converted for {array.name!r} or configure array {info.array.name!r}")
    model = Model(info, num_threads)
    log.info("model %s: array %s, %d regions, window %d samples at %d Hz, runtime %s %s, %d thread(s)",
             info.path.name, info.array.name, info.layout.n_regions, info.window_samples, info.sample_rate_hz,
             model.runtime, model.runtime_version, num_threads)
    return model


__all__ = [
    "ModelError", "ModelInfo", "Model", "Runtime", "RUNTIMES", "pick_runtime", "available_models",
    "default_model_path", "read_info", "load_model", "decode_outputs", "TemporalHead", "EMBEDDING", "TEMPORAL_HEAD",
]
