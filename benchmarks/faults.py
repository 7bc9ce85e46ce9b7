"""Fault injection for the daemon and its tools (issue 30): broker stop/kill/freeze while publishing at QoS
0/1/2 (messages lost, duplicated, reordered), a capture device that is missing, goes away or freezes (real ALSA
plugins: ``pulse`` with no server, a ``file`` PCM whose input FIFO's writer dies or stops), full disks (a small
tmpfs) under stdout, the model state directory and a calibration session, seeded config and WAV fuzzing
(tracebacks counted) and a soak (RSS growth, CPU per audio second). Prints one table on stdout.

    .venv/bin/python -m benchmarks.faults                       # everything, a 10-minute soak
    .venv/bin/python -m benchmarks.faults --only broker,fuzz --soak-minutes 1

Needs mosquitto, pyalsaaudio, paho-mqtt; the full-disk cases need root (mount -t tmpfs) and are skipped
without it. Each row says what was measured, the target from issue 30, and whether it was met.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks.daemon_bench import proc_cpu_s, proc_rss_mb
from edge_msl.audio_io import open_audio
from tests.daemon_helpers import Broker, Subscriber, alsa_env, wait_for, write_asoundrc

REPO = Path(__file__).resolve().parents[1]

EXAMPLE = REPO / "edge_msl" / "examples" / "uca8-r10-3talkers.wav"
RATE = 16000
ROWS: list[tuple[str, str, str, str, str]] = []
"""(area, case, measured, target, met)"""


def row(area: str, case: str, measured: str, target: str, met: bool | None) -> None:
    ROWS.append((area, case, measured, target, {True: "yes", False: "NO", None: "-"}[met]))
    print(f"  {area:8s} {case:44s} {measured:44s} {ROWS[-1][4]}", file=sys.stderr, flush=True)


def example_audio() -> np.ndarray:
    with open_audio(EXAMPLE) as r:
        return np.concatenate(list(r.blocks(RATE)))


def edge_msl(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge_msl", *args], **kw)


def stop_within(proc: subprocess.Popen, timeout_s: float = 10.0) -> tuple[int | None, float]:
    """SIGTERM, then how long it took to exit (killed after ``timeout_s``)."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None, timeout_s
    return proc.returncode, time.monotonic() - t0


# ------------------------------------------------------------------------------------------- broker


def broker_case(tmp: Path, qos: int, fault: str, outage_s: float, rate_hz: float = 20.0) -> None:
    from edge_msl.config import load_config
    from edge_msl.sinks import MqttSink

    # autosave 1 s: the subscriber's persistent session survives even a SIGKILL of the broker
    b = Broker(tmp / f"broker-{qos}-{fault}", extra_conf="autosave_interval 1\n").start()
    node = f"f{qos}{fault}"
    sub = Subscriber(b.port, [f"edge-msl/{node}/sources"], client_id=f"faults-sub-{node}")
    time.sleep(1.2)  # the subscription is saved
    cfg = load_config(None, [("mqtt.host", "127.0.0.1"), ("mqtt.port", b.port), ("mqtt.node_id", node),
                             ("mqtt.qos", qos), ("mqtt.reconnect_max_delay_s", 1), ("mqtt.keepalive_s", 5)])
    sink = MqttSink(cfg.mqtt)
    sink.start()
    wait_for(lambda: sink.connected, 10)
    sent = 0

    def publish_for(seconds: float) -> None:
        nonlocal sent
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sink.publish({"schema": "edge-msl/sources-v2", "t_s": sent, "sources": []})
            sent += 1
            time.sleep(1.0 / rate_hz)

    publish_for(2.0)
    if fault == "stop":
        b.stop()
        publish_for(outage_s)
        b.start()
    elif fault == "kill":
        b.proc.kill()
        b.proc.wait()
        publish_for(outage_s)
        b.start()
    else:  # freeze: the TCP connection stays, nothing answers until the keepalive gives up
        b.proc.send_signal(signal.SIGSTOP)
        publish_for(outage_s)
        b.proc.send_signal(signal.SIGCONT)
    publish_for(2.0)
    wait_for(lambda: sink.connected and sink.queued == 0, 30)
    wait_for(lambda: len({p["t_s"] for p in sub.payloads("/sources")}) >= sent, 10)
    sink.close()
    sub.close()
    b.stop()
    got = [p["t_s"] for p in sub.payloads("/sources")]
    first = list(dict.fromkeys(got))
    lost = sent - len(set(got)) - sink.dropped
    dup = len(got) - len(first)
    reordered = sum(1 for a, c in zip(first, first[1:]) if c < a)
    target_lost = "0 lost" if qos else "measured (QoS 0 may lose in flight)"
    row("broker", f"QoS {qos}, broker {fault} {outage_s:g} s", f"{sent} sent, {lost} lost, {dup} dup, "
        f"{reordered} reordered", target_lost + ", 0 reordered", (lost == 0 or qos == 0) and reordered == 0)


