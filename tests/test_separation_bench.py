"""The separation benchmark's true-direction variant: what it hands the separator."""

from __future__ import annotations

import numpy as np

from benchmarks.separation_bench import Scene, with_true_directions


def test_true_directions_point_each_track_at_the_nearest_talker():
    scene = Scene(seed=0, array="uca8-r10", rt60_s=0.3, audio=np.zeros((16, 8)), early=np.zeros((2, 16)),
                  direct=np.zeros((2, 16)), azimuth_deg=np.array([355.0, 120.0]), elevation_deg=np.array([-30.0, 45.0]),
                  distance_m=np.array([1.0, 2.0]), side="below")
    msg = {"t_s": 1.0, "sources": [{"id": 3, "azimuth_deg": 4.0, "elevation_deg": 10.0, "confidence": 0.9},
                                   {"id": 4, "azimuth_deg": 131.0, "elevation_deg": 20.0},
                                   {"id": None, "azimuth_deg": 200.0, "elevation_deg": None}]}
    out = with_true_directions(msg, scene)
    assert [(s["id"], s["azimuth_deg"], s["elevation_deg"]) for s in out["sources"]] == [
        (3, 355.0, -30.0), (4, 120.0, 45.0), (None, 200.0, None)]  # across 0/360 too; unlisted ones untouched
    assert out["sources"][0]["confidence"] == 0.9 and out["t_s"] == 1.0
    assert msg["sources"][0]["azimuth_deg"] == 4.0  # the decode's message is not changed
