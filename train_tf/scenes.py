"""Dynamic scenes for evaluation: talkers who take turns, pause, overlap and walk, rendered in
pyroomacoustics rooms, with per-instant truth (voice activity from the dry signal, position on the path).

    python -m train_tf.scenes --kind turns --n 24 --seed 9000 --bank data/dry/bank-test.npz --out data/scenes-turns-test
    python -m train_tf.scenes --kind walk  --n 24 --seed 9100 --bank data/dry/bank-test.npz --out data/scenes-walk-test

A moving talker is rendered as short overlapping blocks of its dry signal, each convolved with the
room impulse responses of the position the talker has at that block's centre (triangular
cross-fades that sum to one), so the direction of arrival changes smoothly. It must not be used
for training data (the windows of ``train_tf.simulate`` are that); scenes are for measuring the
temporal decode as users meet it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_msl.settings_check import Settings, SettingError, choice, integer, number, pair, setting, text

VAD_FRAME_S = 0.01
"""Voice activity is decided per frame of this length."""
VAD_RANGE_DB = 30.0
"""A frame is voiced when its RMS is within this many dB of the talker's loud frames (95th percentile)."""


def _num(lo: float, hi: float, **kw: Any):
    """A number in the interval, kept as given (a truth file's settings are what was asked for)."""
    return number(lo, hi, as_given=True, **kw)


_PROB = _num(0.0, 1.0, noun="a probability")
"""A probability, kept as given."""
_SPAN_S = pair(_num(0.0, 3600.0))
"""A range of seconds."""


@dataclass(frozen=True)
class SceneSettings(Settings):
    """What one family of dynamic scenes looks like (stored in every truth file's ``settings`` as JSON data:
    :meth:`to_dict`)."""

    kind: str = setting("turns", choice("turns", "walk"))
    """``turns``: still talkers taking turns; ``walk``: one talker walking while talking, maybe a
    second, still one taking turns."""
    array: str = setting("uca8-r10", text(what="an array name", empty=False))
    """Built-in array name."""
    duration_s: float = setting(12.0, _num(0.0, 3600.0, lo_open=True))
    """Length of a scene."""
    n_talkers: tuple[int, int] = setting((2, 3), pair(integer(1, 64)))
    """Inclusive range of talkers (walk scenes: 1 walker plus 0-1 still talker)."""
    turn_s: tuple[float, float] = setting((1.0, 3.5), _SPAN_S)
    """Range of one turn's length."""
    overlap_prob: float = setting(0.4, _PROB)
    """Probability that a turn starts before the previous one ended (overlap up to ``overlap_s``)."""
    overlap_s: tuple[float, float] = setting((0.1, 1.0), _SPAN_S)
    """Range of the overlap of two consecutive turns."""
    gap_s: tuple[float, float] = setting((0.3, 1.5), _SPAN_S)
    """Range of the silence between turns that do not overlap."""
    pause_s: tuple[float, float] = setting((0.08, 0.6), _SPAN_S)
    """Range of the pauses inside a turn (between phrases)."""
    speed_m_s: tuple[float, float] = setting((0.3, 1.5), pair(_num(0.0, 100.0, lo_open=True)))
    """Range of a walker's speed."""
    stand_prob: float = setting(0.25, _PROB)
    """Probability per segment of the walk that the walker stands still for it instead."""
    arc_prob: float = setting(0.5, _PROB)
    """Probability that a walker circles the array (constant distance, the fastest change of azimuth)."""
    distance_m: tuple[float, float] = setting((0.8, 3.0), pair(_num(0.0, 100.0)))
    """Range of horizontal distance from the array centre."""
    mouth_height_m: tuple[float, float] = setting((1.1, 1.8), pair(_num(0.0, 100.0)))
    """Range of a talker's mouth height above the floor."""
    min_separation_deg: float = setting(25.0, _num(0.0, 180.0))
    """Smallest azimuth difference between still talkers (walkers may pass anyone)."""
    rt60_s: tuple[float, float] = setting((0.2, 0.7), pair(_num(0.0, 10.0)))
    """Range of reverberation time."""
    snr_diffuse_db: tuple[float, float] = setting((10.0, 30.0), pair(_num(-100.0, 200.0)))
    """Range of the SNR of diffuse noise w.r.t. the talkers."""
    snr_sensor_db: tuple[float, float] = setting((25.0, 40.0), pair(_num(-100.0, 200.0)))
    """Range of the SNR of sensor noise."""
    level_db: tuple[float, float] = setting((-4.0, 4.0), pair(_num(-100.0, 100.0)))
    """Range of each talker's level relative to the others."""
    max_image_order: int = setting(12, integer(0, 100))
    """Image-source order (a stochastic tail continues the decay beyond it)."""
    step_m: float = setting(0.04, _num(0.0, 100.0, lo_open=True))
    """A walker's path is sampled every this many metres (and at least every 0.25 s)."""

    KEY = "scene.{}"
    TABLE = "scene"
    PLAIN_DATA = True