def section_broker(tmp: Path, args: argparse.Namespace) -> None:
    for qos in (0, 1, 2):
        for fault in ("stop", "kill", "freeze"):
            broker_case(tmp, qos, fault, 12.0 if fault == "freeze" else args.outage_s)


# ------------------------------------------------------------------------------------------- device


def section_device(tmp: Path, args: argparse.Namespace) -> None:
    audio = example_audio()
    fifo = tmp / "device.fifo"
    os.mkfifo(fifo)
    rc = write_asoundrc(tmp, {"faultfifo": fifo})
    rc.write_text(rc.read_text() + 'pcm.faultpulse {\n  type pulse\n}\n')
    env = alsa_env(tmp)
    env["PULSE_SERVER"] = f"unix:{tmp}/no-pulse-server"

    # 1. missing: the pulse plugin with no server; the daemon waits, and stops at once on SIGTERM
    err = open(tmp / "missing.log", "w+")
    proc = edge_msl("run", "--device", "faultpulse", "--log-level", "info", env=env, stdout=subprocess.DEVNULL,
                    stderr=err)
    waited = wait_for(lambda: "unavailable" in Path(err.name).read_text() or proc.poll() is not None, 60)
    time.sleep(2.0)
    alive = proc.poll() is None
    code, took = stop_within(proc)
    row("device", "missing (pulse plugin, no server)", f"waits: {alive and waited}, SIGTERM {took:.2f} s, "
        f"exit {code}", "waits, stops <= 2 s, exit 0", alive and waited and took <= 2.0 and code == 0)

    # 2. the FIFO's writer stops (a frozen server): the ALSA read blocks
    def feeder() -> subprocess.Popen:
        code = ("import sys, time; d = open(sys.argv[1], 'rb').read(); o = open(sys.argv[2], 'wb', 0)\n"
                "while True:\n  o.write(d); time.sleep(0)\n")
        raw = tmp / "device.raw"
        audio.astype("<i2").tofile(raw)
        return subprocess.Popen([sys.executable, "-c", code, str(raw), str(fifo)], stderr=subprocess.DEVNULL)

    for what in ("freezes", "dies"):
        feed = feeder()
        out_path = tmp / f"fifo-{what}.jsonl"
        err = open(tmp / f"fifo-{what}.log", "w+")
        with open(out_path, "w") as out:
            proc = edge_msl("run", "--device", "faultfifo", "--pace-realtime", "--log-level", "info", env=env,
                            stdout=out, stderr=err)
        ok = wait_for(lambda: out_path.stat().st_size > 2000 or proc.poll() is not None, 60)
        if what == "freezes":
            feed.send_signal(signal.SIGSTOP)
        else:
            feed.kill()
        time.sleep(2.0)
        alive = proc.poll() is None
        code, took = stop_within(proc)
        if what == "freezes":
            feed.send_signal(signal.SIGCONT)
        feed.kill()
        feed.wait()
        tb = "Traceback" in Path(err.name).read_text()
        row("device", f"file PCM, input FIFO writer {what} mid-stream", f"streamed: {ok}, alive: {alive}, SIGTERM "
            f"{took:.2f} s, exit {code}{', TRACEBACK' if tb else ''}", "alive, stops <= 2 s, exit 0, no traceback",
            ok and alive and took <= 2.0 and code == 0 and not tb)


