"""Localize sound sources in a multichannel recording; one JSON line per analysed window on stdout.

FILE is a WAV (any PCM/float encoding, RF64 too) or, with ffmpeg installed, FLAC or any format
ffmpeg reads; ``-`` reads a WAV stream from stdin (e.g. ``arecord -c 8 -r 16000 -f S16_LE``);
``example`` is the bundled 3-talker recording (``--truth example`` its ground truth).
Channels must be in the capture layout of the board (its channel map picks the microphones); without
--array the board is chosen from the channel count, silent channels and how the sound fits each
geometry, and refused when that is ambiguous. Sample rates above the model's are resampled. Each line
(schema edge-msl/sources-v2, see edge_msl/schema/sources-v2.json):

  {"schema": "edge-msl/sources-v2", "t_s": 1.3, "sources": [{"id": 4, "azimuth_deg": 41.7,
   "elevation_deg": null, "distance_m": 1.62, "x_m": 1.21, "y_m": 1.08, "confidence": 0.93,
   "region": 1, "active": true}]}

t_s is the end of the window in seconds from the start of the file; azimuth is counter-clockwise
from the array's x axis. Logs and the --truth summary go to stderr. Exit 2 on bad input.

--odas-sst/--odas-ssl TARGET send ODAS frames (socket:HOST:PORT, as ODAS connects, or file:PATH) as the
daemon's [odas] does, beside stdout. Ctrl-C stops with one line and exit 130.

--separate DIR writes each track's audio (a beamformer steered at it, docs/separation.md) to
DIR/track-<id>-<start>s.wav, with DIR/tracks.json listing id, file, start_s and end_s.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

log = logging.getLogger("edge_msl.locate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edge-msl locate`` (the knobs it shares with ``run`` from :data:`options.SHARED`)."""
    from ..config import Config, StdoutSettings
    from .options import ODAS_TARGETS, SHARED, add_options

    parser.add_argument("file", metavar="FILE", help="recording (WAV, or FLAC with ffmpeg), - for a WAV on stdin, "
                                                     "or 'example' for the bundled one")
    defaults = {"hop_s": Config.hop_s, "num_threads": Config.num_threads, "stdout.format": StdoutSettings.format}
    add_options(parser, SHARED, defaults, aliases={"stdout.format": ("--format",)}, helps={
        "array": "built-in array name, or a TOML file with an [array] table (default: the board the recording's "
                 "channels and sound show; refused when they do not single one out)"})
    add_options(parser, ODAS_TARGETS)
    parser.add_argument("--pool-s", type=float, default=None, help=argparse.SUPPRESS)  # retired in 0.2: one message
    parser.add_argument("--live", metavar="[HOST:]PORT",
                        help="serve the live view there (a bare port: 127.0.0.1 only) and play the file in real "
                             "time; after its end the page stays up until Ctrl-C")
    parser.add_argument("--plot", metavar="PNG", help="draw azimuth over time per track id (needs matplotlib)")
    parser.add_argument("--truth", metavar="JSON", help="ground truth: drawn on --plot and scored on stderr "
                                                        "('example': the bundled recording's)")
    parser.add_argument("--separate", metavar="DIR", default=None,
                        help="write one WAV per track id (its audio, beamformed) into DIR, with DIR/tracks.json")


def parse_decode(args: argparse.Namespace) -> dict:
    """``--decode KEY=VALUE`` options -> a table of temporal decode settings (values read as TOML, as ``run``
    reads them)."""
    from .options import SHARED, overrides

    return {key.partition(".")[2]: value for key, value in overrides(args, [o for o in SHARED if o.key == "decode"])}


EXAMPLE = "example"
"""FILE / --truth value that names the bundled recording (when no file of that name exists)."""


def example_path(suffix: str) -> str:
    """The bundled example recording (``.wav``) or its truth (``.truth.json``)."""
    from pathlib import Path

    return str(Path(__file__).resolve().parents[1] / "examples" / f"uca8-r10-3talkers{suffix}")