def _schedule(n_talkers: int, s: SceneSettings, rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    """Turns of ``n_talkers`` talkers in random order: overlapping or separated by a pause."""
    out: list[list[tuple[float, float]]] = [[] for _ in range(n_talkers)]
    t = float(rng.uniform(0.0, 0.6))
    last = -1
    while t < s.duration_s - 0.8:
        who = int(rng.choice([k for k in range(n_talkers) if k != last])) if n_talkers > 1 else 0
        end = min(s.duration_s, t + rng.uniform(*s.turn_s))
        out[who].append((round(t, 3), round(end, 3)))
        last = who
        if n_talkers > 1 and rng.uniform() < s.overlap_prob:
            t = max(t + 0.3, end - rng.uniform(*s.overlap_s))
        else:
            t = end + rng.uniform(*s.gap_s)
    return out


def speech_turn(bank, voice: str, n_samples: int, rng: np.random.Generator,
                pause_s: tuple[float, float] = (0.08, 0.2)) -> np.ndarray:
    """``n_samples`` of one voice: prompts of that voice joined by pauses drawn from ``pause_s``,
    unit RMS while talking, 10 ms fades (also the bundled example's, ``train_tf.make_example``)."""
    idx = [i for i in bank.indices("speech_real") if bank.names[i].startswith(voice + "/")]
    if not idx:
        raise ValueError(f"the bank has no real speech of voice {voice!r}")
    fs = bank.sample_rate_hz
    parts: list[np.ndarray] = []
    total = 0
    while total < n_samples:
        x = bank.signals[int(rng.choice(idx))].astype(np.float64)
        x = x / (np.sqrt(np.mean(x ** 2)) + 1e-12)
        parts.append(x)
        gap = np.zeros(int(rng.uniform(*pause_s) * fs))
        parts.append(gap)
        total += len(x) + len(gap)
    out = np.concatenate(parts)[:n_samples]
    fade = min(int(0.01 * fs), n_samples // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        out[:fade] *= ramp
        out[-fade:] *= ramp[::-1]
    return out


def voices(bank) -> list[str]:
    """Real-speech voices of the bank (``asterisk/en``, ``asterisk/es``, ...): one per talker."""
    return sorted({"/".join(bank.names[i].split("/")[:2]) for i in bank.indices("speech_real")})


def voice_activity(dry: np.ndarray, fs: int) -> list[tuple[float, float]]:
    """Intervals (s) where a dry signal is voiced: 10 ms frames within 30 dB of its loud frames."""
    hop = int(round(VAD_FRAME_S * fs))
    n = len(dry) // hop
    if n == 0:
        return []
    rms = np.sqrt(np.mean(dry[:n * hop].reshape(n, hop) ** 2, axis=1))
    loud = np.percentile(rms[rms > 0], 95) if np.any(rms > 0) else 0.0
    voiced = rms > max(loud * 10.0 ** (-VAD_RANGE_DB / 20.0), 1e-9)
    out: list[tuple[float, float]] = []
    start = None
    for i, v in enumerate(np.append(voiced, False)):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((round(start * VAD_FRAME_S, 3), round(i * VAD_FRAME_S, 3)))
            start = None
    return out


def _inside(plan, xy: np.ndarray, s: SceneSettings) -> bool:
    d = math.hypot(xy[0] - plan.centre[0], xy[1] - plan.centre[1])
    return (s.distance_m[0] <= d <= s.distance_m[1] and plan.lo[0] <= xy[0] <= plan.hi[0]
            and plan.lo[1] <= xy[1] <= plan.hi[1])


def _random_point(plan, s: SceneSettings, rng: np.random.Generator, avoid_deg: Sequence[float] = ()) -> np.ndarray:
    for _ in range(2000):
        d, a = rng.uniform(*s.distance_m), rng.uniform(0.0, 360.0)
        if any(abs((a - b + 180.0) % 360.0 - 180.0) < s.min_separation_deg for b in avoid_deg):
            continue
        xy = plan.centre[:2] + d * np.array([math.cos(math.radians(a + plan.yaw_deg)),
                                             math.sin(math.radians(a + plan.yaw_deg))])
        if _inside(plan, xy, s):
            return xy
    raise RuntimeError("no talker position fits this room")


def walk_path(plan, s: SceneSettings, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A walker's path: times (T,) and horizontal room points (T, 2), sampled every ``step_m``.

    Segments of 1-4 s: walk straight (or circle the array at constant distance) at a speed from
    ``speed_m_s``, or stand still; a step that would leave the allowed ring or the room turns the
    walker to a new heading."""
    xy = _random_point(plan, s, rng)
    t = 0.0
    times, points = [0.0], [xy.copy()]
    while t < s.duration_s:
        seg = float(rng.uniform(1.0, 4.0))
        if rng.uniform() < s.stand_prob:
            t = min(s.duration_s, t + seg)
            times.append(t)
            points.append(xy.copy())
            continue
        v = float(rng.uniform(*s.speed_m_s))
        arc = rng.uniform() < s.arc_prob
        sense = 1.0 if rng.uniform() < 0.5 else -1.0
        heading = rng.uniform(0.0, 2 * math.pi)
        dt = min(0.25, s.step_m / v)
        end = min(s.duration_s, t + seg)
        while t < end - 1e-9:
            step = min(dt, end - t)
            if arc:
                r = xy - plan.centre[:2]
                heading = math.atan2(r[1], r[0]) + sense * math.pi / 2
            nxt = xy + v * step * np.array([math.cos(heading), math.sin(heading)])
            if not _inside(plan, nxt, s):
                for _ in range(50):
                    heading = rng.uniform(0.0, 2 * math.pi)
                    nxt = xy + v * step * np.array([math.cos(heading), math.sin(heading)])
                    if _inside(plan, nxt, s):
                        break
                else:
                    nxt = xy
                arc, sense = False, -sense
            xy = nxt
            t += step
            times.append(t)
            points.append(xy.copy())
    return np.array(times), np.array(points)


def _moving_convolve(dry: np.ndarray, times_s: np.ndarray, rirs: np.ndarray, fs: int, n: int) -> np.ndarray:
    """Time-varying convolution: triangular cross-fades between the path's sample times, each
    block convolved with the RIRs of its position (the fades sum to one)."""
    from scipy.signal import fftconvolve

    n_mics, rir_len = rirs.shape[1], rirs.shape[2]
    out = np.zeros((n_mics, n + rir_len))
    centres = np.round(np.asarray(times_s) * fs).astype(int)
    for j, c in enumerate(centres):
        lo = centres[j - 1] if j > 0 else c
        hi = centres[j + 1] if j + 1 < len(centres) else n
        if j + 1 == len(centres):
            hi = max(hi, n)
        a, b = max(0, lo), min(n, hi)
        if b <= a:
            continue
        idx = np.arange(a, b)
        w = np.ones(b - a)
        if c > lo:
            w = np.where(idx < c, (idx - lo) / (c - lo), w)
        if hi > c and j + 1 < len(centres):
            w = np.where(idx >= c, (hi - idx) / (hi - c), w)
        seg = dry[a:b] * w
        if not np.any(seg):
            continue
        out[:, a:b + rir_len - 1] += fftconvolve(seg[None, :], rirs[j].astype(np.float64), axes=1)
    return out[:, :n]


def render(bank, s: SceneSettings, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Render one scene: int16 audio (n, mics) and its truth (``edge-msl-truth`` version 2)."""
    from scipy.signal import fftconvolve

    from train_tf.simulate import SimSettings, diffuse_noise, plan_room, room_rirs, to_int16

    rng = np.random.default_rng(seed)
    sim = SimSettings(array=s.array, anechoic_prob=0.0, rt60_s=s.rt60_s, max_image_order=s.max_image_order,
                      source_distance_m=(s.distance_m[0], s.distance_m[1] + 1.0))
    fs = sim.sample_rate_hz
    n = int(round(s.duration_s * fs))
    for _ in range(50):
        plan = plan_room(sim, rng)
        # the array's ring of allowed talker positions must fit the room
        if min(plan.centre[0] - plan.lo[0], plan.hi[0] - plan.centre[0], plan.centre[1] - plan.lo[1],
               plan.hi[1] - plan.centre[1]) > s.distance_m[0] + 0.3:
            break
    if s.kind == "turns":
        n_talkers = int(rng.integers(s.n_talkers[0], s.n_talkers[1] + 1))
        schedule = _schedule(n_talkers, s, rng)
        walkers = [False] * n_talkers
    else:
        n_talkers = 1 + int(rng.integers(0, 2))
        schedule = [[(round(float(rng.uniform(0.0, 0.5)), 3), s.duration_s)]]
        if n_talkers == 2:
            schedule.append([turn for turn in _schedule(2, replace(s, overlap_prob=1.0), rng)[1]])
        walkers = [True] + [False] * (n_talkers - 1)
    all_voices = voices(bank)
    talker_voices = [all_voices[int(k)] for k in rng.permutation(len(all_voices))[:n_talkers]]
    while len(talker_voices) < n_talkers:
        talker_voices.append(all_voices[len(talker_voices) % len(all_voices)])
    # paths: (times, room xyz) per talker; still talkers one point, kept apart from each other
    paths: list[tuple[np.ndarray, np.ndarray]] = []
    still_az: list[float] = []
    for k in range(n_talkers):
        z = float(np.clip(rng.uniform(*s.mouth_height_m), plan.lo[2], plan.hi[2]))
        if walkers[k]:
            times, xy = walk_path(plan, s, rng)
        else:
            times, xy = np.zeros(1), _random_point(plan, s, rng, still_az)[None, :]
            still_az.append(float(plan.to_array(np.array([[xy[0, 0], xy[0, 1], z]]))[0][0]))
        paths.append((times, np.column_stack([xy, np.full(len(xy), z)])))
    all_points = np.concatenate([p for _, p in paths])
    rirs = room_rirs(plan, sim, all_points, rng)
    rel_db = rng.uniform(*s.level_db, size=n_talkers)
    clean = np.zeros((len(plan.mic_xyz), n))
    talking = np.zeros(n, dtype=bool)
    sources = []
    first = 0
    for k in range(n_talkers):
        times, pts = paths[k]
        dry = np.zeros(n)
        for a, b in schedule[k]:
            i0, i1 = int(round(a * fs)), min(n, int(round(b * fs)))
            if i1 > i0:
                dry[i0:i1] = speech_turn(bank, talker_voices[k], i1 - i0, rng, s.pause_s)
                talking[i0:i1] = True
        dry *= 10.0 ** (rel_db[k] / 20.0)
        h = rirs.rirs[first:first + len(pts)]
        if len(pts) == 1:
            clean += fftconvolve(dry[None, :], h[0].astype(np.float64), axes=1)[:, :n]
        else:
            clean += _moving_convolve(dry, times, h, fs, n)
        az = rirs.azimuth_deg[first:first + len(pts)]
        el = rirs.elevation_deg[first:first + len(pts)]
        dist = rirs.distance_m[first:first + len(pts)]
        first += len(pts)
        src: dict[str, Any] = {"name": f"talker {k + 1}", "voice": talker_voices[k],
                               "azimuth_deg": round(float(az[0]), 2), "elevation_deg": round(float(el[0]), 1),
                               "distance_m": round(float(dist[0]), 2), "level_db": round(float(rel_db[k]), 1),
                               "active_s": [[a, b] for a, b in schedule[k]],
                               "voice_s": [[a, b] for a, b in voice_activity(dry, fs)]}
        if len(pts) > 1:
            src["path"] = {"t_s": [round(float(t), 3) for t in times],
                           "azimuth_deg": [round(float(v), 2) for v in az],
                           "distance_m": [round(float(v), 3) for v in dist]}
            steps = np.hypot(*np.diff(pts[:, :2], axis=0).T)
            src["mean_speed_m_s"] = round(float(steps.sum() / max(times[-1] - times[0], 1e-9)), 3)
        sources.append(src)
    clean *= plan.mic_gain[:, None]
    p_ref = float(np.mean(clean[:, talking] ** 2)) if talking.any() else 1.0
    snr_d = float(rng.uniform(*s.snr_diffuse_db))
    snr_s = float(rng.uniform(*s.snr_sensor_db))
    diffuse = diffuse_noise("pink", plan.mic_xyz, n, bank, rng, fs).astype(np.float64) * plan.mic_gain[:, None]
    diffuse *= math.sqrt(p_ref / (np.mean(diffuse ** 2) + 1e-20) * 10.0 ** (-snr_d / 10.0))
    sensor = rng.standard_normal(clean.shape) * math.sqrt(p_ref * 10.0 ** (-snr_s / 10.0))
    level_dbfs = float(rng.uniform(-38.0, -24.0))
    pcm = to_int16(((clean + diffuse + sensor) * 10.0 ** (level_dbfs / 20.0) / math.sqrt(p_ref)).T)
    truth = {
        "format": "edge-msl-truth", "version": 2, "kind": s.kind, "array": s.array, "sample_rate_hz": fs,
        "duration_s": round(n / fs, 3), "seed": seed, "bank": str(bank.meta.get("content_sha256", ""))[:16],
        "room_dim_m": [round(float(v), 2) for v in plan.dim], "rt60_s": round(rirs.rt60_s, 3),
        "snr_diffuse_db": round(snr_d, 1), "snr_sensor_db": round(snr_s, 1), "level_dbfs": round(level_dbfs, 1),
        "settings": s.to_dict(),
        "sources": sources,
    }
    return pcm, truth


def write_set(out: str | Path, bank_path: str, s: SceneSettings, n: int, seed: int) -> list[Path]:
    """Render ``n`` scenes (seeds ``seed`` .. ``seed + n - 1``) as ``scene-XXX.wav`` + ``.truth.json``."""
    from edge_msl.audio_io import write_wav
    from train_tf.signals import DryBank

    bank = DryBank.load(bank_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(n):
        stem = out / f"scene-{i:03d}"
        if stem.with_suffix(".truth.json").exists():
            written.append(stem)
            continue
        pcm, truth = render(bank, s, seed + i)
        truth["wav"] = stem.with_suffix(".wav").name
        write_wav(stem.with_suffix(".wav"), pcm, int(truth["sample_rate_hz"]))
        stem.with_suffix(".truth.json").write_text(json.dumps(truth, indent=1) + "\n")
        written.append(stem)
        print(f"{stem.name}: {len(truth['sources'])} talkers, RT60 {truth['rt60_s']:.2f} s", file=sys.stderr)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("turns", "walk"), default="turns")
    parser.add_argument("--n", type=int, default=24, help="number of scenes")
    parser.add_argument("--seed", type=int, default=9000, help="seed of the first scene")
    parser.add_argument("--bank", required=True, help="dry-signal bank (the test split for test sets)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--duration-s", type=float, default=12.0)
    parser.add_argument("--array", default="uca8-r10")
    args = parser.parse_args(argv)
    try:
        s = SceneSettings(kind=args.kind, duration_s=args.duration_s, array=args.array)
    except SettingError as exc:
        raise SystemExit(f"bad option: {exc}") from None
    write_set(args.out, args.bank, s, args.n, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