# ------------------------------------------------------------------------------------------- full disk


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)


def section_disk(tmp: Path, args: argparse.Namespace) -> None:
    audio = example_audio()
    raw = tmp / "disk.raw"
    audio.astype("<i2").tofile(raw)
    write_asoundrc(tmp, {"faultdisk": raw})
    env = alsa_env(tmp)

    # stdout on a full disk, MQTT beside it
    with tmpfs(tmp / "full-stdout", "64k") as mnt:
        if mnt is None:
            row("disk", "full disk cases", "skipped (mount -t tmpfs needs root)", "-", None)
            return
        with open(mnt / "filler", "wb", buffering=0) as f:  # the disk is full before the daemon starts
            with contextlib.suppress(OSError):
                while True:
                    f.write(bytes(4096))
        b = Broker(tmp / "broker-disk").start()
        sub = Subscriber(b.port, ["edge-msl/disk/sources"], client_id="faults-disk")
        err = open(tmp / "stdout-full.log", "w+")
        with open(mnt / "out.jsonl", "w") as out:
            proc = edge_msl("run", "--device", "faultdisk", "--pace-realtime", "--set", "mqtt.host=127.0.0.1",
                            "--set", f"mqtt.port={b.port}", "--set", "mqtt.node_id=disk", env=env, stdout=out,
                            stderr=err)
        wait_for(lambda: len(sub.messages()) >= 10 or proc.poll() is not None, 60)
        n0 = len(sub.messages())
        time.sleep(3.0)
        n1 = len(sub.messages())
        alive = proc.poll() is None
        code, took = stop_within(proc)
        log = Path(err.name).read_text()
        sub.close()
        b.stop()
        errors = log.count("cannot write JSON lines")
        row("disk", "stdout on a full tmpfs, MQTT beside it", f"alive: {alive}, MQTT +{n1 - n0} in 3 s, {errors} "
            f"error line(s), exit {code}", "alive, MQTT goes on, 1 line, exit 0",
            alive and n1 > n0 and errors == 1 and code == 0 and "Traceback" not in log)

    # the state directory: calibrate install onto a full disk keeps a pair the daemon loads
    try:
        from train_tf import calibrate as cal
    except ImportError as exc:
        row("disk", "state / calibration", f"skipped ({exc})", "-", None)
        return
    from edge_msl.arrays import get_array
    from edge_msl.runtime import default_model_path, load_model

    packaged = default_model_path("uca8-r10")
    other = tmp / "other" / "uca8-r10.tflite"
    other.parent.mkdir(exist_ok=True)
    other.write_bytes(packaged.read_bytes())
    side = json.loads(packaged.with_suffix(".json").read_text())
    side["decode"]["threshold"] = 0.77
    other.with_suffix(".json").write_text(json.dumps(side))
    array = get_array("uca8-r10")
    with tmpfs(tmp / "full-state", "1600k") as mnt:
        cal.install(packaged, mnt / "state", "uca8-r10")
        session = cal.Session.create(tmp / "session", array, RATE, 8000)
        (session.dir / "validation.json").write_text(json.dumps({"better": True, "why": "", "after": str(other)}))
        r = subprocess.run([sys.executable, "-m", "edge_msl", "calibrate", "install", "--session", str(session.dir),
                            "--state-dir", str(mnt / "state")], capture_output=True, text=True, timeout=120)
        try:
            load_model(mnt / "state" / "models" / "uca8-r10.tflite", array=array)
            loads = True
        except Exception:  # noqa: BLE001
            loads = False
        left = [p.name for p in (mnt / "state" / "models").iterdir() if p.name.startswith(".")]
        row("disk", "calibrate install on a full state disk", f"exit {r.returncode}, {len(r.stderr.splitlines())} "
            f"line(s), pair loads: {loads}, leftovers {len(left)}", "exit 1, 1 line, loads, 0 leftovers",
            r.returncode == 1 and loads and not left and "Traceback" not in r.stderr)
    with tmpfs(tmp / "full-session", "600k") as mnt:
        session = cal.Session.create(mnt / "s", array, RATE, 8000)
        outcome = "stored"
        try:
            session.add_clip(audio[: RATE * 4], 0.0, 1.0)  # 512 kB + header: does not fit
        except cal.CalibrationError:
            outcome = "CalibrationError"
        except Exception as exc:  # noqa: BLE001
            outcome = f"TRACEBACK {type(exc).__name__}"
        left = [p.name for p in (session.dir / "clips").iterdir()] + [
            p.name for p in session.dir.iterdir() if p.name.endswith(".tmp")]
        intact = len(cal.Session(session.dir).positions) == 0
        row("disk", "calibrate record on a full disk", f"{outcome}, leftovers {len(left)}, session intact: {intact}",
            "CalibrationError, 0 leftovers, intact", outcome == "CalibrationError" and not left and intact)


