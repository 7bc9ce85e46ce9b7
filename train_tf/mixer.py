"""On-the-fly training windows: an RIR bank convolved with dry signals inside the training graph.

The CPU only draws a *plan* per window (room, positions, which dry signal from where, levels,
SNRs, noise offsets: a few hundred bytes); the heavy part (gathering dry segments and RIRs,
FFT convolution, diffuse noise with the isotropic coherence of the array, sensor noise, level,
int16 quantization, the device's input scaling) is one ``keras.ops`` function, compiled with
``jax.jit`` on the JAX backend (GPU) and ``tf.function`` on TensorFlow (CPU). The same code
runs on both backends, and it renders what ``train_tf.simulate.render_window`` renders, except
that the diffuse field uses the array's nominal geometry (the +/-1 mm jitter of each room is
below what the coherence can show) and sensor noise comes from a stored white-noise tape.
With ``echo_prob`` > 0 (training augmentation; ``render_window`` has no counterpart) a source
may also arrive as an unlabelled discrete echo: the RIR of another position of the room, delayed
by a phase ramp and scaled (see ``SimSettings.echo_prob``).

Rooms whose shard index is a multiple of ``VAL_EVERY`` are kept for validation, so the split is
stable while a simulator is still adding shards (``refresh``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_msl.features import EQUALIZE_MAX_DB, INT16_FULL_SCALE, SILENCE_FLOOR
from edge_msl.regions import RegionLayout, angular_distance_deg, encode_batch
from train_tf.signals import FRAME_S, DryBank, _tile, babble, noise
from train_tf.simulate import (
    KIND_CODES,
    SimSettings,
    _diffuse_factor,
    _read_meta,
    choose_positions,
    load_shards,
    shard_files,
)

log = logging.getLogger("train_tf.mixer")

VAL_EVERY = 20
"""Shard i of an RIR bank validates when i % VAL_EVERY == 0 (the rest trains)."""

MAX_SOURCES = 4
"""Source slots per window in a plan (windows with fewer sources leave slots silent)."""

DEFAULT_N_SOURCES_P = (0.08, 0.23, 0.23, 0.23, 0.23)
"""Probability of 0, 1, 2, 3, 4 sources in a training window."""

_RIR_KEYS = ("rirs", "azimuth_deg", "distance_m", "distance3d_m", "rt60_s", "mic_gain")


def shard_index(path: Path) -> int:
    """Index of ``shard-00012.npz`` (12)."""
    return int(path.stem.split("-")[1])


def _part_rng(seed: int, part: str) -> np.random.Generator:
    """The plan generator of one part ("train" or "val") of an RIR bank."""
    if part not in ("train", "val"):
        raise ValueError(f"part must be 'train' or 'val', got {part!r}")
    return np.random.default_rng([seed, 0 if part == "train" else 1])


class DryTape:
    """All dry signals of a bank end to end in one float32 array, each at least ``min_len`` long
    (short ones tiled), with per-signal activity counts for choosing active excerpts."""

    def __init__(self, bank: DryBank, min_len: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        frame = int(round(FRAME_S * bank.sample_rate_hz))
        parts, starts, lengths, cums = [], [], [], []
        pos = 0
        for x in bank.signals:
            if len(x) < min_len:
                x = _tile(x, min_len, int(rng.integers(0, len(x))), int(0.01 * bank.sample_rate_hz))
            x = np.asarray(x, dtype=np.float32)
            n_fr = len(x) // frame
            power = np.mean(x[:n_fr * frame].astype(np.float64).reshape(n_fr, frame) ** 2, axis=1)
            db = 10.0 * np.log10(power + 1e-20)
            active = db >= db.max() - 30.0
            cums.append(np.concatenate([[0], np.cumsum(active)]).astype(np.int32))
            parts.append(x)
            starts.append(pos)
            lengths.append(len(x))
            pos += len(x)
        self.audio = np.concatenate(parts)
        self.starts = np.array(starts, dtype=np.int64)
        self.lengths = np.array(lengths, dtype=np.int64)
        self.active_cum = cums
        self.frame = frame
        self.fs = bank.sample_rate_hz
        self.kinds = bank.kinds
        self.by_kind = {k: bank.indices(k) for k in set(bank.kinds)}

    def voiced_s(self, signal: int, a: int, b: int) -> float:
        """Seconds of active frames of dry signal ``signal`` between tape positions ``a`` and ``b``
        (frames counted where their start lies in [a, b))."""
        cum = self.active_cum[signal]
        start = self.starts[signal]
        fa = int(np.clip(-(-(a - start) // self.frame), 0, len(cum) - 1))
        fb = int(np.clip(-(-(b - start) // self.frame), 0, len(cum) - 1))
        return float(cum[fb] - cum[fa]) * self.frame / self.fs if fb > fa else 0.0

    def offsets(self, signal: np.ndarray, n: int, rng: np.random.Generator, tries: int = 4) -> np.ndarray:
        """Tape offsets of ``n``-sample excerpts of the given signals: the most active of ``tries``
        random excerpts for speech and music, any excerpt for noise."""
        out = np.empty(len(signal), dtype=np.int64)
        for i, s in enumerate(signal):
            span = self.lengths[s] - n + 1
            cand = rng.integers(0, span, size=1 if self.kinds[s] == "noise" else tries)
            if len(cand) > 1:
                cum = self.active_cum[s]
                a = np.minimum(cand // self.frame, len(cum) - 1)
                b = np.minimum((cand + n) // self.frame, len(cum) - 1)
                cand = cand[[int(np.argmax(cum[b] - cum[a]))]]
            out[i] = self.starts[s] + cand[0]
        return out


class Mixer:
    """Windows mixed on the fly from an RIR bank directory and a dry-signal bank."""

    def __init__(self, rir_dir: str | Path, bank: DryBank, layout: RegionLayout, part: str = "train",
                 settings: SimSettings | None = None, n_sources_p: Sequence[float] = DEFAULT_N_SOURCES_P,
                 noise_tape_s: float = 30.0, seed: int = 0, equalize: bool = False) -> None:
        import keras

        self.rir_dir = Path(rir_dir)
        meta = _read_meta(self.rir_dir)
        if meta.get("mode") != "rir-bank":
            raise ValueError(f"{self.rir_dir} is not an RIR bank (mode {meta.get('mode')!r}); write one with: "
                             f"python -m train_tf.simulate rir-bank --out {self.rir_dir} --rooms 2000")
        self.meta = meta
        self.settings = settings or SimSettings.from_dict(meta["settings"])
        if bank.sample_rate_hz != self.settings.sample_rate_hz:
            raise ValueError(f"dry bank is {bank.sample_rate_hz} Hz but the RIR bank {self.settings.sample_rate_hz} Hz")
        self.layout = layout
        self.part = part
        self.equalize = bool(equalize)  # normalize_window(equalize=...): the model's input scaling
        p = np.asarray(n_sources_p, dtype=np.float64)
        if len(p) != MAX_SOURCES + 1 or np.any(p < 0) or p.sum() <= 0:
            raise ValueError(f"n_sources_p must be {MAX_SOURCES + 1} probabilities (0..{MAX_SOURCES} sources), got {p}")
        self.n_sources_p = p / p.sum()
        self.seed = seed
        self.rng = _part_rng(seed, part)
        s = self.settings
        self.fs = s.sample_rate_hz
        self.window = s.window_samples
        self.rir_len = s.rir_bank_samples
        self.seg_len = self.window + self.rir_len - 1
        self.fft_len = 1 << int(math.ceil(math.log2(self.seg_len)))
        self.array = s.mic_array()
        self.n_mics = self.array.n_mics
        # dry signals, diffuse-noise tapes and a white sensor-noise tape
        self.dry = DryTape(bank, self.seg_len + 1, seed)
        nrng = np.random.default_rng([seed, 7])
        n_tape = max(int(noise_tape_s * self.fs), 2 * self.n_mics * self.window)
        self.diffuse_kinds = tuple(s.diffuse_kinds)
        tapes = [babble(bank, n_tape, nrng) if k == "babble" else noise(k, n_tape, nrng, self.fs)
                 for k in self.diffuse_kinds]
        tapes.append(noise("white", n_tape, nrng, self.fs))
        self.noise_tape_len = n_tape
        factor = _diffuse_factor(np.ascontiguousarray(self.array.positions(), dtype=np.float64).tobytes(),
                                 self.n_mics, self.window, self.fs)
        ops = keras.ops
        self._dry_t = ops.convert_to_tensor(self.dry.audio)
        self._noise_t = ops.convert_to_tensor(np.concatenate(tapes).astype(np.float32))
        self._factor_t = ops.convert_to_tensor(factor.astype(np.float32))
        self.kinds_p = np.array([w for _, w in s.kind_weights], dtype=np.float64)
        self.kind_names = [k for k, _ in s.kind_weights]
        have = [k in self.dry.by_kind and len(self.dry.by_kind[k]) > 0 for k in self.kind_names]
        self.kinds_p = np.where(have, self.kinds_p, 0.0)
        if self.kinds_p.sum() <= 0:
            raise ValueError("the dry bank has none of the kinds in the settings' kind_weights")
        self.kinds_p /= self.kinds_p.sum()
        # where the chains are is the bank's own fact, whatever settings the mixer is given
        built = SimSettings.from_dict(meta["settings"])
        self.n_base = built.positions_per_room
        self.n_chains = min(built.move_chains, built.positions_per_room)
        if s.move_prob > 0 and self.n_chains == 0:
            raise ValueError(f"move_prob {s.move_prob} needs an RIR bank with walking chains; simulate one with "
                             f"--set move_chains=3 (this one has none: {self.rir_dir})")
        self._shards: list[Path] = []
        self.rooms: dict[str, np.ndarray] = {}
        self._rirs_t = None
        self._render_fn = None
        self.refresh()

    def sibling(self, part: str) -> "Mixer":
        """A mixer of another part of the same RIR bank and seed, sharing this one's dry and noise
        tapes (the same ones it would build itself), so they are made and held on the device once."""
        import copy

        other = copy.copy(self)
        other.rng = _part_rng(self.seed, part)
        other.part = part
        other._shards, other.rooms, other._rirs_t, other._render_fn = [], {}, None, None
        other.refresh()
        return other

    # ---- RIR bank
    def refresh(self) -> bool:
        """Load shards written since the last call (a simulator may still be adding them)."""
        files = [f for f in shard_files(self.rir_dir)
                 if (shard_index(f) % VAL_EVERY == 0) == (self.part == "val")]
        new = [f for f in files if f not in self._shards]
        if not new:
            if not self._shards:
                raise ValueError(f"{self.rir_dir} has no {self.part} shards yet (validation is every "
                                 f"{VAL_EVERY}th shard, from shard 0)")
            return False
        arrays = load_shards(new, _RIR_KEYS)
        if arrays["rirs"].shape[2:] != (self.n_mics, self.rir_len):
            raise ValueError(f"RIRs in {self.rir_dir} are {arrays['rirs'].shape[2:]}, expected "
                             f"({self.n_mics}, {self.rir_len})")
        if self.rooms:
            arrays = {k: np.concatenate([self.rooms[k], arrays[k]]) for k in _RIR_KEYS}
        self.rooms = arrays
        self._shards += new
        import keras

        r, p = arrays["rirs"].shape[:2]
        self._rirs_t = keras.ops.convert_to_tensor(arrays["rirs"].reshape(r * p, self.n_mics, self.rir_len))
        self._gain_t = keras.ops.convert_to_tensor(arrays["mic_gain"].astype(np.float32))
        log.info("%s RIR bank: %d rooms from %d shards", self.part, r, len(self._shards))
        return True

    @property
    def n_rooms(self) -> int:
        """Rooms available to this part."""
        return int(self.rooms["rirs"].shape[0])

    # ---- host-side plan
    def plan(self, batch_size: int) -> dict[str, np.ndarray]:
        """Draw what ``batch_size`` windows will contain (numpy, small)."""
        rng, s, b = self.rng, self.settings, batch_size
        n_pos = self.rooms["rirs"].shape[1]
        room = rng.integers(0, self.n_rooms, size=b)
        k = rng.choice(MAX_SOURCES + 1, size=b, p=self.n_sources_p)
        pos = np.zeros((b, MAX_SOURCES), dtype=np.int64)
        amp = np.zeros((b, MAX_SOURCES), dtype=np.float32)
        dry_off = np.zeros((b, MAX_SOURCES), dtype=np.int64)
        az = np.full((b, MAX_SOURCES), np.nan, dtype=np.float64)
        dist = np.full((b, MAX_SOURCES), np.nan, dtype=np.float64)
        weight = np.zeros((b, MAX_SOURCES), dtype=np.float64)
        kind_code = np.full((b, MAX_SOURCES), -1, dtype=np.int8)
        n_src = np.zeros(b, dtype=np.int64)
        echo_pos = np.zeros((b, MAX_SOURCES), dtype=np.int64)
        echo_gain = np.zeros((b, MAX_SOURCES), dtype=np.float32)
        echo_delay = np.zeros((b, MAX_SOURCES), dtype=np.float32)
        far = 1e9  # a gate edge this far away is no gate
        gate_on = np.full((b, MAX_SOURCES), -far, dtype=np.float32)
        gate_off = np.full((b, MAX_SOURCES), far, dtype=np.float32)
        move_pos = np.zeros((b, 2), dtype=np.int64)
        move_on = np.zeros(b, dtype=np.float32)
        present = np.ones((b, MAX_SOURCES), dtype=bool)
        for i in range(b):
            walker = self.n_chains > 0 and k[i] > 0 and s.move_prob > 0 and rng.random() < s.move_prob
            if walker:
                chosen, move_pos[i], label = self._walker_positions(room[i], int(k[i]))
                move_pos[i] += room[i] * n_pos
                move_on[i] = 1.0
            else:
                chosen = choose_positions(self.rooms["azimuth_deg"][room[i]], int(k[i]), s.min_source_separation_deg, rng)
                label = chosen
            m = len(chosen)
            n_src[i] = m
            if m == 0:
                continue
            kinds = rng.choice(len(self.kind_names), size=m, p=self.kinds_p)
            sig = np.array([rng.choice(self.dry.by_kind[self.kind_names[c]]) for c in kinds])
            rel_db = rng.uniform(*s.source_level_db, size=m)
            pos[i, :m] = room[i] * n_pos + chosen
            amp[i, :m] = 10.0 ** (rel_db / 20.0)
            dry_off[i, :m] = self.dry.offsets(sig, self.seg_len, rng)
            az[i, :m] = self.rooms["azimuth_deg"][room[i], label]
            dist[i, :m] = self.rooms["distance_m"][room[i], label]
            direct = rel_db - 20.0 * np.log10(self.rooms["distance3d_m"][room[i], label])
            weight[i, :m] = direct - direct.max()
            kind_code[i, :m] = [KIND_CODES[self.kind_names[c]] for c in kinds]
            if s.echo_prob > 0:
                self._plan_echoes(i, room[i], label, echo_pos, echo_gain, echo_delay)
            if s.gate_prob > 0:
                self._plan_gates(i, m, gate_on, gate_off)
            if s.min_voice_s > 0:
                start = self.rir_len - 1  # the window's first sample in the dry segment
                for j in range(m):
                    a = max(start, int(np.ceil(gate_on[i, j])))
                    e = min(start + self.window, int(np.floor(gate_off[i, j])))
                    voiced = self.dry.voiced_s(int(sig[j]), dry_off[i, j] + a, dry_off[i, j] + e) if e > a else 0.0
                    present[i, j] = voiced >= s.min_voice_s
        labelled_az = np.where(present, az, np.nan)
        n_kinds = len(self.diffuse_kinds)
        dkind = rng.integers(0, n_kinds, size=b)
        # each mic gets its own stretch of the tape (consecutive, never overlapping), so no two
        # channels carry shifted copies of one noise, which would look like a direction
        span = self.noise_tape_len - self.n_mics * self.window
        lanes = np.arange(self.n_mics) * self.window
        noise_off = dkind[:, None] * self.noise_tape_len + rng.integers(0, span, size=(b, 1)) + lanes
        sensor_off = n_kinds * self.noise_tape_len + rng.integers(0, span, size=(b, 1)) + lanes
        return {
            "room": room.astype(np.int32), "pos": pos.astype(np.int32), "amp": amp,
            "dry_off": dry_off.astype(np.int32), "noise_off": noise_off.astype(np.int32),
            "sensor_off": sensor_off.astype(np.int32),
            "snr_diffuse_db": rng.uniform(*s.snr_diffuse_db, size=b).astype(np.float32),
            "snr_sensor_db": rng.uniform(*s.snr_sensor_db, size=b).astype(np.float32),
            "level_dbfs": rng.uniform(*s.level_dbfs, size=b).astype(np.float32),
            "echo_pos": echo_pos.astype(np.int32), "echo_gain": echo_gain, "echo_delay": echo_delay,
            "gate_on": gate_on, "gate_off": gate_off, "move_pos": move_pos.astype(np.int32), "move_on": move_on,
            # labels and descriptors (not used by the renderer); a source with too little voice
            # in the window (gated, min_voice_s) is heard but not labelled
            "targets": encode_batch(self.layout, labelled_az, dist, weight).astype(np.float32),
            "azimuth_deg": labelled_az.astype(np.float32), "distance_m": dist.astype(np.float32),
            "n_sources": n_src.astype(np.int8), "n_present": np.sum(np.isfinite(labelled_az), axis=1).astype(np.int8),
            "rt60_s": self.rooms["rt60_s"][room].astype(np.float32),
            "kind": kind_code,
        }

    def _walker_positions(self, room: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions of a window whose first source walks a random chain of ``room``: (render
        positions, (middle, end) of the chain, label positions: the chain's middle or end as
        ``move_label`` says), the others at least
        ``min_source_separation_deg`` from the chain's middle and from each other."""
        rng, s = self.rng, self.settings
        azs = self.rooms["azimuth_deg"][room]
        c = int(rng.integers(self.n_chains))
        chain = np.array([c, self.n_base + 2 * c, self.n_base + 2 * c + 1])
        free = np.setdiff1d(np.arange(len(azs)), chain)
        sep = np.min(angular_distance_deg(azs[free][:, None], azs[chain][None, :]), axis=1)
        free = free[sep >= s.min_source_separation_deg]
        others = free[choose_positions(azs[free], k - 1, s.min_source_separation_deg, rng)] if k > 1 else free[:0]
        chosen = np.concatenate([[chain[0]], others]).astype(np.int64)
        label = np.concatenate([[chain[2] if s.move_label == "end" else chain[1]], others]).astype(np.int64)
        return chosen, chain[1:], label

    def _plan_gates(self, i: int, m: int, gate_on: np.ndarray, gate_off: np.ndarray) -> None:
        """With probability ``gate_prob`` each source of window ``i`` starts inside the window or
        stops inside it (or up to ``gate_lead_s`` before it): the gate's edge in dry-segment samples."""
        rng, s = self.rng, self.settings
        start = self.rir_len - 1
        for j in range(m):
            if rng.random() >= s.gate_prob:
                continue
            if rng.random() < 0.5:
                gate_on[i, j] = start + rng.uniform(0.0, self.window)
            else:
                gate_off[i, j] = start + rng.uniform(-s.gate_lead_s * self.fs, self.window)

    def _plan_echoes(self, i: int, room: int, chosen: np.ndarray, echo_pos: np.ndarray, echo_gain: np.ndarray,
                     echo_delay: np.ndarray) -> None:
        """Give each source of window ``i`` an unlabelled echo with probability ``echo_prob``: the
        RIR of another position of the same room, at least ``echo_min_separation_deg`` from every
        source, scaled so that its direct path is ``echo_gain_db`` below the source's."""
        rng, s = self.rng, self.settings
        azs = self.rooms["azimuth_deg"][room]
        d3 = self.rooms["distance3d_m"][room]
        sep = np.min(angular_distance_deg(azs[:, None], azs[chosen][None, :]), axis=1)
        free = np.flatnonzero(sep >= s.echo_min_separation_deg)
        n_pos = len(azs)
        for j, src in enumerate(chosen):
            if len(free) == 0 or rng.random() >= s.echo_prob:
                continue
            q = int(rng.choice(free))
            echo_pos[i, j] = room * n_pos + q
            echo_gain[i, j] = 10.0 ** (rng.uniform(*s.echo_gain_db) / 20.0) * d3[q] / d3[src]
            echo_delay[i, j] = rng.uniform(*s.echo_delay_ms) * 1e-3 * self.fs

    # ---- rendering in keras.ops
    def _render(self, rirs, gains, dry_tape, noise_tape, factor, room, pos, amp, dry_off, noise_off, sensor_off,
                snr_d, snr_s, level, echo=None, gate=None, move=None):
        from keras import ops

        w, l_rir, n_fft = self.window, self.rir_len, self.fft_len
        seg = ops.take(dry_tape, dry_off[..., None] + ops.arange(self.seg_len, dtype="int32"))  # (B, S, N)
        seg = seg - ops.mean(seg, axis=-1, keepdims=True)
        seg = seg / ops.sqrt(ops.mean(ops.square(seg), axis=-1, keepdims=True) + 1e-12) * amp[..., None]
        n = ops.arange(self.seg_len, dtype="float32")
        if gate is not None:
            # the source talks from gate_on to gate_off (10 ms ramps), at the level it had
            on, off = gate
            ramp = 0.01 * self.fs
            seg = seg * (ops.clip((n - on[..., None]) / ramp, 0.0, 1.0) * ops.clip((off[..., None] - n) / ramp, 0.0, 1.0))
        walk = None
        if move is not None:
            # the first source walks start -> middle -> end of a chain across the window: its
            # signal is cross-faded through the three positions' RIRs (before the window it is at
            # the start)
            move_pos, move_on = move
            u = ops.clip((n - (l_rir - 1)) / w, 0.0, 1.0)
            on = move_on[:, None]
            first = seg[:, 0, :]
            walk_seg = ops.stack([first * on * (1.0 - ops.abs(2.0 * u - 1.0)), first * on * ops.clip(2.0 * u - 1.0, 0.0, 1.0)],
                                 axis=1)  # (B, 2, N)
            seg = ops.concatenate([(first * (1.0 - on + on * ops.clip(1.0 - 2.0 * u, 0.0, 1.0)))[:, None, :], seg[:, 1:, :]],
                                  axis=1)
            walk = (walk_seg, move_pos)
        dr, di = ops.rfft(seg, fft_length=n_fft)  # (B, S, F)
        h = ops.cast(ops.take(rirs, pos, axis=0), "float32")  # (B, S, M, L)
        hr, hi = ops.rfft(h, fft_length=n_fft)
        if walk is not None:
            # the walk's middle and end as two more slots
            wr, wi = ops.rfft(walk[0], fft_length=n_fft)
            whr, whi = ops.rfft(ops.cast(ops.take(rirs, walk[1], axis=0), "float32"), fft_length=n_fft)
            dr, di = ops.concatenate([dr, wr], axis=1), ops.concatenate([di, wi], axis=1)
            hr, hi = ops.concatenate([hr, whr], axis=1), ops.concatenate([hi, whi], axis=1)
        if echo is not None:
            echo_pos, echo_gain, echo_delay = echo
            if walk is not None:  # the walk's slots have no echo
                echo_pos = ops.concatenate([echo_pos, ops.zeros_like(echo_pos[:, :2])], axis=1)
                echo_gain = ops.concatenate([echo_gain, ops.zeros_like(echo_gain[:, :2])], axis=1)
                echo_delay = ops.concatenate([echo_delay, ops.zeros_like(echo_delay[:, :2])], axis=1)
            # + gain * the other position's RIR delayed by echo_delay samples (a phase ramp)
            e = ops.cast(ops.take(rirs, echo_pos, axis=0), "float32")
            er, ei = ops.rfft(e, fft_length=n_fft)
            k = ops.arange(n_fft // 2 + 1, dtype="float32")
            phase = (2.0 * math.pi / n_fft) * echo_delay[..., None, None] * k  # (B, S, 1, F)
            c, sn = ops.cos(phase), ops.sin(phase)
            eg = echo_gain[..., None, None]
            hr = hr + eg * (er * c + ei * sn)
            hi = hi + eg * (ei * c - er * sn)
        dr, di = dr[:, :, None, :], di[:, :, None, :]
        yr = ops.sum(dr * hr - di * hi, axis=1)
        yi = ops.sum(dr * hi + di * hr, axis=1)
        clean = ops.irfft((yr, yi), fft_length=n_fft)[..., l_rir - 1:l_rir - 1 + w]  # (B, M, W)
        g = ops.take(gains, room, axis=0)[..., None]  # (B, M, 1)
        clean = clean * g
        p_ref = ops.mean(ops.square(clean), axis=(1, 2))
        p_ref = ops.where(p_ref > 0.0, p_ref, ops.ones_like(p_ref))
        idx = ops.arange(w, dtype="int32")
        ind = ops.take(noise_tape, noise_off[..., None] + idx)  # (B, M, W) independent channels
        nr, ni = ops.rfft(ind, fft_length=w)
        dfr = ops.einsum("fij,bjf->bif", factor, nr)
        dfi = ops.einsum("fij,bjf->bif", factor, ni)
        diffuse = ops.irfft((dfr, dfi), fft_length=w) * g
        p_d = ops.mean(ops.square(diffuse), axis=(1, 2)) + 1e-20
        diffuse = diffuse * ops.sqrt(p_ref / p_d * ops.power(10.0, -snr_d / 10.0))[:, None, None]
        sensor = ops.take(noise_tape, sensor_off[..., None] + idx)
        sensor = sensor * ops.sqrt(p_ref * ops.power(10.0, -snr_s / 10.0))[:, None, None]
        gain = ops.power(10.0, level / 20.0) / ops.sqrt(p_ref)
        audio = (clean + diffuse + sensor) * gain[:, None, None]
        pcm = ops.clip(ops.round(audio * 32767.0), -32768.0, 32767.0) / INT16_FULL_SCALE
        # edge_msl.features.normalize_window, in ops
        x = pcm - ops.mean(pcm, axis=2, keepdims=True)
        if self.equalize:
            log_rms = ops.log(ops.maximum(ops.sqrt(ops.mean(ops.square(x), axis=2, keepdims=True)), SILENCE_FLOOR))
            limit = EQUALIZE_MAX_DB / 20.0 * math.log(10.0)
            x = x * ops.exp(ops.clip(ops.mean(log_rms, axis=1, keepdims=True) - log_rms, -limit, limit))
        std = ops.sqrt(ops.mean(ops.square(x), axis=(1, 2), keepdims=True))
        x = ops.clip(x / ops.maximum(std, SILENCE_FLOOR), -8.0, 8.0)
        return ops.transpose(x, (0, 2, 1))

    def _compiled(self):
        if self._render_fn is None:
            import keras

            backend = keras.backend.backend()
            if backend == "jax":
                import jax

                self._render_fn = jax.jit(self._render)
            elif backend == "tensorflow":
                import tensorflow as tf

                self._render_fn = tf.function(self._render, reduce_retracing=True)
            else:
                self._render_fn = self._render
        return self._render_fn

    def render(self, plan: dict[str, np.ndarray]):
        """Network inputs (B, W, M) for a plan, as a backend tensor."""
        s = self.settings
        # parts that are off pass None: no extra FFTs
        echo = (plan["echo_pos"], plan["echo_gain"], plan["echo_delay"]) if s.echo_prob > 0 else None
        gate = (plan["gate_on"], plan["gate_off"]) if s.gate_prob > 0 else None
        move = (plan["move_pos"], plan["move_on"]) if s.move_prob > 0 else None
        return self._compiled()(self._rirs_t, self._gain_t, self._dry_t, self._noise_t, self._factor_t,
                                plan["room"], plan["pos"], plan["amp"], plan["dry_off"], plan["noise_off"],
                                plan["sensor_off"], plan["snr_diffuse_db"], plan["snr_sensor_db"],
                                plan["level_dbfs"], echo, gate, move)

    def batch(self, batch_size: int) -> tuple[Any, np.ndarray]:
        """(inputs, region targets) of one batch."""
        plan = self.plan(batch_size)
        return self.render(plan), plan["targets"]

    def fixed_set(self, n: int, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """``n`` windows rendered once (a validation set), as numpy batches."""
        import keras

        out = []
        for start in range(0, n, batch_size):
            x, y = self.batch(min(batch_size, n - start))
            out.append((keras.ops.convert_to_numpy(x), y))
        return out
