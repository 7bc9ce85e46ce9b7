"""Building a bank: the plan of TTS utterances, asterisk prompts, noises and music for a seed, run on
threads (``build_bank``), and audio files added to a bank (``add_files``)."""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from edge_msl.settings_check import Settings, choice, integer, items, number, optional, setting, text
from train_tf.bank.levels import trim_silence
from train_tf.bank.reserved import check_not_reserved
from train_tf.bank.store import KINDS, SPEECH_KINDS, DryBank
from train_tf.bank.synth import NOISE_KINDS, babble, noise
from train_tf.bank.tts import (ESPEAK_LANGUAGES, SENTENCES, _FLITE_FEMALE, decode_audio_file, decode_g722, decode_gsm,
                               espeak_variants, flite_voices, pseudo_words, synth_espeak, synth_festival, synth_flite)

log = logging.getLogger(__name__)

ASTERISK_ROOT = "/usr/share/asterisk/sounds"
ALLOWED_ASTERISK_LANGS = ("en", "es", "fr")


# --------------------------------------------------------------------------- building

BANK_NOISE_KINDS = tuple(k for k in NOISE_KINDS if k != "music") + ("babble",)
"""Noise kinds a bank stores as point sources of kind "noise" (music is a kind of its own)."""


@dataclass(frozen=True)
class BankSettings(Settings):
    """What ``build_bank`` makes (stored in the bank's meta as JSON data: :meth:`to_dict`; values kept as
    given)."""

    sample_rate_hz: int = setting(16000, integer(8000, 192000))
    """Sample rate of every signal in the bank."""
    n_espeak: int = setting(400, integer(0))
    """espeak-ng utterances (random language variant, voice, speed and pitch)."""
    n_flite: int = setting(60, integer(0))
    """flite utterances (English voices)."""
    n_festival: int = setting(30, integer(0))
    """festival utterances (the installed English voice)."""
    asterisk_langs: tuple[str, ...] = setting(ALLOWED_ASTERISK_LANGS, items(choice(*ALLOWED_ASTERISK_LANGS)))
    """asterisk prompt languages to decode (only en, es and fr are allowed)."""
    asterisk_root: str = setting(ASTERISK_ROOT, text(what="a directory", empty=False))
    """Directory holding the asterisk language directories."""
    max_asterisk_files: int | None = setting(None, optional(integer(0)))
    """At most this many asterisk prompts, spread over the languages (None = all)."""
    asterisk_gsm_langs: tuple[str, ...] = setting((), items(choice(*ALLOWED_ASTERISK_LANGS)))
    """Languages whose 8 kHz .gsm prompts are decoded too: other real voices than the .g722
    ones (es: asterisk-prompt-es-co, fr: asterisk-prompt-fr-armelle); none by default."""
    n_noise_each: int = setting(6, integer(0))
    """Signals per noise kind (white, pink, brown, hum, fan, clicks, babble)."""
    noise_duration_s: float = setting(20.0, number(0.0, math.inf, as_given=True))
    """Length of each noise signal."""
    n_music: int = setting(20, integer(0))
    """Synthetic music pieces."""
    music_duration_s: float = setting(20.0, number(0.0, math.inf, as_given=True))
    """Length of each music piece."""
    noise_kinds: tuple[str, ...] = setting(BANK_NOISE_KINDS, items(choice(*BANK_NOISE_KINDS)))
    """Noise kinds stored as point sources of kind "noise"."""
    min_speech_s: float = setting(0.15, number(0.0, math.inf, as_given=True))
    """Speech shorter than this after trimming is dropped."""
    seed: int = setting(0, integer(0))
    """Seed of everything random in the build."""
    workers: int = setting(os.cpu_count() or 1, integer(1))
    """Threads running TTS engines, decoders and generators (the work is in subprocesses); by default this
    machine's CPUs."""

    KEY = "bank.{}"
    TABLE = "bank"
    PLAIN_DATA = True


# Separate random streams so adding items of one kind does not change the others.
_STREAM = {"espeak": 1, "flite": 2, "festival": 3, "asterisk": 4, "noise": 5, "music": 6, "babble": 7}


def _item_rng(seed: int, stream: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _STREAM[stream], int(index)])


def _sentence_lang(voice_lang: str) -> str | None:
    prefix = voice_lang.split("-")[0]
    return prefix if prefix in SENTENCES else None


