"""Dry source signals for the room simulator: synthetic and real speech, noises and music.

The command line of the dry-signal bank (``python -m train_tf.signals build|split|limit|add-files|info``)
and the names the rest of train_tf imports; the work lives in ``train_tf/bank/``, one job a module. No
path is read but through ``check_not_reserved``: the packages in ``RESERVED`` are never read.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence

from train_tf.bank.build import (ALLOWED_ASTERISK_LANGS, ASTERISK_ROOT, BankSettings, add_files, asterisk_files,
                                 build_bank)
from train_tf.bank.levels import FRAME_S, trim_silence
from train_tf.bank.reserved import RESERVED, check_not_reserved
from train_tf.bank.split import SPLITS, limit_minutes, split_bank, split_of
from train_tf.bank.store import (FORMAT_VERSION, KINDS, MU, REBUILD_HINT, SPEECH_KINDS, DryBank, _mulaw_decode,
                                 _mulaw_encode, _tile)
from train_tf.bank.synth import NOISE_KINDS, babble, noise
from train_tf.bank.tts import (ESPEAK_LANGUAGES, ESPEAK_VARIANTS, FLITE_VOICES, SENTENCES, decode_audio_file,
                               decode_g722, decode_gsm, espeak_variants, flite_voices, pseudo_words, resample,
                               synth_espeak, synth_festival, synth_flite)

__all__ = [  # what the modules above offer, for the code that imports them from here
    "ALLOWED_ASTERISK_LANGS", "ASTERISK_ROOT", "BankSettings", "add_files", "asterisk_files", "build_bank", "FRAME_S",
    "trim_silence", "RESERVED", "check_not_reserved", "SPLITS", "limit_minutes", "split_bank", "split_of",
    "FORMAT_VERSION", "KINDS", "MU", "REBUILD_HINT", "SPEECH_KINDS", "DryBank", "_mulaw_decode", "_mulaw_encode",
    "_tile", "NOISE_KINDS", "babble", "noise", "ESPEAK_LANGUAGES", "ESPEAK_VARIANTS", "FLITE_VOICES", "SENTENCES",
    "decode_audio_file", "decode_g722", "decode_gsm", "espeak_variants", "flite_voices", "pseudo_words", "resample",
    "synth_espeak", "synth_festival", "synth_flite", "main",
]

log = logging.getLogger(__name__)


def _format_table(summary: dict[str, dict[str, float]]) -> str:
    lines = [f"{'kind':<14}{'count':>8}{'minutes':>10}"]
    for kind, row in summary.items():
        lines.append(f"{kind:<14}{int(row['count']):>8}{row['minutes']:>10.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Build a dry-signal bank or describe one."""
    parser = argparse.ArgumentParser(prog="python -m train_tf.signals", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = BankSettings()
    b = sub.add_parser("build", help="make a bank (.npz) of dry signals")
    b.add_argument("--out", required=True, help="output .npz, e.g. data/dry/bank.npz")
    b.add_argument("--n-espeak", type=int, default=d.n_espeak)
    b.add_argument("--n-flite", type=int, default=d.n_flite)
    b.add_argument("--n-festival", type=int, default=d.n_festival)
    b.add_argument("--max-asterisk-files", type=int, default=None, help="default: all en/es/fr prompts")
    b.add_argument("--asterisk-langs", default=",".join(d.asterisk_langs),
                   help="languages of the 16 kHz .g722 prompts (comma list of en,es,fr; '' for none)")
    b.add_argument("--asterisk-gsm-langs", default="",
                   help="languages of the 8 kHz .gsm prompt packages to add (es: asterisk-prompt-es-co, "
                        "fr: asterisk-prompt-fr-armelle; other real voices)")
    b.add_argument("--n-noise-each", type=int, default=d.n_noise_each)
    b.add_argument("--noise-duration-s", type=float, default=d.noise_duration_s)
    b.add_argument("--n-music", type=int, default=d.n_music)
    b.add_argument("--seed", type=int, default=d.seed)
    b.add_argument("--workers", type=int, default=d.workers)
    sp = sub.add_parser("split", help="split a bank into disjoint train and test banks (by signal)")
    sp.add_argument("bank", help="bank .npz to split")
    sp.add_argument("--test-fraction", type=float, default=0.15)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--train-out", required=True)
    sp.add_argument("--test-out", required=True)
    lm = sub.add_parser("limit", help="keep at most some minutes of each kind (e.g. to carry a bank)")
    lm.add_argument("bank", help="bank .npz to read")
    lm.add_argument("--out", required=True)
    lm.add_argument("--max-minutes", action="append", default=[], metavar="KIND=MIN",
                    help="e.g. speech_real=38 (repeatable; kinds not named are kept whole)")
    lm.add_argument("--files-only", action="store_true",
                    help="cap only the pieces added with add-files; generated signals are kept whole")
    lm.add_argument("--complement", action="store_true",
                    help="keep the capped kinds' signals the cap leaves out instead (a disjoint validation bank)")
    af = sub.add_parser("add-files", help="add audio files (e.g. real music) to a bank, cut into pieces")
    af.add_argument("files", nargs="+", help="audio files ffmpeg can read")
    af.add_argument("--bank", default=None, help="bank .npz to add to (default: a new bank)")
    af.add_argument("--kind", default="music", choices=KINDS)
    af.add_argument("--piece-s", type=float, default=20.0, help="seconds per stored piece")
    af.add_argument("--out", required=True)
    i = sub.add_parser("info", help="print what a bank holds")
    i.add_argument("path")
    i.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        if args.command == "build":
            settings = BankSettings(n_espeak=args.n_espeak, n_flite=args.n_flite, n_festival=args.n_festival,
                                    max_asterisk_files=args.max_asterisk_files, n_noise_each=args.n_noise_each,
                                    noise_duration_s=args.noise_duration_s, n_music=args.n_music,
                                    seed=args.seed, workers=args.workers,
                                    asterisk_langs=tuple(x for x in args.asterisk_langs.split(",") if x),
                                    asterisk_gsm_langs=tuple(x for x in args.asterisk_gsm_langs.split(",") if x))
            bank = build_bank(args.out, settings)
            print(json.dumps({"path": str(args.out), "content_sha256": bank.content_hash,
                              "build_s": bank.meta.get("build_s"), "skipped": bank.meta.get("skipped"),
                              "n_failed": bank.meta.get("n_failed"), "summary": bank.summary()}))
        elif args.command == "limit":
            limits = {}
            for item in args.max_minutes:
                kind, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(f"--max-minutes takes KIND=MINUTES, got {item!r}")
                limits[kind] = float(value)
            small = limit_minutes(DryBank.load(args.bank), limits, files_only=args.files_only,
                                  complement=args.complement)
            small.save(args.out)
            print(json.dumps({"path": str(args.out), "content_sha256": small.content_hash,
                              "summary": small.summary()}))
        elif args.command == "add-files":
            bank = add_files(DryBank.load(args.bank) if args.bank else None, args.files, args.kind, args.piece_s)
            bank.save(args.out)
            print(json.dumps({"path": str(args.out), "content_sha256": bank.content_hash, "summary": bank.summary()}))
        elif args.command == "split":
            parts = split_bank(DryBank.load(args.bank), args.test_fraction, args.seed)
            for split, path in (("train", args.train_out), ("test", args.test_out)):
                parts[split].save(path)
                print(json.dumps({"split": split, "path": str(path), "content_sha256": parts[split].content_hash,
                                  "summary": parts[split].summary()}))
        else:
            bank = DryBank.load(args.path)
            if args.json:
                print(json.dumps({"path": args.path, "sample_rate_hz": bank.sample_rate_hz,
                                  "content_sha256": bank.content_hash, "summary": bank.summary()}))
            else:
                print(f"{args.path}: {bank.sample_rate_hz} Hz, sha256 {bank.content_hash}")
                print(_format_table(bank.summary()))
    except (FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
