"""build: real, summed, turned and simulated windows of a session (set.npz), with positions held out whole for
validation.

It must not let a held-out position's audio into training.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge_msl.arrays import MicArray
from edge_msl.regions import angular_distance_deg

from .label import FrontEnd, session_front_end
from .session import CalibrationError, Session


def clip_windows(clip: np.ndarray, window: int, hop: int, min_level_db: float) -> np.ndarray:
    """Start samples of the clip's windows loud enough to hold the source."""
    if len(clip) < window:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(0, len(clip) - window + 1, hop)
    level = np.array([10 * np.log10(np.mean(clip[s:s + window].astype(np.float64) ** 2) + 1e-9) for s in starts])
    return starts[level >= level.max() + min_level_db]


def _sum_int16(parts: Sequence[np.ndarray], gains: Sequence[float]) -> np.ndarray:
    acc = np.zeros(parts[0].shape, np.float64)
    for p, g in zip(parts, gains):
        acc += p.astype(np.float64) * g
    return np.clip(np.round(acc), -32768, 32767).astype(np.int16)


def array_symmetries(array: MicArray, tol_m: float = 1e-3) -> list[tuple[float, bool, np.ndarray]]:
    """The array's in-plane symmetries (identity first): ``(turn_deg, mirrored, perm)`` such that a recording
    ``x`` of a source at azimuth ``az`` becomes, as ``x[..., perm]``, a recording of the same room turned (and
    mirrored across the x axis first when ``mirrored``) about the array: a source at ``turn_deg + (-az if
    mirrored else az)``. Distances between source and mics are kept exactly, so echoes come along too."""
    p = array.positions()
    a = np.arctan2(p[:, 1], p[:, 0])
    ref = int(np.argmax(np.hypot(p[:, 0], p[:, 1])))
    out: list[tuple[float, bool, np.ndarray]] = []
    seen: set[tuple[float, bool]] = set()
    for mirrored in (False, True):
        for j in range(len(p)):
            theta = float(a[j] + a[ref] if mirrored else a[j] - a[ref])
            # the mic that hears, before the turn, what mic i hears after it: T^-1 p_i, T = turn o mirror
            c, s = math.cos(-theta), math.sin(-theta)
            q = p.copy()
            q[:, 0], q[:, 1] = c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1]
            if mirrored:
                q[:, 1] = -q[:, 1]
            d = np.linalg.norm(q[:, None, :] - p[None, :, :], axis=2)
            perm = np.argmin(d, axis=1)
            key = (round(math.degrees(theta) % 360.0, 3) % 360.0, mirrored)
            if key in seen or len(set(perm.tolist())) != len(p) or np.any(d[np.arange(len(p)), perm] > tol_m):
                continue
            seen.add(key)
            out.append((key[0], mirrored, perm))
    out.sort(key=lambda t: (t[1], t[0]))
    return out


def turn_azimuth(az: np.ndarray | float, turn_deg: float, mirrored: bool) -> np.ndarray:
    """Azimuths after :func:`array_symmetries`' transform (NaN stays NaN)."""
    az = np.asarray(az, dtype=np.float64)
    return ((-az if mirrored else az) + turn_deg) % 360.0