def _text_for(lang: str | None, rng: np.random.Generator) -> str:
    if lang is None or rng.random() < 0.3:
        return pseudo_words(rng)
    pool = SENTENCES[lang]
    text = str(rng.choice(pool))
    if rng.random() < 0.25:
        text += " " + str(rng.choice(pool))
    return text


def asterisk_files(root: str | os.PathLike[str], langs: Iterable[str],
                   suffix: str = ".g722") -> list[tuple[str, Path]]:
    """Sorted (language, file) pairs of the ``suffix`` prompts of ``langs`` under ``root``.

    ``.g722`` (16 kHz) are the asterisk-core-sounds voices (en and es: Allison, fr: June);
    ``.gsm`` (8 kHz phone band) are other speakers' prompt packages that install into the bare
    language directories (asterisk-prompt-es-co, asterisk-prompt-fr-armelle).

    Symlinked language directories (en -> en_US_f_Allison) are followed once; silence
    prompts are left out. Every path is checked with ``check_not_reserved``.
    """
    root = Path(root)
    out: list[tuple[str, Path]] = []
    seen: set[str] = set()
    if not root.is_dir():
        return out
    for lang in langs:
        if lang not in ALLOWED_ASTERISK_LANGS:
            raise ValueError(f"asterisk language {lang!r} not allowed; only {', '.join(ALLOWED_ASTERISK_LANGS)}")
        dirs = sorted(d for d in root.iterdir() if d.is_dir() and (d.name == lang or d.name.startswith(lang + "_")))
        for d in dirs:
            check_not_reserved(d)
            for dirpath, dirnames, filenames in os.walk(d, followlinks=True):
                dirnames[:] = sorted(x for x in dirnames if x != "silence")
                for fn in sorted(filenames):
                    if not fn.endswith(suffix):
                        continue
                    p = Path(dirpath) / fn
                    real = os.path.realpath(p)
                    if real in seen:
                        continue
                    check_not_reserved(p)
                    seen.add(real)
                    out.append((lang, p))
    return out


def _select_asterisk(files: list[tuple[str, Path]], max_files: int | None, seed: int) -> list[tuple[str, Path]]:
    if max_files is None or max_files >= len(files):
        return files
    rng = _item_rng(seed, "asterisk", 0)
    by_lang: dict[str, list[Path]] = {}
    for lang, p in files:
        by_lang.setdefault(lang, []).append(p)
    queues = {lang: [ps[i] for i in rng.permutation(len(ps))] for lang, ps in sorted(by_lang.items())}
    chosen: list[tuple[str, Path]] = []
    while len(chosen) < max_files:  # round robin so a small selection still has every language
        for lang in sorted(queues):
            if queues[lang] and len(chosen) < max_files:
                chosen.append((lang, queues[lang].pop(0)))
    return chosen


@dataclass(frozen=True)
class _Job:
    name: str
    kind: str
    run: Callable[[], np.ndarray]
    is_speech: bool


