"""Which instant does each window report, and does it follow where in the window its talker spoke?

The decode takes every window's direction as where the talker was ``lead_s`` (0.25 s) before the window's end.
A walker who spoke only in the newest part of a window was measured later than that, one who stopped early
sooner. For each moving talker (5-60 deg/s) the packaged model finds on a walk set, this compares the instant
whose true direction is nearest the window's (``tau*``) with three estimates of it: the centroid of the
talker's own voiced part of the window (from the scene's truth: an oracle), of the window's audio energy, and
of its log-energy (26 dB range), and, per talker, of the SRP-PHAT response toward the window's direction in each
0.1 s hop (negative responses count 0), each in seconds before the window's end. Then the direction error against
the truth at 0.25 s and at each estimate.

    .venv/bin/python -m experiments.window_instant data/scenes/val-walk
    .venv/bin/python -m experiments.window_instant --decode data/scenes/val-walk data/scenes/val2-walk data/scenes/val-turns
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from benchmarks.scenes_bench import read_wav
from edge_msl.regions import decode, wrap180
from edge_msl.truth import _hits, present
from experiments.newest_audio import MOVING_DEG_S, Scenes, velocity

BLOCK_S = 0.01
HOP_S = 0.1
"""The pipeline's hop, which is also the SRP-PHAT hop whose cross-spectra it keeps."""
LOG_RANGE_NP = 6.0
"""The log-energy centroid weighs each 10 ms block by how far its log-energy is above the window's loudest minus
this many nepers (6 Np = 26 dB), so that quiet blocks count for nothing and loud ones alike."""


