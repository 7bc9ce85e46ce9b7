"""record: clips through the daemon's ALSA capture (edge_msl.capture), at the array's rate.

It must not label or keep a clip whose capture restarted half-way.
"""

from __future__ import annotations

import logging

import numpy as np

from edge_msl.arrays import MicArray

from .session import CalibrationError

log = logging.getLogger("train_tf.calibrate")


def record_clip(device, array: MicArray, seconds: float, sample_rate_hz: int, capture_rate_hz: int | None = None,
                stop=None) -> np.ndarray:
    """``seconds`` of audio from the daemon's capture path (``edge_msl.capture``), all capture channels, int16
    at ``sample_rate_hz`` (resampled like the daemon does when the device runs at another rate)."""
    from edge_msl.capture import Capture
    from edge_msl.stream import Resampler, to_float

    rate = capture_rate_hz or device.rate_hz or sample_rate_hz
    cap = Capture(device, rate_hz=rate, n_channels=array.n_channels, stop=stop)
    want = int(round(seconds * rate))
    got: list[np.ndarray] = []
    n = 0
    try:
        while n < want:
            frames = cap.read()
            if frames is None:
                if cap.stop.is_set():
                    raise CalibrationError("recording stopped before the clip was complete; record it again")
                # the device was lost mid-clip: a clip must be one continuous take
                got, n = [], 0
                log.warning("capture restarted; recording the clip again from the start")
                continue
            got.append(frames)
            n += len(frames)
    finally:
        cap.close()
    audio = np.concatenate(got)[:want]
    if audio.dtype == np.int32:
        audio = np.clip(np.round(to_float(audio) * 32768.0), -32768, 32767).astype(np.int16)
    if rate != sample_rate_hz:
        r = Resampler(rate, sample_rate_hz, array.n_channels)
        audio = np.clip(np.round(r.process(to_float(audio)) * 32768.0), -32768, 32767).astype(np.int16)
    return audio
