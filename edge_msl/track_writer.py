"""Per-talker audio on disk: each track's chunks from :class:`edge_msl.separate.Separator` as a mono WAV,
and ``tracks.json`` indexing them (what ``locate --separate`` and the daemon's ``[separate] dir`` write).
It must not separate anything itself (``edge_msl.separate``, numpy only, hands it the chunks).
"""

from __future__ import annotations

import json
import logging
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from .separate import Chunk

log = logging.getLogger("edge_msl.separate")  # the per-track audio's log lines keep the name they had


class TrackWriter:
    """Writes each track's chunks to ``DIR/track-<id>-<start>s.wav`` (16-bit PCM, mono, model rate) as
    they come, and ``DIR/tracks.json`` (id, file, start_s, end_s) whenever a track's file is closed; an
    index already there is kept and added to (a restarted daemon, a second run into the same directory).

    ``tolerant`` (the daemon): a write error (a full disk, a missing mount) is logged in one line, the
    track's file is given up (its chunks dropped until its stream ends) and the next track tries again."""

    def __init__(self, directory: str | Path, sample_rate_hz: int, *, tolerant: bool = False) -> None:
        self.dir = Path(directory)
        self.sample_rate_hz = int(sample_rate_hz)
        self.tolerant = tolerant
        self._open: dict[int, tuple[wave.Wave_write, dict[str, Any]]] = {}
        self._broken: set[int] = set()  # tracks whose file was given up
        self._failing = False
        self.errors = 0
        self.index: list[dict[str, Any]] = []
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            old = json.loads((self.dir / "tracks.json").read_text())
            if old.get("sample_rate_hz") == self.sample_rate_hz and isinstance(old.get("tracks"), list):
                self.index = old["tracks"]
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as exc:
            self._error(exc)

    def write(self, chunks: Sequence[Chunk]) -> None:
        for c in chunks:
            if c.id in self._broken:
                if c.last:
                    self._broken.discard(c.id)
                continue
            try:
                self._write(c)
            except OSError as exc:
                self._error(exc)
                wf, _ = self._open.pop(c.id, (None, None))
                if wf is not None:
                    try:
                        wf.close()
                    except OSError:
                        pass
                if not c.last:
                    self._broken.add(c.id)

    def _write(self, c: Chunk) -> None:
        entry = self._open.get(c.id)
        if entry is None and not c.last:
            name = f"track-{c.id}-{c.start_s:.2f}s.wav"
            self.dir.mkdir(parents=True, exist_ok=True)
            wf = wave.open(str(self.dir / name), "wb")
            wf.setnchannels(1)
            wf.setsampwidth(2)
            wf.setframerate(self.sample_rate_hz)
            meta = {"id": c.id, "file": name, "start_s": round(c.start_s, 3), "end_s": round(c.start_s, 3),
                    "sample_rate_hz": self.sample_rate_hz}
            entry = self._open[c.id] = (wf, meta)
            self.index.append(meta)
        if entry is None:
            return
        wf, meta = entry
        if len(c.samples):
            pcm = np.clip(np.round(c.samples * 32767.0), -32768, 32767).astype("<i2")
            wf.writeframes(pcm.tobytes())
            meta["end_s"] = round(c.t_s + len(c.samples) / self.sample_rate_hz, 3)
        if c.last:
            del self._open[c.id]
            wf.close()
            self._write_index()
            if self._failing:
                self._failing = False
                log.info("per-track audio: writing to %s again", self.dir)

    def _error(self, exc: BaseException) -> None:
        if not self.tolerant:
            raise exc
        self.errors += 1
        if not self._failing:
            self._failing = True
            log.error("per-track audio: cannot write to %s (%s); tracks are dropped until writing works again",
                      self.dir, exc)

    def close(self) -> None:
        for k, (wf, _) in list(self._open.items()):
            try:
                wf.close()
            except OSError as exc:
                self._error(exc)
        self._open.clear()
        try:
            self._write_index()
        except OSError as exc:
            self._error(exc)

    def _write_index(self) -> None:
        tmp = self.dir / "tracks.json.tmp"
        tmp.write_text(json.dumps({"sample_rate_hz": self.sample_rate_hz, "tracks": self.index}, indent=1) + "\n")
        tmp.replace(self.dir / "tracks.json")
