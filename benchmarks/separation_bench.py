"""Per-talker audio (edge_msl.separate) on held-out simulated scenes: SI-SDR improvement of each talker's
stream over the reference microphone, CPU per audio second per talker, and ODAS's SSS output as the peer.

Scenes: pyroomacoustics shoebox rooms (RT60 0.2-0.6 s), 2-3 talkers of the test bank's real voices
(data/dry/bank-test.npz; validation: --bank data/dry/bank-train.npz --seed 43000) talking over each other,
0.8-3 m from the array and 0-60 deg above or below its plane (an array low on a table, or high on a wall),
pink diffuse noise at 20-30 dB SNR, sensor noise.
The whole edge-msl pipeline runs on each scene (int8 model, temporal decode, elevation, separation);
each talker's stream is the track nearest to it in azimuth per 0.1 s (within 20 deg, else silence),
the same rule for ODAS's tracks. Reference: the talker's direct sound and first 50 ms of echoes at mic 0.

    .venv/bin/python -m benchmarks.separation_bench                       # edge-msl only
    .venv/bin/python -m benchmarks.separation_bench --odaslive /tmp/odas-build/bin/odaslive
    .venv/bin/python -m benchmarks.separation_bench --beams-mask --no-postfilter   # with the variants
    # validation scenes (choose settings here, never on the held-out ones): training-bank voices, seeds 43000+
    .venv/bin/python -m benchmarks.separation_bench --bank data/dry/bank-train.npz --seed 43000 --scenes 8 \
        --variant mwf:beamformer=mwf --variant "nfft 1024:nfft=1024"
    # a board (its packaged model and geometry)
    .venv/bin/python -m benchmarks.separation_bench --array respeaker-4mic
    # the default dereverberates the spatial masks' frames and takes the late reverberation WPE predicts out of
    # the post-filter's gains (docs/experiments/separation-wpe.md); without the one or both:
    .venv/bin/python -m benchmarks.separation_bench --variant "no late reverb:reverb_weight=0" \
        --variant "no dereverberation:dereverb=false"
    # the default's 1,024-sample frames (weights and classes at every second bin, 2 WPE taps) against the former
    # 512-sample default (docs/experiments/separation-round-4.md):
    .venv/bin/python -m benchmarks.separation_bench --variant "512:nfft=512,wpe_taps=3,coarse_bins=1"
    # how much the decode's directions cost: the separator steered at the talkers' true directions
    .venv/bin/python -m benchmarks.separation_bench --bank data/dry/bank-train.npz --seed 43000 --scenes 8 --true-directions

Prints markdown tables on stdout; --json writes every scene's numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

from edge_msl.arrays import get_array  # noqa: E402
from train_tf.separation_scenes import DIRECT_S, EARLY_S, FS, Scene, render_scene  # noqa: E402,F401

BANK = REPO / "data" / "dry" / "bank-test.npz"
MATCH_DEG = 20.0
HOLD_S = 2.0
BLOCK_S = 0.1


def si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    """Scale-invariant SDR in dB (both zero-mean)."""
    est = est - est.mean()
    ref = ref - ref.mean()
    a = np.dot(est, ref) / (np.dot(ref, ref) + 1e-20)
    t = a * ref
    return float(10 * np.log10(np.sum(t ** 2) / (np.sum((est - t) ** 2) + 1e-20) + 1e-20))


def best_lag(est: np.ndarray, ref: np.ndarray, max_lag: int) -> int:
    """Integer lag (samples, est later than ref) maximizing the correlation within +-max_lag."""
    n = len(ref)
    c = np.fft.irfft(np.fft.rfft(est, 2 * n) * np.conj(np.fft.rfft(ref, 2 * n)), 2 * n)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    return int(lags[np.argmax(c[lags])])


def talker_streams(tracks: dict[int, np.ndarray], directions: list[tuple[float, dict[int, float]]],
                   azimuth_deg: np.ndarray, n: int, starts: dict[int, float] | None = None) -> np.ndarray:
    """(K, n): per talker and 0.1 s block, the audio of the track nearest its azimuth (within MATCH_DEG)
    at that time; ``tracks`` are full-length streams, ``directions`` (t_s, {id: azimuth}) sorted by time.
    ``starts`` (id: its stream's first sample, s): a track's back-filled audio before its first message
    counts too, at its first direction (what its WAV holds)."""
    out = np.zeros((len(azimuth_deg), n))
    block = int(BLOCK_S * FS)
    if starts:
        first: dict[int, tuple[float, float]] = {}
        for t, dirs in directions:
            for k, az in dirs.items():
                first.setdefault(k, (t, az))
        t_first = directions[0][0] if directions else 0.0
        directions = [(t, {**{k: az for k, (t1, az) in first.items()
                              if min(starts.get(k, t1), t_first) <= t < t1}, **dirs}) for t, dirs in directions]
    # a track not listed for a moment (a pause) still has its stream: keep its last direction for HOLD_S
    held, seen, last = [], {}, {}
    for t, dirs in directions:
        for k, az in dirs.items():
            seen[k], last[k] = t, az
        held.append((t, {k: last[k] for k in last if t - seen[k] <= HOLD_S}))
    directions = held
    times = np.array([t for t, _ in directions]) if directions else np.zeros(0)
    for b0 in range(0, n, block):
        t = (b0 + block / 2) / FS
        i = int(np.searchsorted(times, t)) - 1
        if i < 0:
            early = times[0] - t < 0.6 or (starts and min(starts.values()) <= t)
            i = 0 if len(times) and early else -1  # a track's back-filled start
        if i < 0:
            continue
        dirs = directions[i][1]
        for k, az in enumerate(azimuth_deg):
            best = min(dirs.items(), key=lambda kv: abs((kv[1] - az + 180) % 360 - 180), default=None)
            if best is not None and abs((best[1] - az + 180) % 360 - 180) <= MATCH_DEG and best[0] in tracks:
                out[k, b0:b0 + block] = tracks[best[0]][b0:b0 + block]
    return out


class _Collect:
    """A writer that keeps every track's chunks in memory, placed on the stream's timeline."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.tracks: dict[int, np.ndarray] = {}
        self.starts: dict[int, float] = {}

    def write(self, chunks) -> None:
        for c in chunks:
            self.starts.setdefault(c.id, c.start_s)
            if not len(c.samples):
                continue
            buf = self.tracks.setdefault(c.id, np.zeros(self.n))
            i0 = int(round(c.t_s * FS))
            seg = c.samples[:max(0, self.n - i0)]
            buf[i0:i0 + len(seg)] = seg[:len(buf) - i0]

    def close(self) -> None:
        pass


def with_true_directions(msg: dict, scene: Scene) -> dict:
    """A pipeline message whose listed sources point at the scene's talker nearest each in azimuth, at that
    talker's true azimuth, elevation and horizontal distance (what the separator would get from a perfect decode)."""
    az = np.asarray(scene.azimuth_deg, dtype=float)
    sources = []
    for src in msg.get("sources", ()):
        src = dict(src)
        if src.get("id") is not None:
            k = int(np.argmin(np.abs((az - src["azimuth_deg"] + 180.0) % 360.0 - 180.0)))
            src["azimuth_deg"], src["elevation_deg"] = float(az[k]), float(scene.elevation_deg[k])
            src["distance_m"] = float(scene.distance_m[k] * np.cos(np.radians(scene.elevation_deg[k])))
        sources.append(src)
    return {**msg, "sources": sources}


def run_edge(scene: Scene, model, settings=None, true_directions: bool = False
             ) -> tuple[dict[int, np.ndarray], list, float, float, dict]:
    """The pipeline with separation over a scene: streams per track id, (t_s, {id: az}), CPU seconds of
    the separation, mean number of tracks separated, each stream's start (s). With ``true_directions`` the
    separator steers each track at its talker's true direction (:func:`with_true_directions`); the tracks,
    their ids and times stay the decode's."""
    from edge_msl.pipeline import Pipeline
    from edge_msl.separate import SeparatedAudio, Separator

    pipe = Pipeline(model)
    arr = get_array(scene.array)
    sep = Separator(arr.positions(), FS, settings)
    col = _Collect(len(scene.audio))
    listener = SeparatedAudio(sep, col)
    cpu = [0.0]
    n_tracks = []

    class Timed:
        def push(self, x, events):
            if true_directions:
                events = [(i, with_true_directions(m, scene)) for i, m in events]
            t0 = time.process_time()
            listener.push(x, events)
            cpu[0] += time.process_time() - t0
            n_tracks.append(len(sep._tracks))

        def reset(self):
            listener.reset()

    pipe.audio_listener = Timed()
    frames = np.zeros((len(scene.audio), arr.n_channels), dtype=np.float32)
    frames[:, list(arr.channel_map)] = scene.audio
    directions = []
    hop = int(0.1 * FS)
    for i in range(0, len(frames), hop):
        for m in pipe.push(frames[i:i + hop]):
            directions.append((m["t_s"], {s["id"]: s["azimuth_deg"] for s in m["sources"]}))
    t0 = time.process_time()
    listener.close()
    cpu[0] += time.process_time() - t0
    return col.tracks, directions, cpu[0], float(np.mean(n_tracks)) if n_tracks else 0.0, col.starts


def score(streams: np.ndarray, scene: Scene, max_lag: int = 0) -> list[dict]:
    """Per talker: SI-SDR of the mixture at mic 0 and of its stream against its early image (and
    ``*_direct`` against its direct sound); ``max_lag`` > 0 first aligns the stream (best integer lag)."""
    rows = []
    for k in range(len(scene.early)):
        ref = scene.early[k]
        lag = best_lag(streams[k], ref, max_lag) if max_lag else 0
        est = np.roll(streams[k], -lag)
        row = {"talker": k, "azimuth_deg": round(float(scene.azimuth_deg[k]), 1),
               "elevation_deg": round(float(scene.elevation_deg[k]), 1), "lag": lag}
        for suffix, r in (("", ref), ("_direct", scene.direct[k])):
            mix = si_sdr(scene.audio[:, 0], r)
            out = si_sdr(est, r) if np.any(est) else float("-inf")
            row.update({f"mix_db{suffix}": round(mix, 2), f"out_db{suffix}": round(out, 2),
                        f"improvement_db{suffix}": round(out - mix, 2)})
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- ODAS

def run_odas(scene: Scene, odaslive: str, work: Path) -> tuple[dict[str, np.ndarray], list]:
    """odaslive on the scene (SSL + SST + SSS, delay-and-sum + its post-filter): per slot streams
    ('separated', 'postfiltered': (4, n)) and (t_s, {slot: azimuth}) from its tracked JSON."""
    from benchmarks.odas_cpu import ODAS_HOP, odas_config

    arr = get_array(scene.array)
    raw = work / f"in-{scene.seed}.raw"
    frames = np.zeros((len(scene.audio), arr.n_channels))
    frames[:, list(arr.channel_map)] = scene.audio
    np.clip(np.round(frames * 32767), -32768, 32767).astype("<i2").tofile(raw)
    tracked, sep, pf = (work / f"{k}-{scene.seed}" for k in ("tracked.json", "sep.raw", "pf.raw"))
    cfg = odas_config(arr, arr.n_channels, raw, tracked, "respeaker_6_mic_array")
    cfg = cfg.replace('separated: { fS = 16000; hopSize = 128; nBits = 16; interface: { type = "blackhole"; }; };',
                      f'separated: {{ fS = 16000; hopSize = 128; nBits = 16; interface: {{ type = "file"; path = "{sep}"; }}; }};')
    # post-filter gains 1 instead of 10 (module and sink): at 10 the output clips, which is not ODAS's separation
    cfg = cfg.replace("gain_pf = 10.0;", "gain_pf = 1.0;")
    cfg = cfg.replace('gain = 10.0;\n                    interface: { type = "blackhole"; }; };',
                      f'gain = 1.0;\n                    interface: {{ type = "file"; path = "{pf}"; }}; }};')
    assert str(sep) in cfg and str(pf) in cfg, "ODAS config template changed; update run_odas"
    (work / "odas.cfg").write_text(cfg)
    p = subprocess.run([odaslive, "-s", "-c", str(work / "odas.cfg")], cwd=work, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"odaslive exited with {p.returncode}: {(p.stderr.strip().splitlines() or [''])[-1]}")
    n = len(scene.audio)
    streams = {}
    for key, path in (("separated", sep), ("postfiltered", pf)):
        y = np.fromfile(path, dtype="<i2").astype(np.float64) / 32768.0
        y = y[:len(y) // 4 * 4].reshape(-1, 4).T
        z = np.zeros((4, n))
        z[:, :min(n, y.shape[1])] = y[:, :n]
        streams[key] = z
    directions = []
    text = tracked.read_text()
    for k, frame in enumerate(json.loads("[" + text.replace("}\n{", "},\n{") + "]")):
        t = (k + 1) * ODAS_HOP / FS
        directions.append((t, {slot: float(np.degrees(np.arctan2(s["y"], s["x"])) % 360)
                               for slot, s in enumerate(frame["src"]) if s["id"] != 0}))
    return streams, directions


# --------------------------------------------------------------------------- main

DECIMALS = [1]


def _fmt(v: float) -> str:
    return f"{v:+.{DECIMALS[0]}f}" if np.isfinite(v) else "n/a"


def main(argv: list[str] | None = None) -> int:
    from edge_msl.runtime import load_model
    from edge_msl.separate import SeparateSettings
    from train_tf.signals import DryBank

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=6, help="scenes per row (default 6)")
    ap.add_argument("--seed", type=int, default=33000,
                    help="first scene seed (held-out: 33000+; validation: 43000+ with --bank data/dry/bank-train.npz)")
    ap.add_argument("--bank", default=str(BANK.relative_to(REPO)),
                    help="voice bank, relative to the repository (default: the held-out test bank)")
    ap.add_argument("--duration-s", type=float, default=6.0)
    ap.add_argument("--array", default="uca8-r10",
                    help="array (its packaged model and geometry; default uca8-r10, the issue's targets)")
    ap.add_argument("--odaslive", default=None, help="path of an odaslive binary: add ODAS's SSS output as the peer")
    ap.add_argument("--no-postfilter", action="store_true", help="also score edge-msl without its post-filter")
    ap.add_argument("--beams-mask", action="store_true",
                    help="also score edge-msl with the former post-filter mask (mask = 'beams')")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
                    help="also score edge-msl with these SeparateSettings (repeatable), e.g. mwf:beamformer=mwf")
    ap.add_argument("--true-directions", action="store_true",
                    help="also score edge-msl steered at each talker's true direction (the decode's tracks and times)")
    ap.add_argument("--decimals", type=int, default=1, help="decimals of the tables' dB figures")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    extra = {}
    for v in args.variant:
        name, _, kv = v.partition(":")
        cfg = {}
        for item in filter(None, kv.split(",")):
            key, _, val = item.partition("=")
            try:
                cfg[key.strip()] = json.loads(val)  # numbers, true/false
            except ValueError:
                cfg[key.strip()] = val.strip()
        extra[f"edge-msl, {name.strip()}"] = SeparateSettings.from_dict(cfg)
    bank_path = Path(args.bank) if Path(args.bank).is_absolute() else REPO / args.bank
    bank = DryBank.load(bank_path)
    model = load_model(None, array=get_array(args.array))
    rows_spec = [(2, (0.2, 0.4)), (2, (0.4, 0.6)), (3, (0.2, 0.4)), (3, (0.4, 0.6))]
    results = []
    table = []
    DECIMALS[0] = args.decimals
    cpu_s = audio_talker_s = 0.0
    cpu_by: dict[str, list[float]] = {}
    for r, (k, rt) in enumerate(rows_spec):
        acc: dict[str, list[float]] = {}
        for i in range(args.scenes):
            seed = args.seed + 100 * r + i
            scene = render_scene(bank, args.array, seed, k, rt, args.duration_s)
            n = len(scene.audio)
            variants = {"edge-msl": None}
            if args.no_postfilter:
                variants["edge-msl, no post-filter"] = SeparateSettings(postfilter=False)
            if args.beams_mask:
                variants["edge-msl, beams mask"] = SeparateSettings(mask="beams")
            variants.update(extra)
            oracles = {"edge-msl, true directions"} if args.true_directions else set()
            for name in oracles:
                variants[name] = None  # the default settings, steered at the true directions
            for name, st in variants.items():
                tracks, dirs, cpu, n_tr, starts = run_edge(scene, model, st, name in oracles)
                if name == "edge-msl":
                    cpu_s += cpu
                    audio_talker_s += n / FS * max(n_tr, 1e-9)
                c = cpu_by.setdefault(name, [0.0, 0.0])
                c[0] += cpu
                c[1] += n / FS * max(n_tr, 1e-9)
                sc = score(talker_streams(tracks, dirs, scene.azimuth_deg, n, starts), scene)
                acc.setdefault(name, []).extend(s["improvement_db"] for s in sc)
                acc.setdefault(name + " [direct]", []).extend(s["improvement_db_direct"] for s in sc)
                results.append({"seed": seed, "talkers": k, "rt60_s": round(scene.rt60_s, 3), "system": name,
                                "rows": sc})
            if args.odaslive:
                with tempfile.TemporaryDirectory() as tmp:
                    streams, dirs = run_odas(scene, args.odaslive, Path(tmp))
                for key, y in streams.items():
                    tr = {slot: y[slot] for slot in range(4)}
                    sc = score(talker_streams(tr, dirs, scene.azimuth_deg, n), scene, max_lag=1024)
                    acc.setdefault(f"ODAS {key}", []).extend(s["improvement_db"] for s in sc)
                    acc.setdefault(f"ODAS {key} [direct]", []).extend(s["improvement_db_direct"] for s in sc)
                    results.append({"seed": seed, "talkers": k, "rt60_s": round(scene.rt60_s, 3),
                                    "system": f"ODAS {key}", "rows": sc})
            print(f"scene {seed}: {k} talkers, RT60 {scene.rt60_s:.2f} s: " + ", ".join(
                f"{name} {np.mean(v[-k:]):+.1f} dB" for name, v in acc.items()), file=sys.stderr)
        table.append((k, rt, {name: v for name, v in acc.items()}))
    for title, direct in (("reference: direct sound + 50 ms of echoes at mic 0", False),
                          ("reference: direct sound alone at mic 0", True)):
        names = [n for n in table[0][2] if n.endswith(" [direct]") == direct]
        print(f"\nSI-SDR improvement over mic 0, dB, mean (median) over talkers; {title}, "
              f"{args.scenes} scenes per row\n")
        print("| talkers | RT60 (s) | " + " | ".join(n.replace(" [direct]", "") for n in names) + " |")
        print("|---|---|" + "---|" * len(names))
        for k, rt, acc in table:
            print(f"| {k} | {rt[0]}-{rt[1]} | " + " | ".join(
                f"{_fmt(float(np.mean(acc[n])))} ({_fmt(float(np.median(acc[n])))})" for n in names) + " |")
    print(f"\nSeparation CPU: {cpu_s / max(audio_talker_s, 1e-9):.4f} s per audio second per talker "
          f"(one thread; {cpu_s:.2f} s over {audio_talker_s:.1f} talker-seconds)")
    if len(cpu_by) > 1:
        print("  per variant: " + "; ".join(f"{name} {c / max(a, 1e-9):.4f}" for name, (c, a) in cpu_by.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"scenes": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
