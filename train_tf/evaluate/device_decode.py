"""The device decode over sub-windows: model outputs turned into detections by the device's own
code (edge_msl.pipeline.decode_window, edge_msl.regions.decode, edge_msl.refine), as the daemon
runs it. It must not re-implement any of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_msl.regions import RegionLayout, decode
from train_tf.evaluate.outputs import POOL_HOP_S, pool_offsets

def temporal_settings(params: dict, threshold: float | None = None):
    """The model's temporal decode settings (``decode.temporal``), ``threshold`` as the birth threshold."""
    from edge_msl.temporal import DecodeSettings

    st = DecodeSettings.from_dict(params.get("decode", {}).get("temporal", {}))
    if threshold is not None:
        st = DecodeSettings.from_dict({"birth_threshold": threshold,
                                       "keep_threshold": min(st.keep_threshold, threshold)}, base=st)
    return st


def temporal_decode_all(per: np.ndarray, audio: np.ndarray, params: dict, threshold: float | None = None,
                        min_separation_deg: float | None = None, hop_s: float = POOL_HOP_S,
                        settings: Any = None, on_step: Any = None) -> tuple[list[list[Any]], float, float]:
    """Detections per window from the outputs of its sub-windows (:func:`window_outputs`): the
    device's temporal decode (:func:`edge_msl.pipeline.decode_window`, with the model's SRP
    refinement) run over the sub-windows, ``hop_s`` apart, as a stream; the talkers listed after
    the last one are the window's detections. ``on_step(i, j, decoder, talkers)``, if given, is
    called after sub-window ``j`` of window ``i`` (for studies of the decode's tracks)."""
    from collections import deque

    from edge_msl.pipeline import decode_window
    from edge_msl.refine import SrpRefiner
    from edge_msl.regions import Detection
    from edge_msl.temporal import TemporalDecoder

    fs, window = int(params["sample_rate_hz"]), int(params["model"]["window_samples"])
    hop = max(1, int(round(hop_s * fs)))
    layout_cfg = dict(params["regions"])
    if min_separation_deg is not None:
        layout_cfg["min_separation_deg"] = min_separation_deg
    layout = RegionLayout.from_dict(layout_cfg)
    st = settings or temporal_settings(params, threshold)
    srp = params.get("decode", {}).get("srp_refine")
    refiner = SrpRefiner(np.asarray(params["array"]["positions_m"], dtype=np.float64), fs, srp) if srp else None
    offsets = pool_offsets(audio.shape[1], window, hop)
    out = []
    for i in range(len(per)):
        dec = TemporalDecoder(layout, st)
        crosses: deque = deque(maxlen=max(1, window // hop))
        x = audio[i].astype(np.float32) / 32768.0
        talkers: list[Any] = []
        for j, o in enumerate(offsets):
            talkers = decode_window(dec, per[i, j], x[o:o + window], (o + window) / fs, refiner, crosses, hop)
            if on_step is not None:
                on_step(i, j, dec, talkers)
        out.append([Detection(t.azimuth_deg, t.distance_m, t.confidence, t.region) for t in talkers])
    return out, st.birth_threshold, layout.min_separation_deg


def decode_all(outputs: np.ndarray, params: dict, threshold: float | None = None,
               min_separation_deg: float | None = None,
               fine_stretch: float | None = None) -> tuple[list[list[Any]], float, float]:
    """Detections per window of the model's own length; unset decode settings come from params.json
    (``decode.threshold``, else 0.5; ``fine_stretch``: the model's ``regions.fine_stretch``, else 1)."""
    if threshold is None:
        threshold = float(params.get("decode", {}).get("threshold", 0.5))
    layout_cfg = dict(params["regions"])
    if min_separation_deg is not None:
        layout_cfg["min_separation_deg"] = min_separation_deg
    if fine_stretch is not None:
        layout_cfg["fine_stretch"] = fine_stretch
    layout = RegionLayout.from_dict(layout_cfg)
    return [decode(layout, o, threshold) for o in outputs], threshold, layout.min_separation_deg


def srp_crosses(dets: list[list[Any]], audio: np.ndarray, params: dict, settings: dict,
                hop_s: float = POOL_HOP_S) -> list[np.ndarray | None]:
    """Per window, the mean cross-spectra that :func:`srp_refine_all` refines with (None where
    nothing was detected): those of the hops of audio of the pooled sub-windows, as the daemon
    keeps them. They depend on ``settings`` only through ``fmax_hz``."""
    from edge_msl.refine import SrpRefiner, hop_segments

    fs, window = int(params["sample_rate_hz"]), int(params["model"]["window_samples"])
    refiner = SrpRefiner(np.asarray(params["array"]["positions_m"], dtype=np.float64), fs, settings)
    hop = max(1, int(round(hop_s * fs)))
    out: list[np.ndarray | None] = []
    for x, ds in zip(audio, dets):
        if not ds:
            out.append(None)
            continue
        x = x.astype(np.float64) / 32768.0
        first = 0 if len(x) == window else pool_offsets(len(x), window, hop)[0]
        pieces = hop_segments(x[first:], hop)  # what the pipeline holds after the last sub-window
        out.append(np.mean([refiner.cross(piece) for piece in pieces], axis=0))
    return out


def srp_refine_all(dets: list[list[Any]], audio: np.ndarray, params: dict, hop_s: float = POOL_HOP_S,
                   crosses: list[np.ndarray | None] | None = None) -> list[list[Any]]:
    """``dets`` refined as the daemon does when the model's decode has ``srp_refine``
    (:mod:`edge_msl.refine`); unchanged otherwise. ``crosses``: :func:`srp_crosses` computed
    before for the same ``fmax_hz`` (a settings sweep reuses them)."""
    settings = params.get("decode", {}).get("srp_refine")
    if not settings:
        return dets
    from edge_msl.refine import SrpRefiner

    refiner = SrpRefiner(np.asarray(params["array"]["positions_m"], dtype=np.float64), int(params["sample_rate_hz"]),
                         settings)
    if crosses is None:
        crosses = srp_crosses(dets, audio, params, settings, hop_s)
    return [refiner.refine(ds, cross) if ds else ds for ds, cross in zip(dets, crosses)]