def load_array(spec: str):
    """A built-in array by name, or the [array] table of a TOML file."""
    from ..arrays import ArrayConfigError, from_dict, get_array

    if spec.endswith(".toml") or os.sep in spec:
        import tomllib

        try:
            with open(spec, "rb") as f:
                cfg = tomllib.load(f)
        except FileNotFoundError:
            raise ArrayConfigError(f"--array {spec}: no such file; give a built-in array name or a TOML file") \
                from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ArrayConfigError(f"--array {spec}: cannot read it as TOML ({exc})") from None
        if "array" not in cfg:
            raise ArrayConfigError(f"--array {spec}: no [array] table; see docs/boards.md (Arrays) for a custom array")
        return from_dict(cfg["array"])
    return get_array(spec)


ODAS_CONNECT_S = 5.0
"""How long locate waits for its ODAS sockets before the first frame (a file is over in a moment)."""


def main(args: argparse.Namespace) -> int:
    """Run the pipeline over the file and print JSON lines; Ctrl-C ends it with one line and exit 130."""
    closing: list = []  # outputs to close however the run ends
    try:
        return _main(args, closing)
    except KeyboardInterrupt:
        print("edge-msl locate: interrupted", file=sys.stderr)
        return 130
    finally:
        for output in closing:
            output.close()