def _plan_jobs(settings: BankSettings, skipped: list[str]) -> list[_Job]:
    sr = settings.sample_rate_hz
    jobs: list[_Job] = []

    def speech_job(name: str, kind: str, fn: Callable[[], np.ndarray]) -> _Job:
        return _Job(name, kind, lambda: trim_silence(fn(), sr), True)

    if settings.n_espeak:
        if shutil.which("espeak-ng") is None:
            skipped.append(f"espeak-ng not installed: {settings.n_espeak} utterances skipped")
        else:
            variants = espeak_variants()
            for i in range(settings.n_espeak):
                rng = _item_rng(settings.seed, "espeak", i)
                lang = ESPEAK_LANGUAGES[int(rng.integers(len(ESPEAK_LANGUAGES)))]
                variant = variants[int(rng.integers(len(variants)))]
                voice = lang + (f"+{variant}" if variant else "")
                speed = int(rng.integers(120, 231))
                pitch = int(rng.integers(15, 86))
                text = _text_for(_sentence_lang(lang), rng)
                jobs.append(speech_job(f"espeak/{i:04d}/{voice}/s{speed}/p{pitch}", "speech_synth",
                                       functools.partial(synth_espeak, text, voice, speed, pitch, sr)))
    if settings.n_flite:
        voices = flite_voices() if shutil.which("flite") else ()
        if not voices:
            skipped.append(f"flite (or its voices) not installed: {settings.n_flite} utterances skipped")
        else:
            for i in range(settings.n_flite):
                rng = _item_rng(settings.seed, "flite", i)
                voice = voices[int(rng.integers(len(voices)))]
                stretch = round(float(rng.uniform(0.8, 1.3)), 3)
                f0 = round(float(rng.uniform(140, 230) if voice in _FLITE_FEMALE else rng.uniform(85, 150)), 1)
                text = _text_for("en", rng)
                jobs.append(speech_job(f"flite/{i:04d}/{voice}/d{stretch}/f{f0}", "speech_synth",
                                       functools.partial(synth_flite, text, voice, sr, stretch, f0)))
    if settings.n_festival:
        if shutil.which("text2wave") is None:
            skipped.append(f"festival (text2wave) not installed: {settings.n_festival} utterances skipped")
        else:
            for i in range(settings.n_festival):
                rng = _item_rng(settings.seed, "festival", i)
                stretch = round(float(rng.uniform(0.8, 1.3)), 3)
                f0 = round(float(rng.uniform(85, 160)), 1)
                std = round(float(rng.uniform(8, 35)), 1)
                text = _text_for("en", rng)
                jobs.append(speech_job(f"festival/{i:04d}/d{stretch}/f{f0}", "speech_synth",
                                       functools.partial(synth_festival, text, sr, stretch, f0, std)))
    # the 16 kHz .g722 voices, then (if asked) the 8 kHz .gsm prompt packages of other speakers
    for langs, suffix, decoder, prefix, what, max_files, hint in (
            (settings.asterisk_langs if settings.max_asterisk_files != 0 else (), ".g722", decode_g722, "asterisk",
             "asterisk prompts", settings.max_asterisk_files, ""),
            (settings.asterisk_gsm_langs, ".gsm", decode_gsm, "asterisk-gsm", "asterisk .gsm prompts", None,
             " (apt install asterisk-prompt-es-co asterisk-prompt-fr-armelle)")):
        if not langs:
            continue
        files = asterisk_files(settings.asterisk_root, langs, suffix=suffix)
        if shutil.which("ffmpeg") is None:
            skipped.append(f"ffmpeg not installed: {what} skipped")
        elif not files:
            skipped.append(f"no {what} for {','.join(langs)} under {settings.asterisk_root}{hint}")
        else:
            for lang, p in _select_asterisk(files, max_files, settings.seed):
                rel = p.relative_to(settings.asterisk_root).with_suffix("")
                rel_name = f"{lang}/{Path(*rel.parts[1:]).as_posix()}" if len(rel.parts) > 1 else f"{lang}/{rel}"
                jobs.append(speech_job(f"{prefix}/{rel_name}", "speech_real", functools.partial(decoder, p, sr)))
    n_noise = int(round(settings.noise_duration_s * sr))
    for kind in settings.noise_kinds:
        if kind == "babble":
            continue  # made from the speech once it exists
        for i in range(settings.n_noise_each):
            rng = _item_rng(settings.seed, "noise", NOISE_KINDS.index(kind) * 100000 + i)
            jobs.append(_Job(f"noise/{kind}/{i:03d}", "noise",
                             functools.partial(noise, kind, n_noise, rng, sr), False))
    n_music = int(round(settings.music_duration_s * sr))
    for i in range(settings.n_music):
        rng = _item_rng(settings.seed, "music", i)
        jobs.append(_Job(f"music/{i:03d}", "music", functools.partial(noise, "music", n_music, rng, sr), False))
    return jobs