def centroids(energy: np.ndarray, fs: int) -> tuple[float, float]:
    """(energy centroid, log-energy centroid) in seconds before the end of a window's per-sample energy."""
    n = int(round(BLOCK_S * fs))
    blocks = energy[:len(energy) // n * n].reshape(-1, n).sum(axis=1)
    before = (len(blocks) - np.arange(len(blocks)) - 0.5) * BLOCK_S
    tau_e = float(np.sum(blocks * before) / max(np.sum(blocks), 1e-30))
    w = np.maximum(np.log(blocks + 1e-12) - np.log(blocks.max() + 1e-12) + LOG_RANGE_NP, 0.0)
    tau_l = float(np.sum(w * before) / max(np.sum(w), 1e-30))
    return tau_e, tau_l


def window_gccs(refiner, hop_cross: np.ndarray, k: int, n_hops: int) -> tuple[list[np.ndarray], np.ndarray]:
    """GCC-PHATs of window ``k``'s hops, from the cached last hop of each window (the window hop is the SRP hop,
    0.1 s, so window ``k``'s hops are the last hops of it and the windows before), and each hop's centre in
    seconds before the window's end."""
    hops = hop_cross[max(0, k + 1 - n_hops):k + 1]
    return [refiner.gcc(h) for h in hops], (len(hops) - np.arange(len(hops)) - 0.5) * HOP_S


def srp_instant(refiner, gccs: list[np.ndarray], before: np.ndarray, azimuth_deg: float) -> float | None:
    """The centroid of the hops' times (seconds before the window's end) weighed by each hop's SRP-PHAT response
    toward ``azimuth_deg`` (negative responses count 0); None where no hop responds."""
    w = np.maximum([float(refiner.response(g, np.array([azimuth_deg]))[0]) for g in gccs], 0.0)
    return float(np.sum(w * before) / np.sum(w)) if np.sum(w) > 0 else None


def rows_of(walk: str) -> np.ndarray:
    """One row per moving talker hit: speed, talkers present, tau*, voiced, energy, log-energy and SRP-PHAT
    centroids, and the error against the truth at 0.25 s and at each centroid."""
    sc = Scenes("data/scenes/val-turns", walk)
    window = sc.info.window_s
    taus = np.arange(0.0, window + 1e-9, 0.01)
    rows = []
    n_hops = int(round(window / HOP_S))
    for stem, truth, c in sc.walkers():
        pcm, fs = read_wav(stem.with_suffix(".wav"))
        energy = np.sum((pcm.astype(np.float64) / 32768.0) ** 2, axis=1)
        for k, t in enumerate(c["t_s"]):
            if k < 3:
                continue
            here = present(truth, t, window)
            moving = [q for q in here if truth[q].path and MOVING_DEG_S <= abs(velocity(truth[q], t - 0.2)) < 60.0]
            if not moving:
                continue
            dets = sc.refiner.refine(decode(sc.info.layout, c[sc.images][k], sc.info.threshold), c["cross"][k])
            az = [d.azimuth_deg for d in dets]
            n1 = int(round(t * fs))
            n0 = max(0, n1 - int(round(window * fs)))
            tau_e, tau_l = centroids(energy[n0:n1], fs)
            gccs, hop_before = window_gccs(sc.refiner, c["hop_cross"], k, n_hops)
            for i, j, _ in _hits(az, [truth[q].azimuth_at(t - 0.25) for q in moving], 20.0):
                src = truth[moving[j]]
                voiced = np.array([any(a <= t - tau < b for a, b in src.voice_s) for tau in taus])
                tau_v = float(np.mean(taus[voiced])) if voiced.any() else 0.25
                tau_s = srp_instant(sc.refiner, gccs, hop_before, az[i])
                tau_s = 0.25 if tau_s is None else tau_s
                err = [abs(wrap180(az[i] - src.azimuth_at(t - tau))) for tau in taus]
                at = [abs(wrap180(az[i] - src.azimuth_at(t - tau))) for tau in (0.25, tau_v, tau_e, tau_l, tau_s)]
                rows.append((abs(velocity(src, t - 0.2)), len(here), float(taus[int(np.argmin(err))]), tau_v, tau_e,
                             tau_l, tau_s, *at))
    return np.array(rows)


def decode_screen(sets: list[str]) -> None:
    """The shipped decode on each set, then the same with each detection taken at its window's SRP-PHAT instant
    (``_Kalman.update``'s ``lag_s`` per detection; ``lead_s`` where no hop responds). The window hop is the SRP
    hop (0.1 s), so a window's hops are the last hops of it and the four windows before."""
    import edge_msl.temporal as temporal
    from benchmarks import scenes_bench as sb
    from edge_msl.pipeline import message, newest_peak
    from edge_msl.refine import SrpRefiner
    from edge_msl.runtime import load_model
    from edge_msl.truth import load_truth, score_parts, summarize

    model = load_model(None)
    info = model.info
    settings = temporal.DecodeSettings.from_dict(info.raw["decode"]["temporal"])
    refiner = SrpRefiner(info.array.positions(), info.sample_rate_hz, info.srp_refine)
    images = "cycle" if info.symmetry == "cycle" else "plain"
    n_hops = int(round(info.window_s / HOP_S))
    shipped = temporal._Track.update
    window: dict[str, Any] = {"gccs": [], "before": None}

    def at_instant(track, det, t_s, s):
        shipped(track, det, t_s, s, srp_instant(refiner, window["gccs"], window["before"], det.azimuth_deg))

    print("| set | decode | F1 | precision | error° | moving error° | pick-up p90 s | id sw./turn |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for use in (False, True):
        temporal._Track.update = at_instant if use else shipped
        try:
            for d in sets:
                parts = []
                for stem in sb.scenes([d]):
                    c = sb.cached_outputs(model, stem)
                    dec, msgs = temporal.TemporalDecoder(info.layout, settings), []
                    for k, t in enumerate(c["t_s"]):
                        if use:
                            window["gccs"], window["before"] = window_gccs(refiner, c["hop_cross"], k, n_hops)
                        peak = newest_peak(refiner, c["hop_cross"][max(0, k + 1 - settings.now_hops):k + 1])
                        fn = lambda dets, k=k: refiner.refine(dets, c["cross"][k])  # noqa: E731
                        msgs.append(message(float(t), dec.update(c[images][k], float(t), fn, peak)))
                    parts.append(score_parts(msgs, load_truth(stem.with_suffix(".truth.json"))[0], info.window_s))
                r = summarize(parts)
                cells = [f"{r[k]:.{n}f}" if r.get(k) is not None else "" for k, n in
                         (("f1", 3), ("precision", 3), ("doa_error_mean_deg", 2), ("doa_error_moving_deg", 2),
                          ("pickup_p90_s", 2), ("id_switches_per_turn", 3))]
                print(f"| {d.rstrip('/').split('/')[-1]} | {'SRP-PHAT instant' if use else 'shipped'} | "
                      + " | ".join(cells) + " |", flush=True)
        finally:
            temporal._Track.update = shipped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("walk", nargs="?", default="data/scenes/val-walk")
    ap.add_argument("--decode", nargs="+", metavar="SET", help="instead: the decode screen on these scene sets")
    args = ap.parse_args(argv)
    if args.decode:
        decode_screen(args.decode)
        return 0
    r = rows_of(args.walk)
    print("| moving talkers | hits | corr. of tau* with: voiced / energy / log-energy / SRP-PHAT centroid | error° at 0.25 s "
          "| at the voiced centroid (oracle) | at the energy centroid | at the log-energy centroid | at the SRP-PHAT centroid |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, sel in (("all", np.ones(len(r), bool)), ("one talker present", r[:, 1] == 1), ("20-60°/s", r[:, 0] >= 20)):
        q = r[sel]
        corr = " / ".join(f"{np.corrcoef(q[:, 2], q[:, col])[0, 1]:.2f}" for col in (3, 4, 5, 6))
        print(f"| {name} | {len(q)} | {corr} | " + " | ".join(f"{q[:, col].mean():.2f}" for col in (7, 8, 9, 10, 11)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