def _main(args: argparse.Namespace, closing: list) -> int:
    import itertools

    import numpy as np

    from ..arrays import ArrayConfigError
    from ..audio_io import AudioFileError, open_audio
    from ..board_id import array_for_recording
    from ..config import OdasSettings, StdoutSettings
    from ..pipeline import Pipeline, PipelineError
    from ..runtime import ModelError, load_model
    from ..settings_check import SettingError
    from ..truth import TruthError, load_truth, plot, score

    t0 = time.perf_counter()
    name = "edge-msl locate"
    if args.file == EXAMPLE and not os.path.exists(args.file):
        args.file = example_path(".wav")
    if args.truth == EXAMPLE and not os.path.exists(args.truth):
        args.truth = example_path(".truth.json")
    try:
        stdout = StdoutSettings(format=args.stdout_format)
        odas = OdasSettings(sst=args.odas_sst or "", ssl=args.odas_ssl or "")
        truth = load_truth(args.truth)[0] if args.truth else []
        if args.plot:
            try:
                import matplotlib  # noqa: F401  (fail before the run, not after it)
            except ImportError:
                raise TruthError("--plot needs matplotlib; pip install \"edge-msl[plot]\"") from None
        array = load_array(args.array) if args.array else None
        model = load_model(args.model, array=array, num_threads=args.threads) if array is not None else None
        reader = open_audio(args.file)
        head: list = []
        if args.model is None or array is not None:
            # the array from the recording's channels and sound when --array is omitted, checked against them when given
            blocks = reader.blocks(max(1, reader.info.sample_rate_hz // 10))
            for frames in blocks:
                head.append(frames)
                if len(head) >= 20:  # 2 s, as the channel check reads
                    break
            info = reader.info
            array = array_for_recording(info.n_channels, info.sample_rate_hz, np.concatenate(head) if head else None,
                                        args.file, array)
        if model is None:
            model = load_model(args.model, array=array, num_threads=args.threads)
    except (ArrayConfigError, ModelError, AudioFileError, TruthError, ValueError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    live = None
    if args.live:
        from ..config import LiveSettings
        from ..live import LiveServer, parse_listen

        try:
            host, port = parse_listen(args.live)
            live = LiveServer(LiveSettings(enabled=True, host=host, port=port), title=f"edge-msl {Path(args.file).name}")
            live.start(retry=False)
            closing.append(live)
        except (ValueError, OSError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        print(f"{name}: live view at {live.url} (playing the file in real time)", file=sys.stderr)
    from ..sinks import StdoutSink

    out = StdoutSink(stdout, tolerant=False)
    sinks = [out]
    if odas.enabled:
        from ..odas import OdasSink, SocketTarget

        sink = OdasSink(odas)
        sink.start()
        closing.append(sink)
        sinks.append(sink)
        deadline = time.monotonic() + ODAS_CONNECT_S
        for _, target in sink.outputs:
            while isinstance(target, SocketTarget) and not target.connected and time.monotonic() < deadline:
                time.sleep(0.02)
    messages = []
    keep = bool(args.plot or truth)
    n_lines = 0
    first_line_s = None
    with reader:
        info = reader.info
        try:
            if args.pool_s is not None:
                raise PipelineError("--pool-s is gone since edge-msl 0.2: the temporal decode integrates evidence per "
                                    "talker (docs/decode.md); drop it, or tune it with --decode KEY=VALUE")
            pipe = Pipeline(model, hop_s=args.hop_s, threshold=args.threshold, track=not args.no_track,
                            decode=parse_decode(args), input_rate_hz=info.sample_rate_hz, array=array)
            pipe.check_input(info.n_channels, info.sample_rate_hz, what=args.file)
            if args.separate:
                from ..separate import SeparatedAudio, Separator, TrackWriter

                if args.no_track:
                    raise PipelineError("--separate needs tracks (ids); drop --no-track")
                try:
                    writer = TrackWriter(args.separate, pipe.sample_rate_hz)
                except OSError as exc:
                    raise PipelineError(f"--separate {args.separate}: cannot create it ({exc.strerror or exc})") \
                        from None
                pipe.audio_listener = SeparatedAudio(Separator(pipe.array.positions(), pipe.sample_rate_hz), writer)
        except (PipelineError, SettingError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        log.info("%s: %d channels at %d Hz (%s, %s), %s", args.file, info.n_channels, info.sample_rate_hz,
                 info.sample_format, info.container,
                 f"{info.duration_s:.1f} s" if info.duration_s is not None else "length unknown")
        block = max(1, int(round(pipe.hop_s * info.sample_rate_hz)))
        played, live_t0 = 0, time.monotonic()
        try:
            # blocks read ahead to choose the array come first (the pipeline takes any block size)
            for frames in itertools.chain(head, blocks) if head else reader.blocks(block):
                msgs = pipe.push(frames)
                if live is not None:
                    played += len(frames)  # real time: the page is watched as the file plays
                    time.sleep(max(0.0, live_t0 + played / info.sample_rate_hz - time.monotonic()))
                    for m in msgs:
                        live.publish(m)
                if not msgs:
                    continue
                for m in msgs:
                    for output in sinks:
                        output.publish(m)
                if out.error is not None:
                    print(f"{name}: cannot write to stdout ({out.error}) after {n_lines} lines; free space or "
                          "redirect the output elsewhere", file=sys.stderr)
                    return 1
                if first_line_s is None:
                    first_line_s = time.perf_counter() - t0
                n_lines += len(msgs)
                if keep:
                    messages.extend(msgs)
                if out.closed and not keep:
                    break
        except AudioFileError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
    if pipe.audio_listener is not None:
        pipe.audio_listener.close()
        log.info("per-track audio of %d track(s) in %s", len(pipe.audio_listener.writer.index), args.separate)
    if n_lines == 0:
        log.warning("%s is shorter than one window (%.2f s): no output", args.file, pipe.window_s)
    log.info("%d windows in %.2f s (first line after %.2f s)", n_lines, time.perf_counter() - t0,
             first_line_s or float("nan"))
    if truth:
        s = score(messages, truth, pipe.window_s)
        print(f"{name}: truth {Path(args.truth).name}: " + ", ".join(f"{k} {v}" for k, v in s.items()),
              file=sys.stderr)
    if args.plot:
        try:
            plot(messages, args.plot, truth, title=f"edge-msl locate {Path(args.file).name}")
        except (TruthError, OSError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        print(f"{name}: plot written to {args.plot}", file=sys.stderr)
    if odas.enabled:
        closing.remove(sinks[1])
        sinks[1].close()
        log.info("%s", sinks[1].summary())
    if live is not None:
        from ..live import serve_until_stopped

        closing.remove(live)
        serve_until_stopped(live, f"{name}: end of {args.file}; the live view stays at {live.url} until Ctrl-C")
    return 0