def build_bank(out_path: str | os.PathLike[str] | None, settings: BankSettings = BankSettings()) -> DryBank:
    """Make the dry-signal bank described by ``settings`` and save it to ``out_path`` (unless None).

    Deterministic for a seed. Missing TTS engines or decoders are skipped with a warning and
    listed in the bank's meta ("skipped"); a single failing item is logged and left out.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    sr = settings.sample_rate_hz
    skipped: list[str] = []
    jobs = _plan_jobs(settings, skipped)
    for s in skipped:
        log.warning("skipped: %s", s)
    results: list[np.ndarray | None] = [None] * len(jobs)
    failures: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=settings.workers) as pool:
        futures = {pool.submit(job.run): i for i, job in enumerate(jobs)}
        with tqdm(total=len(jobs), desc="dry signals", unit="sig", file=sys.stderr) as bar:
            for fut in concurrent.futures.as_completed(futures):
                i = futures[fut]
                try:
                    results[i] = fut.result()
                except Exception as e:  # one bad utterance or file must not stop the build
                    failures.append(f"{jobs[i].name}: {e}")
                    log.warning("failed %s: %s", jobs[i].name, e)
                bar.update(1)
    signals: list[np.ndarray] = []
    names: list[str] = []
    kinds: list[str] = []
    too_short = 0
    for job, x in zip(jobs, results):
        if x is None:
            continue
        if job.is_speech and len(x) < settings.min_speech_s * sr:
            too_short += 1
            continue
        signals.append(x)
        names.append(job.name)
        kinds.append(job.kind)
    if too_short:
        log.warning("dropped %d speech signals shorter than %.2f s after trimming", too_short, settings.min_speech_s)
    if "babble" in settings.noise_kinds and settings.n_noise_each:
        speech = DryBank([s for s, k in zip(signals, kinds) if k in SPEECH_KINDS],
                         [n for n, k in zip(names, kinds) if k in SPEECH_KINDS],
                         [k for k in kinds if k in SPEECH_KINDS], sr)
        if len(speech):
            n_noise = int(round(settings.noise_duration_s * sr))
            for i in range(settings.n_noise_each):
                signals.append(babble(speech, n_noise, _item_rng(settings.seed, "babble", i)))
                names.append(f"noise/babble/{i:03d}")
                kinds.append("noise")
        else:
            skipped.append("babble: no speech in the bank")
            log.warning("skipped: babble (no speech in the bank)")
    order = sorted(range(len(signals)), key=lambda i: KINDS.index(kinds[i]))  # stable: plan order within a kind
    meta = {"settings": settings.to_dict(), "skipped": skipped, "n_failed": len(failures),
            "failed": failures[:50], "n_too_short": too_short,
            "build_s": None, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    bank = DryBank([signals[i] for i in order], [names[i] for i in order], [kinds[i] for i in order], sr, meta)
    meta["build_s"] = round(time.perf_counter() - t0, 2)
    bank.meta["build_s"] = meta["build_s"]
    if out_path is not None:
        bank.save(out_path)
        log.info("wrote %s: %d signals, %.1f min, sha256 %s, in %.1f s", out_path, len(bank),
                 bank.summary()["total"]["minutes"], bank.content_hash[:12], time.perf_counter() - t0)
    return bank


def add_files(bank: DryBank | None, paths: Sequence[str | os.PathLike[str]], kind: str, piece_s: float = 20.0,
              min_rms_db: float = -50.0, sample_rate_hz: int = 16000) -> DryBank:
    """``bank`` (or an empty one) plus the audio files at ``paths`` as signals of ``kind``, each cut
    into pieces of ``piece_s`` seconds (nearly silent pieces, below ``min_rms_db`` dBFS, dropped);
    names are ``file/<parent>/<stem>/<piece>``. Reserved packages are refused like everywhere."""
    if kind not in KINDS:
        raise ValueError(f"unknown signal kind {kind!r}; allowed: {', '.join(KINDS)}")
    if piece_s <= 0:
        raise ValueError(f"piece_s must be > 0, got {piece_s}")
    sr = bank.sample_rate_hz if bank is not None else int(sample_rate_hz)
    signals = list(bank.signals) if bank is not None else []
    names = list(bank.names) if bank is not None else []
    kinds = list(bank.kinds) if bank is not None else []
    n = int(round(piece_s * sr))
    added = []
    for path in paths:
        path = Path(path)
        x = decode_audio_file(path, sr)
        for i in range(0, max(1, len(x) - n // 4), n):  # a last piece shorter than a quarter is dropped
            piece = x[i:i + n]
            if len(piece) == 0 or 20 * np.log10(np.sqrt(np.mean(piece.astype(np.float64) ** 2)) + 1e-12) < min_rms_db:
                continue
            name = f"file/{path.parent.name}/{path.stem}/{i // n:03d}"
            if name in names:
                raise ValueError(f"signal {name!r} is already in the bank (the same file twice?)")
            signals.append(piece)
            names.append(name)
            kinds.append(kind)
            added.append(name)
    if not added:
        raise ValueError(f"no audio added from {len(paths)} file(s): all silent or empty")
    meta = dict(bank.meta) if bank is not None else {}
    meta.setdefault("added_files", []).append({"kind": kind, "piece_s": piece_s, "files": [str(p) for p in paths],
                                               "signals": len(added)})
    return DryBank(signals, names, kinds, sr, meta)