# ------------------------------------------------------------------------------------------- fuzzing


def config_mutants(n: int, seed: int):
    rng = random.Random(seed)
    base = (REPO / "systemd" / "config.toml").read_text()
    keys = ["model", "hop_s", "threshold", "array", "num_threads", "track", "[device] name", "[device] rate_hz",
            "[device] period_frames", "[mqtt] host", "[mqtt] port", "[mqtt] node_id", "[mqtt] qos", "[mqtt] pasword",
            "[decode] gate_deg", "[decode] miss_windows", "[array] name", "[array] positions_m", "[array] channel_map",
            "[logging] level", "[stdout] format", "[stdout] enabled"]
    def nested_array() -> str:
        d = rng.choice([5, 50, 400, 3000])
        return "[" * d + "]" * d

    def nested_table() -> str:
        d = rng.choice([9, 40, 900])
        return "{a = " * d + "1" + "}" * d

    values = [nested_array, lambda: "9" * rng.choice([4301, 9000]), nested_table, lambda: "[[1], {a = 2}]",
              lambda: "{name = [1, 2]}", lambda: "1e999", lambda: "-inf", lambda: "nan", lambda: '"\\u0000"',
              lambda: str(rng.randint(-2**70, 2**70)), lambda: repr(rng.random() * 10 ** rng.randint(-30, 30)),
              lambda: '"' + "x" * rng.choice([10, 5000]) + '"', lambda: "[1, 2, 3]", lambda: "true",
              lambda: "1979-05-27T07:32:00Z"]
    for _ in range(n):
        v = rng.choice(values)()
        key = rng.choice(keys)
        section, _, name = key.rpartition(" ")
        text = f"{name} = {v}\n" + base if not section else base.replace(section + "\n", "") + \
            f"\n{section}\n{name} = {v}\n"
        if rng.random() < 0.3:
            b = bytearray(text.encode())
            for _ in range(rng.randint(1, 10)):
                b[rng.randrange(len(b))] = rng.choice(b"[]{}=\"'9.\n#\\")
            text = b.decode(errors="replace")
        yield text


