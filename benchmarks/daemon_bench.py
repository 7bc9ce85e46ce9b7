"""Benchmark of the daemon (``edge-msl run``): N minutes of 8-channel audio streamed in real time from an
ALSA file-plugin PCM through the daemon to a real mosquitto broker, with the broker stopped for 30 s
in the middle. Reports messages lost (broker up, and across the outage within the queue bound), RSS
growth, and CPU per audio second against ``edge-msl locate`` on the same audio, on the same core:
locate fed the audio in real time through stdin (same wake-ups as the daemon), and locate reading
the file at full speed (a batch run keeps caches warm, so it is cheaper per audio second); a second
daemon without outputs runs alongside to separate the cost of the MQTT path.

    .venv/bin/python -m benchmarks.daemon_bench --minutes 10

Needs mosquitto, pyalsaaudio, paho-mqtt and taskset. The audio is the bundled 3-talker example,
tiled with the array rotated by 45 degrees on each repetition. Prints a table on stdout.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from edge_msl.audio_io import open_audio, write_wav
from tests.daemon_helpers import Broker, Subscriber, alsa_env, wait_for, write_asoundrc

REPO = Path(__file__).resolve().parents[1]

EXAMPLE = REPO / "edge_msl" / "examples" / "uca8-r10-3talkers.wav"
RATE = 16000
HOP_S = 0.1
TARGETS = {"lost_up": 0, "rss_growth_mb": 2.0, "cpu_ratio": 1.10}
WARMUP_S = 5.0
"""CPU is counted from this long after READY (start-up, first MQTT connect and locate's start-up excluded)."""
_CLK = os.sysconf("SC_CLK_TCK")


def make_audio(seconds: float) -> np.ndarray:
    """The example repeated to ``seconds``; repetition k has its channels rotated by k (45 k degrees)."""
    with open_audio(EXAMPLE) as r:
        x = np.concatenate(list(r.blocks(RATE)))
    n = int(seconds * RATE)
    reps = [np.roll(x, k % 8, axis=1) for k in range(n // len(x) + 1)]
    return np.concatenate(reps)[:n]


def proc_cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK


def proc_rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024.0 if m else float("nan")


def pinned(core: int | None) -> list[str]:
    return ["taskset", "-c", str(core)] if core is not None and shutil.which("taskset") else []


class Notify:
    """A $NOTIFY_SOCKET that remembers when READY=1 arrived."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.path = str(path)
        self.ready_at: float | None = None
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            except OSError:
                return
            if "READY=1" in data.split("\n") and self.ready_at is None:
                self.ready_at = time.monotonic()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def locate_cpu(wav: Path, core: int | None) -> float:
    """CPU seconds of ``edge-msl locate wav`` (stdout to /dev/null)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([*pinned(core), sys.executable, "-m", "edge_msl", "locate", str(wav)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


class PacedLocate:
    """``edge-msl locate -`` fed the WAV on stdin at the audio clock, in 50 ms blocks like the capture:
    the offline pipeline under the same real-time wake-ups as the daemon (a fair CPU reference)."""

    def __init__(self, wav: Path, core: int | None) -> None:
        self.data = wav.read_bytes()
        self.proc = subprocess.Popen([*pinned(core), sys.executable, "-m", "edge_msl", "locate", "-"],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._stop = False
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        header, block = 44, 800 * 8 * 2
        try:
            self.proc.stdin.write(self.data[:header])
            t0 = time.monotonic()
            for k, i in enumerate(range(header, len(self.data), block)):
                if self._stop:
                    break
                self.proc.stdin.write(self.data[i:i + block])
                self.proc.stdin.flush()
                ahead = t0 + (k + 1) * 0.05 - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass

    def close(self) -> None:
        self._stop = True
        self.thread.join(5)
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(30)


def run(args: argparse.Namespace) -> dict:
    duration_s = args.minutes * 60.0
    outage_at_s = max(20.0, 0.4 * duration_s)
    if outage_at_s + args.outage_s + 20.0 > duration_s:
        raise SystemExit(f"--minutes {args.minutes} is too short for a {args.outage_s:g} s outage "
                         f"(needs {(outage_at_s + args.outage_s + 20) / 60:.1f} min)")
    tmp = Path(tempfile.mkdtemp(prefix="edge-msl-daemon-bench-"))
    try:
        audio = make_audio(duration_s + 5.0)
        raw = tmp / "stream.raw"
        audio.astype("<i2").tofile(raw)
        wav = tmp / "stream.wav"
        write_wav(wav, audio[: int(duration_s * RATE)], RATE)
        write_wav(tmp / "short.wav", audio[: RATE], RATE)
        write_asoundrc(tmp, {"benchfile": raw, "benchfile2": raw})

        broker = Broker(tmp / "broker").start()
        sub = Subscriber(broker.port, ["edge-msl/bench/sources"], client_id="bench-subscriber")
        notify = Notify(tmp / "notify.sock")
        env = alsa_env(tmp)
        env["NOTIFY_SOCKET"] = notify.path
        cmd = [*pinned(args.core), sys.executable, "-m", "edge_msl", "run", "--device", "benchfile",
               "--pace-realtime", "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port), "--node-id", "bench",
               "--no-stdout", "--set", f"mqtt.queue_max_messages={args.queue_bound}",
               "--set", "logging.status_interval_s=0", "--log-level", "info"]
        errlog = open(tmp / "daemon.log", "w+")
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=errlog)
        print(f"daemon pid {proc.pid}: {duration_s:.0f} s of audio in real time, broker outage "
              f"{args.outage_s:g} s at {outage_at_s:.0f} s", file=sys.stderr)
        if not wait_for(lambda: notify.ready_at is not None or proc.poll() is not None, 120):
            raise SystemExit("the daemon did not get ready in 120 s")
        if proc.poll() is not None:
            errlog.seek(0)
            raise SystemExit(f"the daemon exited {proc.returncode}: {errlog.read()[-2000:]}")
        t0 = notify.ready_at
        paced = PacedLocate(wav, args.core)
        # the same daemon without any output, for the cost of the MQTT path alone
        bare = subprocess.Popen([*cmd[: cmd.index("--device") + 1], "benchfile2", "--pace-realtime", "--no-stdout",
                                 "--set", "logging.status_interval_s=0"], env=alsa_env(tmp),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0 = cpu0_locate = None
        rss: list[tuple[float, float]] = []
        outage = None
        n_before_outage = 0
        while True:
            now = time.monotonic() - t0
            rss.append((now, proc_rss_mb(proc.pid)))
            if cpu0 is None and now >= WARMUP_S:
                # both processes are past their start-up: CPU from here on is per audio second
                cpu0, cpu0_locate, t_cpu0 = proc_cpu_s(proc.pid), proc_cpu_s(paced.proc.pid), now
                cpu0_bare = proc_cpu_s(bare.pid)
            if outage is None and now >= outage_at_s:
                n_before_outage = len(sub.messages())
                broker.stop()
                outage = [now, None]
                print(f"{now:6.1f} s: broker stopped", file=sys.stderr)
            if outage is not None and outage[1] is None and now >= outage[0] + args.outage_s:
                broker.start()
                outage[1] = time.monotonic() - t0
                print(f"{outage[1]:6.1f} s: broker restarted", file=sys.stderr)
            # stop with the last full window of the recording (beyond it the file plugin repeats stale data)
            if now >= duration_s - 0.05:
                break
            time.sleep(min(1.0, max(0.0, duration_s - 0.05 - now)))
        cpu1, cpu1_locate, cpu1_bare = proc_cpu_s(proc.pid), proc_cpu_s(paced.proc.pid), proc_cpu_s(bare.pid)
        t1 = time.monotonic() - t0
        paced.close()
        bare.send_signal(signal.SIGTERM)
        bare.wait(60)
        rss_end = proc_rss_mb(proc.pid)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
        time.sleep(2.0)  # let the last QoS 1 deliveries reach the subscriber
        errlog.seek(0)
        log = errlog.read()
        sub.close()
        broker.stop()
        notify.close()

        m = re.search(r"stopped: .*?, (\d+) messages", log)
        produced = int(m.group(1)) if m else -1
        m = re.search(r"MQTT closed: (\d+) messages delivered, (\d+) dropped by the queue bound, (\d+) resent, "
                      r"(\d+) undelivered", log)
        delivered, dropped, resent, undelivered = map(int, m.groups()) if m else (-1, -1, -1, -1)
        m = re.search(r"back after ([0-9.]+) s: sending (\d+) queued messages", log)
        back_after_s, queued_at_reconnect = (float(m.group(1)), int(m.group(2))) if m else (float("nan"), -1)

        got = [round(p["t_s"], 3) for p in sub.payloads("/sources")]
        unique = set(got)
        expected = [round(0.5 + HOP_S * k, 3) for k in range(produced)]
        missing = [t for t in expected if t not in unique]
        # stream time of the outage: from the broker stop until the queued messages were sent again
        o0, o1 = outage[0], outage[1] + (back_after_s - args.outage_s if back_after_s == back_after_s else 0)
        lost_in_outage = [t for t in missing if o0 - 1.0 <= t <= o1 + 1.0]

        warm = [r for t, r in rss if t >= min(30.0, 0.1 * duration_s)]
        locate_full = locate_cpu(wav, args.core)
        locate_short = locate_cpu(tmp / "short.wav", args.core)
        locate_steady = (locate_full - locate_short) / (duration_s - 1.0)
        daemon_steady = (cpu1 - cpu0) / (t1 - t_cpu0)
        locate_paced = (cpu1_locate - cpu0_locate) / (t1 - t_cpu0)
        bare_steady = (cpu1_bare - cpu0_bare) / (t1 - t_cpu0)
        return {
            "rc": rc, "duration_s": t1, "produced": produced, "received": len(got), "duplicates": len(got) - len(unique),
            "lost_up": len(missing) - len(lost_in_outage), "lost_outage": len(lost_in_outage),
            "n_before_outage": n_before_outage, "outage_s": args.outage_s, "back_after_s": back_after_s,
            "queued_at_reconnect": queued_at_reconnect, "queue_bound": args.queue_bound, "dropped": dropped,
            "delivered": delivered, "resent": resent, "undelivered": undelivered,
            "rss_warm_mb": warm[0] if warm else float("nan"), "rss_end_mb": rss_end,
            "rss_peak_mb": max(r for _, r in rss), "rss_growth_mb": rss_end - (warm[0] if warm else rss_end),
            "daemon_cpu_per_audio_s": daemon_steady, "locate_cpu_per_audio_s": locate_steady,
            "locate_cpu_full_s": locate_full, "locate_cpu_startup_s": locate_short,
            "locate_paced_cpu_per_audio_s": locate_paced, "bare_cpu_per_audio_s": bare_steady,
            "cpu_ratio_bare": bare_steady / locate_paced if locate_paced > 0 else float("nan"),
            "cpu_ratio": daemon_steady / locate_paced if locate_paced > 0 else float("nan"),
            "cpu_ratio_batch": daemon_steady / locate_steady if locate_steady > 0 else float("nan"),
        }
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="audio streamed (default 10)")
    p.add_argument("--outage-s", type=float, default=30.0, help="broker outage in the middle (default 30)")
    p.add_argument("--queue-bound", type=int, default=6000, help="[mqtt] queue_max_messages (default 6000)")
    p.add_argument("--core", type=int, default=0, help="CPU core for the daemon and locate (taskset; -1: none)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (audio, logs)")
    args = p.parse_args(argv)
    if args.core < 0:
        args.core = None
    r = run(args)
    print(f"# edge-msl daemon benchmark: {r['duration_s']:.0f} s of 8-channel 16 kHz audio, ALSA file plugin -> "
          f"edge-msl run -> mosquitto (QoS 1), {os.cpu_count()} cores, daemon and locate on core "
          f"{args.core if args.core is not None else 'any'}\n")
    rows = [
        ("messages produced (one per 0.1 s window)", f"{r['produced']}", ""),
        ("received by the subscriber (duplicates)", f"{r['received']} ({r['duplicates']})", ""),
        ("lost while the broker was up", f"{r['lost_up']}", f"{TARGETS['lost_up']}"),
        (f"broker down {r['outage_s']:g} s: reconnected after", f"{r['back_after_s']:.1f} s", ""),
        ("  queued at reconnect / bound", f"{r['queued_at_reconnect']} / {r['queue_bound']}", ""),
        ("  dropped by the bound / lost in the outage", f"{r['dropped']} / {r['lost_outage']}",
         "0 / 0 within the bound"),
        ("daemon: delivered / resent / undelivered at exit", f"{r['delivered']} / {r['resent']} / {r['undelivered']}", ""),
        ("RSS after warm-up / end / peak (MB)", f"{r['rss_warm_mb']:.1f} / {r['rss_end_mb']:.1f} / "
                                                f"{r['rss_peak_mb']:.1f}", ""),
        ("RSS growth (MB)", f"{r['rss_growth_mb']:.2f}", f"<= {TARGETS['rss_growth_mb']:g}"),
        ("CPU s per audio s: daemon (real time)", f"{r['daemon_cpu_per_audio_s']:.4f}", ""),
        ("CPU s per audio s: daemon without outputs", f"{r['bare_cpu_per_audio_s']:.4f}", ""),
        ("CPU s per audio s: locate - fed in real time", f"{r['locate_paced_cpu_per_audio_s']:.4f}", ""),
        ("daemon (MQTT) / locate in real time", f"{r['cpu_ratio']:.2f}", f"<= {TARGETS['cpu_ratio']:.2f}"),
        ("daemon without outputs / locate in real time", f"{r['cpu_ratio_bare']:.2f}", ""),
        ("CPU s per audio s: locate on the file (batch)", f"{r['locate_cpu_per_audio_s']:.4f}",
         f"(locate {r['locate_cpu_full_s']:.2f} s - start-up {r['locate_cpu_startup_s']:.2f} s)"),
        ("daemon / locate batch", f"{r['cpu_ratio_batch']:.2f}", ""),
        ("daemon exit code after SIGTERM", f"{r['rc']}", "0"),
    ]
    w = max(len(a) for a, _, _ in rows)
    print(f"| {'measure':{w}s} | value | target |")
    print(f"| {'-' * w} | ---: | --- |")
    for a, b, c in rows:
        print(f"| {a:{w}s} | {b} | {c} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