def turn_windows(audio: np.ndarray, perm: np.ndarray, front_end: "FrontEnd | None", sample_rate_hz: int
                 ) -> np.ndarray:
    """Windows (..., n, M) int16 with their channels permuted by ``perm``; with the mic errors of
    ``front_end`` undone before and given back after, so each physical mic keeps its own error."""
    x = np.asarray(audio)
    if front_end is None:
        return np.ascontiguousarray(x[..., perm])
    n = x.shape[-2]
    spec = np.fft.rfft(x.astype(np.float64), axis=-2)
    resp = front_end.response(np.fft.rfftfreq(n, 1.0 / sample_rate_hz))
    resp[0] = np.abs(resp[0])
    if n % 2 == 0:
        resp[-1] = np.abs(resp[-1])
    y = np.fft.irfft((spec / resp)[..., perm] * resp, n=n, axis=-2)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def heldout_positions(az: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the positions held out whole: about ``fraction`` of them, every k-th in azimuth order
    (each between recorded ones); none with fewer than 4 positions."""
    n = len(az)
    n_out = int(round(fraction * n)) if n >= 4 else 0
    mask = np.zeros(n, bool)
    if n_out <= 0:
        return mask
    order = np.argsort(np.asarray(az) % 360.0, kind="stable")
    mask[order[(np.floor(np.arange(n_out) * n / n_out + n / (2 * n_out))).astype(int) % n]] = True
    return mask


def _empty(window: int, m: int) -> dict[str, np.ndarray]:
    return {"audio": np.zeros((0, window, m), np.int16), "azimuth_deg": np.zeros((0, 2)),
            "distance_m": np.zeros((0, 2)), "position": np.zeros((0, 2), np.int64), "kind": np.zeros(0, "<U7")}


def _singles(clips: dict[int, np.ndarray], starts: dict[int, np.ndarray], az: np.ndarray, dist: np.ndarray,
             per_pos: int, window: int, rng: np.random.Generator) -> dict[str, list]:
    out: dict[str, list] = {"audio": [], "azimuth_deg": [], "distance_m": [], "position": []}
    for i, clip in clips.items():
        st = starts[i]
        pick = st if len(st) <= per_pos else st[np.sort(rng.choice(len(st), per_pos, replace=False))]
        for t in pick:
            out["audio"].append(clip[t:t + window])
            out["azimuth_deg"].append([az[i], np.nan])
            out["distance_m"].append([dist[i], np.nan])
            out["position"].append([i, -1])
    return out


def _pack(parts: dict[str, list], kind: str, window: int, m: int) -> dict[str, np.ndarray]:
    if not parts["audio"]:
        return _empty(window, m)
    return {"audio": np.stack(parts["audio"]), "azimuth_deg": np.array(parts["azimuth_deg"], np.float64),
            "distance_m": np.array(parts["distance_m"], np.float64),
            "position": np.array(parts["position"], np.int64), "kind": np.array([kind] * len(parts["audio"]))}


def _cat(*sets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([s[k] for s in sets]) for k in sets[0]}


def _turned_mixtures(clips: dict[int, np.ndarray], starts: dict[int, np.ndarray], az: np.ndarray, dist: np.ndarray,
                     n: int, window: int, min_sep_deg: float, level_db: float, rng: np.random.Generator,
                     syms: list, front_end: "FrontEnd | None", fs: int, need: set[int] | None = None,
                     avoid: Callable[[float], bool] = lambda a: False) -> dict[str, list]:
    """``n`` sums of two windows of different positions, each turned by a random symmetry of ``syms``
    (identity only: as recorded), kept when ``min_sep_deg`` apart after turning; with ``need``, one of the
    two positions is always from ``need``."""
    out: dict[str, list] = {"audio": [], "azimuth_deg": [], "distance_m": [], "position": []}
    keys = [i for i in clips if len(starts[i])]
    first = [i for i in keys if need is None or i in need]
    if n <= 0 or len(keys) < 2 or not first:
        return out
    for _ in range(50 * n):
        if len(out["audio"]) >= n:
            break
        i = first[int(rng.integers(len(first)))]
        j = keys[int(rng.integers(len(keys)))]
        if i == j:
            continue
        ti, tj = (syms[int(rng.integers(len(syms)))] for _ in range(2))
        ai, aj = float(turn_azimuth(az[i], ti[0], ti[1])), float(turn_azimuth(az[j], tj[0], tj[1]))
        if angular_distance_deg(ai, aj) < min_sep_deg or avoid(ai) or avoid(aj):
            continue
        parts = []
        for k, (turn, mirrored, perm) in ((i, ti), (j, tj)):
            w = clips[k][int(rng.choice(starts[k])):][:window]
            parts.append(w if turn == 0.0 and not mirrored else turn_windows(w, perm, front_end, fs))
        g = 10.0 ** (rng.uniform(-level_db, level_db, 2) / 20.0)
        out["audio"].append(_sum_int16(parts, g))
        out["azimuth_deg"].append([ai, aj])
        out["distance_m"].append([dist[i], dist[j]])
        out["position"].append([i, j])
    return out


def _hybrid_sums(train: dict[str, np.ndarray], sim: dict[str, np.ndarray], n: int, min_sep_deg: float,
                 level_db: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` sums of a real single training window and a simulated one-source window ``min_sep_deg`` away from
    it, the simulated one scaled to the real one's RMS within +/- ``level_db`` (sound adds: exact labels)."""
    window, m = train["audio"].shape[1:]
    real = np.flatnonzero(train["kind"] == "single")
    one = np.flatnonzero(np.sum(np.isfinite(sim["azimuth_deg"]), axis=1) == 1)
    out: dict[str, list] = {"audio": [], "azimuth_deg": [], "distance_m": [], "position": []}
    if not len(real) or not len(one):
        return _empty(window, m)
    rms = lambda w: float(np.sqrt(np.mean(w.astype(np.float64) ** 2))) + 1e-9  # noqa: E731
    for _ in range(50 * n):
        if len(out["audio"]) >= n:
            break
        i, j = int(rng.choice(real)), int(rng.choice(one))
        a_real = float(train["azimuth_deg"][i, 0])
        k = int(np.flatnonzero(np.isfinite(sim["azimuth_deg"][j]))[0])
        a_sim = float(sim["azimuth_deg"][j, k])
        if angular_distance_deg(a_real, a_sim) < min_sep_deg:
            continue
        w_real, w_sim = train["audio"][i], sim["audio"][j]
        g = rms(w_real) / rms(w_sim) * 10.0 ** (rng.uniform(-level_db, level_db) / 20.0)
        out["audio"].append(_sum_int16([w_real, w_sim], [1.0, g]))
        out["azimuth_deg"].append([a_real, a_sim])
        out["distance_m"].append([float(train["distance_m"][i, 0]), float(sim["distance_m"][j, k])])
        out["position"].append([int(train["position"][i, 0]), -1])
    return _pack(out, "mixture", window, m)


def moving_windows(audio: np.ndarray, labels: dict[str, Any], window: int, sample_rate_hz: int, syms: list,
                   front_end: "FrontEnd | None", *, max_singles: int, copies: int, n_mixtures: int,
                   min_sep_deg: float, min_gap_s: float, level_db: float, rng: np.random.Generator,
                   ) -> dict[str, np.ndarray]:
    """Training windows from a recording self-labelled along a moving talker (:func:`label_moving`): the
    labelled windows, ``copies`` turned copies of each (``syms`` of :func:`array_symmetries`), and sums of two
    labelled windows ``min_gap_s`` apart in time, each turned at random, ``min_sep_deg`` apart after turning."""
    starts, az = np.asarray(labels["start"]), np.asarray(labels["azimuth_deg"], dtype=np.float64)
    m = audio.shape[1]
    if len(starts) > max_singles:
        keep = np.sort(rng.choice(len(starts), max_singles, replace=False))
        pick_s, pick_a = starts[keep], az[keep]
    else:
        pick_s, pick_a = starts, az
    parts: dict[str, list] = {"audio": [], "azimuth_deg": [], "distance_m": [], "position": []}
    for t, a in zip(pick_s, pick_a):
        w = audio[t:t + window]
        variants = [syms[0]] + [syms[int(k)] for k in rng.choice(np.arange(1, len(syms)), min(copies, len(syms) - 1),
                                                                  replace=False)] if len(syms) > 1 else [syms[0]]
        for turn, mirrored, perm in variants:
            parts["audio"].append(w if turn == 0.0 and not mirrored else turn_windows(w, perm, front_end,
                                                                                    sample_rate_hz))
            parts["azimuth_deg"].append([float(turn_azimuth(a, turn, mirrored)), np.nan])
            parts["distance_m"].append([np.nan, np.nan])
            parts["position"].append([-1, -1])
    single = _pack(parts, "single", window, m)
    mix: dict[str, list] = {"audio": [], "azimuth_deg": [], "distance_m": [], "position": []}
    for _ in range(50 * n_mixtures):
        if len(mix["audio"]) >= n_mixtures or len(starts) < 2:
            break
        i, j = rng.choice(len(starts), 2, replace=False)
        if abs(int(starts[i]) - int(starts[j])) < min_gap_s * sample_rate_hz:
            continue
        ti, tj = (syms[int(rng.integers(len(syms)))] for _ in range(2))
        ai, aj = float(turn_azimuth(az[i], ti[0], ti[1])), float(turn_azimuth(az[j], tj[0], tj[1]))
        if angular_distance_deg(ai, aj) < min_sep_deg:
            continue
        ws = [audio[starts[k]:starts[k] + window] for k in (i, j)]
        ws = [w if t[0] == 0.0 and not t[1] else turn_windows(w, t[2], front_end, sample_rate_hz)
              for w, t in zip(ws, (ti, tj))]
        mix["audio"].append(_sum_int16(ws, 10.0 ** (rng.uniform(-level_db, level_db, 2) / 20.0)))
        mix["azimuth_deg"].append([ai, aj])
        mix["distance_m"].append([np.nan, np.nan])
        mix["position"].append([-1, -1])
    return _cat(single, _pack(mix, "mixture", window, m))


def build_set(session: Session, *, sim_data: str | Path | None = None, bank: str | Path | None = None,
              workers: int = 1) -> dict[str, Any]:
    """Write ``set.npz``: real training windows (recorded and turned by the array's symmetries), validation
    windows of the positions held out whole (``val_*``), the recorded positions' held-out tails (``tune_*``)
    and simulated windows (``sim_*``)."""
    s = session.settings
    rng = np.random.default_rng(s.seed)
    positions = session.labelled()
    walks = session.walks()
    if len(positions) < 2 and not walks:
        raise CalibrationError(f"{len(positions)} labelled position(s) in {session.dir}; record at least 2 (better "
                               "8 or more, all around the array) or a walk (--moving), then run 'edge-msl "
                               "calibrate label'")
    window, m, fs = session.window_samples, session.array.n_mics, session.sample_rate_hz
    hop = max(1, int(round(s.window_hop_s * fs)))
    az = np.array([p["label"]["azimuth_deg"] for p in positions], dtype=np.float64)
    dist = np.array([np.nan if p["label"].get("distance_m") is None else p["label"]["distance_m"]
                     for p in positions], dtype=np.float64)
    out_mask = heldout_positions(az, s.validation_positions)
    train_clips, train_starts, tail_clips, tail_starts, val_clips, val_starts = {}, {}, {}, {}, {}, {}
    for i, pos in enumerate(positions):
        clip = session.load_clip(pos)
        if out_mask[i]:
            val_clips[i], val_starts[i] = clip, clip_windows(clip, window, hop, s.min_window_level_db)
            continue
        cut = int(len(clip) * (1.0 - s.holdout_fraction))
        train_clips[i], tail_clips[i] = clip[:cut], clip[cut:]
        train_starts[i] = clip_windows(clip[:cut], window, hop, s.min_window_level_db)
        tail_starts[i] = clip_windows(clip[cut:], window, hop, s.min_window_level_db)
    fe = session_front_end(session)
    syms = array_symmetries(session.array) if s.symmetry_copies > 0 else []
    syms = syms or [(0.0, False, np.arange(m))]
    held_az = az[out_mask]

    def avoid(a: float) -> bool:  # a turned direction on top of a held-out position would make it not fresh
        return bool(len(held_az)) and float(np.min(angular_distance_deg(held_az, a))) < s.heldout_clearance_deg

    # training: recorded singles, their turned copies, sums of turned windows of two positions
    single = _singles(train_clips, train_starts, az, dist, max(1, s.max_singles // max(1, len(train_clips))),
                      window, rng)
    train = [_pack(single, "single", window, m)]
    if len(syms) > 1:
        turned: dict[str, list] = {"audio": [], "azimuth_deg": [], "distance_m": [], "position": []}
        for w, (a, _), (d, _), (i, _) in zip(single["audio"], single["azimuth_deg"], single["distance_m"],
                                               single["position"]):
            ok = [k for k in range(1, len(syms)) if not avoid(float(turn_azimuth(a, syms[k][0], syms[k][1])))]
            for k in rng.choice(ok, min(s.symmetry_copies, len(ok)), replace=False) if ok else []:
                turn, mirrored, perm = syms[int(k)]
                turned["audio"].append(turn_windows(w, perm, fe, fs))
                turned["azimuth_deg"].append([float(turn_azimuth(a, turn, mirrored)), np.nan])
                turned["distance_m"].append([d, np.nan])
                turned["position"].append([i, -1])
        train.append(_pack(turned, "single", window, m))
    train.append(_pack(_turned_mixtures(train_clips, train_starts, az, dist, s.n_mixtures, window,
                                        s.min_mix_separation_deg, s.mix_level_db, rng, syms, fe, fs, avoid=avoid),
                       "mixture", window, m))
    ident = [(0.0, False, np.arange(m))]
    # the recorded positions' tails: threshold tuning and the report's "recorded positions" rows
    tail_single = _singles(tail_clips, tail_starts, az, dist, 10 ** 6, window, rng)
    tune = _cat(_pack(tail_single, "single", window, m),
                _pack(_turned_mixtures(tail_clips, tail_starts, az, dist, s.n_val_mixtures, window,
                                       s.min_mix_separation_deg, s.mix_level_db, rng, ident, None, fs),
                      "mixture", window, m))
    for walk in walks:
        # a talker who walked: windows labelled along the walk; its last part like a recorded position's tail
        clip, lb = session.load_clip(walk), walk["label"]
        cut = int(len(clip) * (1.0 - s.holdout_fraction))
        st, tr = np.asarray(lb["start"], np.int64), np.asarray(lb["track_deg"], np.float64)
        early, late = st + window <= cut, st >= cut
        share = max(1, s.max_singles // max(1, len(walks)))
        train.append(moving_windows(clip, {"start": st[early], "azimuth_deg": tr[early]}, window, fs, syms, fe,
                                    max_singles=share, copies=s.symmetry_copies, min_sep_deg=s.min_mix_separation_deg,
                                    n_mixtures=s.n_mixtures // max(1, len(walks) + bool(train_clips)), min_gap_s=2.0,
                                    level_db=s.mix_level_db, rng=rng))
        tune = _cat(tune, moving_windows(clip, {"start": st[late], "azimuth_deg": tr[late]}, window, fs, ident,
                                         None, max_singles=10 ** 6, copies=0, n_mixtures=s.n_val_mixtures // 2,
                                         min_sep_deg=s.min_mix_separation_deg, min_gap_s=2.0, level_db=s.mix_level_db,
                                         rng=rng))
    if out_mask.any():
        # validation: every window of the held-out positions, and sums of two of them (a recorded position's
        # direction in a sum, even from a tail never trained on, flatters the model: it learnt that direction);
        # with one held-out position, or none 30 deg apart, sums with a recorded position's tail
        pairs_ok = any(angular_distance_deg(az[i], az[j]) >= s.min_mix_separation_deg
                       for i in val_clips for j in val_clips if i < j)
        both = dict(val_clips) if pairs_ok else {**tail_clips, **val_clips}
        both_starts = dict(val_starts) if pairs_ok else {**tail_starts, **val_starts}
        val = _cat(_pack(_singles(val_clips, val_starts, az, dist, 10 ** 6, window, rng), "single", window, m),
                   _pack(_turned_mixtures(both, both_starts, az, dist, s.n_val_mixtures, window,
                                          s.min_mix_separation_deg, s.mix_level_db, rng, ident, None, fs,
                                          need=set(val_clips)), "mixture", window, m))
    else:
        val = tune
    out: dict[str, np.ndarray] = {}
    for split, data in (("train", _cat(*train)), ("val", val), ("tune", tune)):
        for k, v in data.items():
            out[f"{split}_{k}"] = v
    # simulated windows sound like the user's array only when its mics' errors are known; without them
    # (a narrow walk, fewer than 6 positions) half as many, so the ideal mics do not outweigh the real ones
    n_sim = s.n_simulated if (fe is not None and s.simulate_front_end) else s.n_simulated // 2
    sim = simulated_windows(session, n_sim, sim_data=sim_data, bank=bank, workers=workers)
    for k, v in sim.items():
        out[f"sim_{k}"] = v
    if s.n_hybrid_mixtures > 0:
        # its own generator: the rest of the set stays what it is without hybrid sums
        hyb = _hybrid_sums(_cat(*train), sim, s.n_hybrid_mixtures, s.min_mix_separation_deg, s.mix_level_db,
                           np.random.default_rng([s.seed, 17]))
        for k, v in hyb.items():
            out[f"train_{k}"] = np.concatenate([out[f"train_{k}"], v])
    out["position_names"] = np.array([p["name"] for p in positions])
    out["heldout_positions"] = out_mask
    tmp = session.dir / "set.tmp.npz"
    np.savez(tmp, **out)
    os.replace(tmp, session.dir / "set.npz")
    counts = {"real_single_train": int(np.sum(out["train_kind"] == "single")),
              "real_mixture_train": int(np.sum(out["train_kind"] == "mixture")),
              "simulated_train": int(len(out["sim_audio"])),
              "real_single_val": int(np.sum(out["val_kind"] == "single")),
              "real_mixture_val": int(np.sum(out["val_kind"] == "mixture")),
              "positions": len(positions), "positions_held_out": int(out_mask.sum())}
    session.data["counts"] = counts
    session.data["heldout_positions"] = [p["name"] for p, o in zip(positions, out_mask) if o]
    session.save()
    return counts


def simulated_windows(session: Session, n: int, *, sim_data: str | Path | None = None, bank: str | Path | None = None,
                      workers: int = 1) -> dict[str, np.ndarray]:
    """``n`` simulated windows for the session's array: drawn from a ``train_tf.simulate windows`` set
    (``sim_data``), or simulated now from a dry-signal bank (``bank``); none when ``n`` is 0."""
    from train_tf.simulate import SimSettings, load_windows, write_dataset

    window = session.window_samples
    empty = {"audio": np.zeros((0, window, session.array.n_mics), np.int16), "azimuth_deg": np.zeros((0, 4)),
             "distance_m": np.zeros((0, 4)), "level_db": np.zeros((0, 4))}
    if n <= 0:
        return empty
    if sim_data is None and bank is None:
        raise CalibrationError("simulated windows need --sim-data DIR (python -m train_tf.simulate windows) or "
                               "--bank FILE (python -m train_tf.signals build); or pass --simulated 0")
    if sim_data is None:
        name = session.array.name
        settings = SimSettings(array=name, sample_rate_hz=session.sample_rate_hz,
                               window_s=window / session.sample_rate_hz, n_sources=(1, 3),
                               min_source_separation_deg=20.0)
        try:
            settings.mic_array()
        except Exception:
            raise CalibrationError(f"array {name!r} is not built in, so it cannot be simulated here; simulate windows "
                                   "for it elsewhere and pass --sim-data DIR, or pass --simulated 0") from None
        sim_data = session.dir / "sim"
        write_dataset(sim_data, "windows", n, settings, seed=session.settings.seed + 1, bank_path=bank,
                      shard_size=max(1, min(50, n)), workers=workers, progress=False)
    data = load_windows(sim_data)
    if data["audio"].shape[1:] != (window, session.array.n_mics):
        raise CalibrationError(f"{sim_data}: windows of shape {data['audio'].shape[1:]}, the model needs "
                               f"({window}, {session.array.n_mics}); simulate them for this array and window")
    idx = np.sort(np.random.default_rng(session.settings.seed).permutation(len(data["audio"]))[:n])
    audio = data["audio"][idx]
    fe = session_front_end(session)
    if fe is not None and session.settings.simulate_front_end:
        # the simulator's mics are ideal; the user's are not, and the model should learn the user's
        audio = fe.apply(audio, session.sample_rate_hz)
    return {"audio": audio, "azimuth_deg": data["azimuth_deg"][idx],
            "distance_m": data["distance_m"][idx], "level_db": data["level_db"][idx]}