def section_fuzz(tmp: Path, args: argparse.Namespace) -> None:
    from edge_msl.config import ConfigError, load_config, parse_assignment

    p = tmp / "fuzz.toml"
    tracebacks, kinds = 0, {}
    t0 = time.monotonic()
    for text in config_mutants(args.fuzz_n, args.seed):
        p.write_text(text)
        try:
            load_config(p, env={})
        except ConfigError as exc:
            if "\n" in str(exc):
                tracebacks += 1
                kinds["multi-line ConfigError"] = kinds.get("multi-line ConfigError", 0) + 1
        except BaseException as exc:  # noqa: BLE001
            tracebacks += 1
            kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
    for value in ["1" * 5000, "[" * 3000, "{a=" * 2000 + "1" + "}" * 2000, "nan", "[[]]"]:
        try:
            load_config(None, [parse_assignment(f"mqtt.port={value}")], env={})
        except ConfigError:
            pass
        except BaseException as exc:  # noqa: BLE001
            tracebacks += 1
            kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
    row("fuzz", f"{args.fuzz_n} seeded hostile configs (+5 --set)", f"{tracebacks} tracebacks {kinds or ''} "
        f"({time.monotonic() - t0:.1f} s)", "0 tracebacks", tracebacks == 0)

    wav_fuzz(tmp, args)


def wav_mutants(n: int, seed: int):
    rng = random.Random(seed)
    x = example_audio()[: RATE]
    for _ in range(n):
        kind = rng.choice(["pcm16", "f32", "f64", "pcm24", "u8"])
        frames = rng.choice([0, 1, 100, 8000, RATE])
        ch = rng.choice([8, 8, 8, 1, 2, 7, 9])
        if kind == "pcm16":
            data, tag, bits = np.resize(x, (frames, ch)).astype("<i2").tobytes(), 1, 16
        elif kind == "u8":
            data, tag, bits = (np.resize(x, (frames, ch)) // 256 + 128).astype("u1").tobytes(), 1, 8
        elif kind == "pcm24":
            y = np.resize(x, (frames, ch)).astype("<i4") << 8
            data, tag, bits = y.view("u1").reshape(-1, 4)[:, 1:].tobytes(), 1, 24
        else:
            y = (np.resize(x, (frames, ch)) / 32768.0).astype("<f4" if kind == "f32" else "<f8")
            if frames and rng.random() < 0.4:
                y.flat[rng.randrange(y.size)] = rng.choice([np.nan, np.inf, -np.inf, 1e30])
            data, tag, bits = y.tobytes(), 3, 32 if kind == "f32" else 64
        rate = rng.choice([RATE, RATE, 44100, 48000, 8000, 0, 1, 4_294_960_000, 384_001, 7999])
        align = ch * bits // 8
        fmt = struct.pack("<HHIIHH", tag, ch, rate, (rate * align) & 0xFFFFFFFF, align, bits)
        size = rng.choice([len(data), len(data), 0, 0xFFFFFFFF, 0x80000000, len(data) + 1000, max(0, len(data) - 7)])
        blob = bytearray(b"RIFF" + struct.pack("<I", (36 + len(data)) & 0xFFFFFFFF) + b"WAVEfmt "
                         + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", size) + data)
        r = rng.random()
        if r < 0.3:
            for _ in range(rng.randint(1, 6)):
                blob[rng.randrange(min(len(blob), 48))] = rng.randrange(256)
        elif r < 0.4:
            blob = blob[: rng.randrange(len(blob) + 1)]
        elif r < 0.45:
            blob[12:12] = b"LIST" + struct.pack("<I", rng.choice([4, 0xFFFFFFF0])) + b"abcd"
        yield bytes(blob)


def wav_fuzz(tmp: Path, args: argparse.Namespace) -> None:
    """Each mutant through what ``edge-msl locate`` does: open, check against the model, push every block; an
    exception other than the two one-line error types, or a numpy warning, counts as a traceback."""
    from edge_msl.audio_io import AudioFileError
    from edge_msl.pipeline import Pipeline, PipelineError
    from edge_msl.runtime import load_model

    import logging

    logging.getLogger("edge_msl.audio_io").setLevel(logging.ERROR)  # "truncated recording" warnings by design
    model = load_model()
    p = tmp / "fuzz.wav"
    tracebacks, kinds, t0 = 0, {}, time.monotonic()
    for blob in wav_mutants(args.fuzz_n, args.seed):
        p.write_bytes(blob)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np_err = np.seterr(all="raise")
            try:
                with open_audio(p) as reader:
                    info = reader.info
                    pipe = Pipeline(model, input_rate_hz=info.sample_rate_hz)
                    pipe.check_input(info.n_channels, info.sample_rate_hz, what=str(p))
                    for block in reader.blocks(max(1, int(0.1 * info.sample_rate_hz))):
                        pipe.push(block)
            except (AudioFileError, PipelineError) as exc:
                if "\n" in str(exc):
                    tracebacks += 1
            except BaseException as exc:  # noqa: BLE001
                tracebacks += 1
                kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
            finally:
                np.seterr(**np_err)
    row("fuzz", f"{args.fuzz_n} seeded hostile WAVs through locate", f"{tracebacks} tracebacks {kinds or ''} "
        f"({time.monotonic() - t0:.1f} s)", "0 tracebacks", tracebacks == 0)


# ------------------------------------------------------------------------------------------- soak


def section_soak(tmp: Path, args: argparse.Namespace) -> None:
    seconds = args.soak_minutes * 60.0
    audio = example_audio()
    raw = tmp / "soak.raw"
    np.resize(audio, (int((seconds + 30) * RATE), audio.shape[1])).astype("<i2").tofile(raw)
    write_asoundrc(tmp, {"faultsoak": raw})
    b = Broker(tmp / "broker-soak").start()
    sub = Subscriber(b.port, ["edge-msl/soak/sources"], client_id="faults-soak")
    proc = edge_msl("run", "--device", "faultsoak", "--pace-realtime", "--no-stdout", "--set", "mqtt.host=127.0.0.1",
                    "--set", f"mqtt.port={b.port}", "--set", "mqtt.node_id=soak", env=alsa_env(tmp),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(sub.messages()) >= 10 or proc.poll() is not None, 120)
        time.sleep(5.0)  # start-up and first allocations past
        rss0, cpu0, n0, t0 = proc_rss_mb(proc.pid), proc_cpu_s(proc.pid), len(sub.messages()), time.monotonic()
        while time.monotonic() - t0 < seconds and proc.poll() is None:
            time.sleep(1.0)
        rss1, cpu1, n1 = proc_rss_mb(proc.pid), proc_cpu_s(proc.pid), len(sub.messages())
        audio_s = time.monotonic() - t0
    finally:
        code, _ = stop_within(proc)
        sub.close()
        b.stop()
    growth = rss1 - rss0
    row("soak", f"{args.soak_minutes:g} min real time to MQTT", f"RSS {rss0:.1f} -> {rss1:.1f} MB ({growth:+.2f}), "
        f"{(cpu1 - cpu0) / audio_s:.3f} CPU s/audio s, {n1 - n0} msgs", "RSS growth <= 2 MB, exit 0",
        growth <= 2.0 and code == 0)


SECTIONS = {"broker": section_broker, "device": section_device, "disk": section_disk, "fuzz": section_fuzz,
            "soak": section_soak}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {list(SECTIONS)}")
    ap.add_argument("--fuzz-n", type=int, default=1200, help="configs and WAVs to fuzz, each (default 1200)")
    ap.add_argument("--soak-minutes", type=float, default=10.0)
    ap.add_argument("--outage-s", type=float, default=6.0, help="broker stop/kill duration")
    ap.add_argument("--seed", type=int, default=30)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edge-msl-faults-"))
    for name in args.only.split(","):
        print(f"{name}:", file=sys.stderr, flush=True)
        (tmp / name).mkdir()
        SECTIONS[name.strip()](tmp / name, args)
    print("| area | case | measured | target | met |\n|---|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")
    return 0 if all(r[4] != "NO" for r in ROWS) else 1


if __name__ == "__main__":
    sys.exit(main())
