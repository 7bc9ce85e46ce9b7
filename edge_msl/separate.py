"""Per-talker audio: one beamformer per published track, steered at its direction, with nulls towards
the other tracks (LCMV), a noise covariance learnt where nobody talks, and a post-filter whose spatial
masks see the frames dereverberated (online WPE) and whose gains leave out the late reverberation WPE
predicts, and by default a small learned network (``edge_msl.separate_nn``) that turns that evidence into the
final gains; streaming; 1,024-sample frames, the weights and the masks' classes solved at every fourth bin.
Options (not the default, docs/separation.md): a mask-based multichannel Wiener filter or MVDR per track
(``beamformer``), 512-sample frames (``nfft``), the whole separator on dereverberated frames (``wpe_use``).

Fed by :class:`edge_msl.pipeline.Pipeline` (its ``audio_listener`` hook) with the audio it analysed and
the messages of the windows ending in it; hands out chunks of audio keyed by track id. numpy only; it
must not touch files or sockets itself (:class:`edge_msl.track_writer.TrackWriter` writes WAVs, the sinks' job
otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .arrays import SPEED_OF_SOUND_M_S
from .settings_check import Settings, SettingError, boolean, choice, integer, number, setting, text
from .track_writer import TrackWriter  # re-exported: its former place

NFFT = 512
"""The STFT frame the per-frame constants below were chosen at (32 ms at 16 kHz; they are scaled to the same
time spans for ``SeparateSettings.nfft``, 1024 by default); the hop is half of it, square-root Hann analysis
and synthesis windows."""
HOP = NFFT // 2
ADAPT_PRIOR_FRAMES = 20.0
"""Weight (in frames) of the noise model in a track's interference covariance."""
WEIGHTS_EVERY = 3
"""With no track born or moved, the weights follow the learnt covariances every this many messages (one per
analysis hop of the audio, 0.3 s;
the covariances remember about 1.5 s: every message costs three times the CPU, every second one measured
the same SI-SDR on development scenes)."""
BLOCK_FRAMES = 32
"""With no message for this many STFT frames (0.5 s; the pipeline sends one every 0.1 s), the frames are
analysed anyway. Frames are analysed in blocks cut only by the audio itself (a message's window end, or
this many frames after the last cut), never where a push ends: the output does not depend on how the audio
was cut into pushes (the spatial mixture's priors, the noise floor and the single E-step are per block)."""
MOVE_DEG = (2.0, 3.0)
"""A track whose azimuth (elevation) moved more than this many degrees since the last message gets new weights
at once, else at the next periodic update (0.5/1.0 before: weights at 65 % of messages instead of 46 %, the
same SI-SDR within 0.01 dB on the validation scenes)."""
NEAR_MOVE = math.log(1.15)  # near_field: a track's steering follows its distance once it moved 15 %
NEAR_RANGE_M = (0.3, 10.0)  # near_field: the decode's distance clipped to this
MASK_TRUST_FRAMES = 30.0
"""beamformer = 'mwf' / 'mvdr': a bin's mask-based weights are trusted fully once the track's mask summed over
this many frames (fewer: blended with the LCMV's; 100 gave a third less early-image gain, 10 lost 0.4 dB
against the direct sound on the validation scenes)."""
WPE_MIN_FRAMES = 30.0
"""Dereverberation: the prediction starts once its statistics hold this many frames (at 512 samples)."""
WPE_SOLVE_EVERY = 3
"""Dereverberation: each bin's prediction filter is re-solved every this many analysis blocks (a third of the
bins in each block: the solves were most of its CPU; every block measured within 0.05 dB)."""
SPATIAL_EVERY = 3
"""The spatial mixture's classes are remade every this many weight updates (0.9 s) or when the tracks change
(each remake inverts a matrix per class and bin; every 0.2 s measured no better on development scenes)."""


SeparateConfigError = SettingError
"""Invalid separation settings (the one settings error, under its former name)."""


@dataclass(frozen=True)
class SeparateSettings(Settings):
    """How per-talker audio is made (defaults chosen on development scenes, docs/separation.md)."""

    loading: float = setting(0.02, number(1e-4, 10.0))
    """Diagonal loading of the normalized noise covariance (robustness to steering errors and echoes; 0.01-0.3
    measured on development scenes: 0.01-0.03 best, 0.02 kept for margin against real arrays' errors)."""
    null_min_deg: float = setting(15.0, number(0.0, 180.0))
    """Another track closer than this (in azimuth) to the target gets no null (it would null the target)."""
    null_max_coherence: float = setting(0.6, number(0.0, 1.0))
    """Per frequency, no null where the two steering vectors are this alike (low frequencies, and the
    sidelobes above 1 kHz: the post-filter separates there; 0.6 with round 5's other defaults measured
    better than 0.8 on the validation scenes, docs/experiments/separation-round-4.md)."""
    noise_forget: float = setting(0.98, number(0.0, 0.9999))
    """Per STFT frame, the weight of the past in the noise covariance (frames where no talker is listed)."""
    adapt_forget: float = setting(0.997, number(0.0, 0.9999))
    """Per frame (at 512 samples; scaled for ``nfft``), the weight of the past in each track's interference
    covariance, learnt from the bins its post-filter finds dominated by others, and in the spatial mask's
    classes (0 turns both off: the noise covariance serves every track, the classes stay the steering and noise
    models; 0.997, about 5 s, measured better than 0.99 and 0.995 on every validation row, round 5)."""
    postfilter: bool = setting(True, boolean)
    """Apply the post-filter (a gain per bin and track, from ``mask``)."""
    mask: str = setting("spatial", choice("spatial", "beams"))
    """Post-filter mask: 'spatial' (each bin's posterior under a spatial mixture model of the microphone
    signals, one class per track and one for noise) or 'beams' (the beams' powers against each other)."""
    spatial_spread: float = setting(1.0, number(0.0, 100.0))
    """Spatial model: weight of the diffuse coherence beside a track's direct-path steering vector (reverb)."""
    spatial_prior_frames: float = setting(160.0, number(1.0, 1e6))
    """Spatial model: weight (frames at 512 samples; scaled for ``nfft``) of the steering-vector model against
    what each class learnt online (160, with ``adapt_forget`` 0.997, round 5; 80 before)."""
    interference_weight: float = setting(1.0, number(0.0, 10.0))
    """Post-filter with mask = 'beams': how much of the other tracks' output power counts as leaking into this one."""
    gain_min: float = setting(0.1, number(0.0, 1.0))
    """Post-filter: smallest gain (0.1 = -20 dB; with round 5's other defaults +0.05-0.2 dB over 0.2 against
    the direct sound on every validation row; 0.2 distorts a source that is not sparse less)."""
    beamformer: str = setting("lcmv", choice("lcmv", "mwf", "mvdr"))
    """'lcmv': unit gain towards the track's direction, nulls towards the others (above); 'mwf' / 'mvdr':
    mask-based, per frequency from the track's and the rest's spatial covariances, learnt (power-weighted,
    forgetting ``adapt_forget``) from the post-filter's masks: a multichannel Wiener filter
    (Phi_s + mu Phi_n)^-1 Phi_s e_0, or Souden's MVDR Phi_n^-1 Phi_s e_0 / tr(Phi_n^-1 Phi_s); both estimate
    the talker's (reverberant) image at mic 0, blended with the LCMV while a track's covariance is young."""
    mwf_mu: float = setting(0.5, number(0.01, 100.0))
    """beamformer = 'mwf': weight of the noise + interference against speech distortion (validation scenes:
    0.25-0.5 best against the early image, docs/experiments/separation-mask-beamforming.md)."""
    mask_share: float = setting(1.0, number(0.0, 1.0))
    """beamformer = 'mwf' / 'mvdr': the mask-based weights' share once trusted (the rest: the LCMV's; 0.5 halves
    the early-image gain and loses a third as much against the direct sound)."""
    nfft: int = setting(1024, choice(512, 1024))
    """STFT frame in samples, 512 or 1024 (hop: half of it); the per-frame constants (forgetting, priors in
    frames, blocks) are scaled to the same time spans. 1024 (with ``coarse_bins`` 2 and ``wpe_taps`` 2, round
    4's default): +0.02-0.36 dB on both references on every validation row over 512 (the former default) at 1.07
    times its CPU (docs/experiments/separation-round-4.md); every bin solved, 1.5 times."""
    coarse_bins: int = setting(4, integer(1, 4))
    """The beamformer's weights and the spatial mixture's classes (matrix solves and inverses per bin, most of
    the per-bin CPU) are made, and their covariances learnt, at every this-many-th bin, and linearly interpolated
    between (2 with ``nfft`` 1024: the 512-sample frames' bins, 0.0-0.07 dB better than every bin on the
    validation scenes; 4, 62.5 Hz, the default since round 5: alone a little worse than 2 on three rows of four,
    with round 5's ``adapt_forget``, ``gain_min``, ``null_max_coherence`` and ``spatial_prior_frames`` better
    on every row at 0.84 times the CPU, docs/experiments/separation-round-4.md); must divide nfft / 2."""
    dereverb: bool = setting(True, boolean)
    """Dereverberate the microphone frames (online multichannel WPE, docs/experiments/separation-wpe.md): each
    mic's reverberation predicted from the past frames of ``wpe_channels`` mics (weighted least squares, 1 /
    the frame's power, forgetting ``wpe_forget``; the filter is re-solved per analysis block from the frames
    before it: causal) and subtracted, in the bins ``wpe_min_hz`` .. ``wpe_max_hz``, for ``wpe_use`` (by
    default the spatial masks below 1 kHz: +0.1-0.6 dB on both references on every validation row, 1.1 times
    the CPU)."""
    wpe_taps: int = setting(2, integer(1, 10))
    """Dereverberation: past frames per mic in the prediction (not scaled for ``nfft``: at 1024 samples 2 frames
    span 64 ms, 3 lost 0.09 dB against the early image on the first validation row; at 512, 3 was the best, 2
    0.05-0.1 dB less, 4 the same)."""
    wpe_delay: int = setting(1, integer(1, 10))
    """Dereverberation: prediction delay in frames at 512 samples (scaled for ``nfft``; 2: 0.1 dB less for the
    masks; for the output, 1 trades early-image for direct-sound SI-SDR, 3-4 leave both alone)."""
    wpe_forget: float = setting(0.98, number(0.0, 0.99999))
    """Dereverberation: per frame, the weight of the past in the prediction's statistics (0.98-0.97 best for
    the masks, 0.99-0.995 0.1-0.3 dB less)."""
    wpe_channels: int = setting(0, integer(0, 64))
    """Dereverberation: how many mics (evenly spaced in the array's order) predict; 0: all."""
    wpe_use: str = setting("masks", choice("all", "masks"))
    """Dereverberation: which part sees the dereverberated frames ('all': everything, the output too; 'masks':
    only the spatial mixture model, its masks and classes; the beamformer and its covariances see the
    microphones' frames)."""
    wpe_min_hz: float = setting(0.0, number(0.0, 1e5))
    """Dereverberation: only bins from this frequency up are dereverberated."""
    wpe_max_hz: float = setting(1000.0, number(0.0, 1e5))
    """Dereverberation: only bins up to this frequency are dereverberated (for the masks, the bins above 1 kHz
    gained nothing, those below 300 Hz most)."""
    reverb_weight: float = setting(1.0, number(0.0, 10.0))
    """Post-filter (spatial mask, ``dereverb`` with ``wpe_use`` 'masks'): in the dereverberated bins, a track's
    gain is its mask less this times its late reverberation's share of its beam's power (the beam applied to
    WPE's prediction of the frames; both smoothed over 3 bins), with the same floor ``gain_min``; 0: off (1:
    +0.0-0.1 dB on both references on every validation and held-out row, 1.02 times the CPU; 0.5 a little
    less, 2-4 worse, docs/experiments/separation-wpe.md)."""
    reverb_delay: int = setting(3, integer(1, 10))
    """Post-filter's late reverberation (``reverb_weight``): only the prediction's taps this many frames (at 512
    samples) or more before the frame count (the rest is early echoes, which a listener hears as the talker; 1,
    the whole prediction, lost up to 0.1 dB against the early image)."""
    backfill_s: float = setting(2.0, number(0.0, 10.0))
    """A new track's audio starts this long before its first message (the decode needs a window to see it, and lists
    a talker 0.16-0.3 s after their voice starts). 2.0 s (0.5 before): +0.10 dB against the direct sound on two
    talkers at RT60 0.2-0.4 s and more on every row of the validation scenes, 1.06 times the CPU
    (docs/experiments/separation-round-4.md, round 8)."""
    learned: bool = setting(True, boolean)
    """Post-filter: each bin's gain from a small learned network (``edge_msl.separate_nn``) that sees the spatial
    posteriors, the beams' powers and the frames before, in place of the spatial mask's gain (the beams still learn
    from the spatial masks). On (round 9): +0.8-1.0 dB against the early image on every validation row, +0.09 dB
    against the direct sound on two talkers at RT60 0.2-0.4 s, 1.27 times the CPU
    (docs/experiments/separation-learned-postfilter.md); off: the spatial mask's gains (with ``reverb_weight``).
    With ``mask`` 'beams' it is not used (it reads the spatial posteriors)."""
    learned_weights: str = setting("", text())
    """``learned``: the network's weights (.npz); '' = the bundled ``edge_msl/models/separate-postfilter.npz``."""
    near_field: bool = setting(True, boolean)
    """Steer each track (its beam and its spatial class) at a spherical wave from the decode's horizontal distance
    (``distance_m``, clipped to 0.3-10 m, followed once it moves 15 %) rather than a plane wave: the wavefront's
    curvature across the array (about 5 mm of path at 1 m for a 10 cm radius, 40 degrees of phase at 8 kHz). On
    (round 14): +0.03-0.20 dB against the early image and +0.09-0.23 dB against the direct sound on every
    validation row, 1.05 times the CPU (docs/experiments/separation-near-field.md); off: plane waves."""
    hold_s: float = setting(2.0, number(0.0, 3600.0))
    """A track's stream ends when its id has not been listed for this long (the decode's resume_s)."""

    KEY = "[separate] {}"
    TABLE = "[separate]"


@dataclass
class Chunk:
    """Audio of one track: ``samples`` (float32, model rate) starting at stream time ``t_s``."""

    id: int
    start_s: float
    """When the track's stream starts (its first sample), stream seconds."""
    t_s: float
    samples: np.ndarray
    last: bool = False
    """True for the track's final chunk (its stream is closed)."""


def diffuse_coherence(positions_m: np.ndarray, freqs_hz: np.ndarray) -> np.ndarray:
    """(F, M, M) spatial coherence of a spherically diffuse field: sinc(2 f d / c)."""
    d = np.linalg.norm(positions_m[:, None, :] - positions_m[None, :, :], axis=-1)
    return np.sinc(2.0 * freqs_hz[:, None, None] * d[None] / SPEED_OF_SOUND_M_S)


def steering(positions_m: np.ndarray, freqs_hz: np.ndarray, azimuth_deg: float, elevation_deg: float,
             distance_m: float | None = None) -> np.ndarray:
    """(F, M) steering vector relative to mic 0 (its value there is 1): the beamformer's output is the talker's
    direct sound as mic 0 hears it. Far-field (a plane wave) without ``distance_m``; with it, a spherical wave
    (delays and 1/r levels) from a point that far from the array's centre in the array's plane (the horizontal
    distance the decode reports) and at ``elevation_deg`` above it."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    u = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    if distance_m is None:
        tau = -(positions_m @ u) / SPEED_OF_SOUND_M_S
        level = np.ones(len(positions_m))
    else:
        src = distance_m / max(math.cos(el), 0.1) * u
        r = np.linalg.norm(src[None, :] - (positions_m - positions_m.mean(axis=0)), axis=1)
        tau = r / SPEED_OF_SOUND_M_S
        level = r[0] / r
    tau = tau - tau[0]
    return level[None, :] * np.exp(-2j * np.pi * freqs_hz[:, None] * tau[None, :])


def lcmv_weights(inv_noise: np.ndarray | None, a: np.ndarray, others: Sequence[np.ndarray], max_coherence: float,
                 noise: np.ndarray | None = None) -> np.ndarray:
    """(F, M) weights: unit gain towards ``a`` (F, M), zero towards each of ``others`` where it differs
    enough from ``a`` (per frequency, |a^H b| / M below ``max_coherence``), least noise (``inv_noise``, or
    ``noise`` itself, solved for without an inverse)."""
    n_f, m = a.shape
    c = np.stack([a, *others], axis=-1)  # (F, M, K)
    if others:
        coh = np.abs(np.einsum("fm,fmk->fk", a.conj(), c[:, :, 1:])) / m
        c[:, :, 1:] *= (coh < max_coherence)[:, None, :]
    ic = inv_noise @ c if noise is None else np.linalg.solve(noise, c)  # (F, M, K)
    g = np.conj(c).transpose(0, 2, 1) @ ic  # (F, K, K)
    k = c.shape[-1]
    eps = 1e-6 * np.real(np.trace(g, axis1=1, axis2=2))[:, None, None] / k + 1e-12
    e1 = np.zeros((n_f, k, 1), dtype=complex)
    e1[:, 0, 0] = 1.0
    return (ic @ np.linalg.solve(g + eps * np.eye(k), e1))[:, :, 0]


@dataclass
class _Track:
    id: int
    azimuth_deg: float
    elevation_deg: float
    start_frame: int
    start_s: float
    last_seen: int  # sample count when last listed
    w: np.ndarray | None = None
    tail: np.ndarray | None = None  # the overlap-add's pending samples
    next_frame: int = 0  # first frame not yet added to its output
    cov: np.ndarray | None = None  # (F, M, M) interference covariance, weighted sum
    cov_weight: np.ndarray | None = None  # (F,) sum of the weights
    noise_gain: np.ndarray | None = None  # (F,) w^H Gamma w: how a diffuse floor comes through w
    model: np.ndarray | None = None  # (F, M, M) spatial model from the direction (steering + diffuse)
    model_dir: tuple[float, float, float | None] | None = None
    steer: np.ndarray | None = None  # (F, M) steering vector towards steer_dir
    steer_dir: tuple[float, ...] | None = None
    distance_m: float | None = None  # near_field: the decode's distance, when it moved enough (NEAR_MOVE); else None
    acg: np.ndarray | None = None  # (F, M, M) spatial class scatter learnt online, weighted sum
    acg_weight: np.ndarray | None = None  # (F,)
    prior: np.ndarray | None = None  # (F,) mixture weight of the class
    scov: np.ndarray | None = None  # (F, M, M) mask-weighted target covariance, power-weighted sum (mwf/mvdr)
    scov_weight: np.ndarray | None = None  # (F,) sum of the target mask
    ncov: np.ndarray | None = None  # (F, M, M) (1 - mask)-weighted covariance, power-weighted sum
    nn_state: Any = None  # learned: what its features carry from block to block (separate_nn.TrackState)


class Separator:
    """Streaming per-track beamformer for one array (mic positions in metres, model order)."""

    def __init__(self, positions_m: np.ndarray | Sequence[Sequence[float]], sample_rate_hz: int,
                 settings: SeparateSettings | None = None) -> None:
        self.settings = settings or SeparateSettings()
        self.positions = np.asarray(positions_m, dtype=np.float64)
        self.n_mics = len(self.positions)
        self.sample_rate_hz = int(sample_rate_hz)
        self._nfft = int(self.settings.nfft)
        self._hop = self._nfft // 2
        self._r = self._hop / HOP  # per-frame constants were chosen at HOP: scale them to the same time spans
        self._block = max(1, int(round(BLOCK_FRAMES / self._r)))
        self._min_seg = max(1, int(round(24 / self._r)))
        self._a = (0.8, 0.2) if self._r == 1 else (0.8 ** self._r, 1 - 0.8 ** self._r)  # noise floor smoothing
        self.freqs_hz = np.fft.rfftfreq(self._nfft, 1.0 / self.sample_rate_hz)
        self._win = np.sqrt(np.hanning(self._nfft + 1)[:self._nfft])  # periodic: squares sum to 1 at half overlap
        s = self.settings
        self._gamma = diffuse_coherence(self.positions, self.freqs_hz)
        self._eye = np.eye(self.n_mics)
        if (len(self.freqs_hz) - 1) % s.coarse_bins:
            raise SeparateConfigError(f"[separate] coarse_bins = {s.coarse_bins}: must divide nfft / 2 = "
                                      f"{len(self.freqs_hz) - 1}")
        self._coarse = slice(None, None, s.coarse_bins) if s.coarse_bins > 1 else slice(None)
        self._backfill_frames = int(math.ceil(s.backfill_s * self.sample_rate_hz / self._hop))
        self._wpe_delay = max(1, int(round(s.wpe_delay / self._r)))
        # the first tap whose prediction counts as late reverberation (reverb_weight)
        self._late_tap = max(0, max(1, int(round(s.reverb_delay / self._r))) - self._wpe_delay)
        nc = min(s.wpe_channels or self.n_mics, self.n_mics)
        self._wpe_ch = None if nc == self.n_mics else \
            np.unique(np.round(np.linspace(0, self.n_mics, nc, endpoint=False)).astype(int))  # None: all
        band = np.flatnonzero((self.freqs_hz >= s.wpe_min_hz) & (self.freqs_hz <= s.wpe_max_hz))
        self._wpe_bins = slice(int(band[0]), int(band[-1]) + 1) if len(band) else slice(0, 0)  # contiguous
        self._wpe_eye = np.eye((nc if self._wpe_ch is None else len(self._wpe_ch)) * s.wpe_taps, dtype=np.float32)
        self._wpe_rp: np.ndarray | None = None  # (Fb, L, L + M) power-weighted regressor covariance R (L = channels
        # x taps) and regressor-frame correlation P, side by side
        self._wpe_g: np.ndarray | None = None  # (Fb, L, M) prediction filter
        self._wpe_frames = 0.0  # frames in the statistics (with forgetting)
        self._wpe_blocks = 0  # blocks since the prediction started (the round robin of solves)
        self._net = None
        if s.learned and s.mask == "spatial":  # it reads the spatial posteriors
            from .separate_nn import DEFAULT_WEIGHTS, PostfilterNet
            self._net = PostfilterNet.load_setting(s.learned_weights or DEFAULT_WEIGHTS, s.learned_weights)
        self.observer = None
        """For experiments: called with every rendered block (``_render``'s evidence) before the post-filter."""
        self.reset()

    def reset(self) -> None:
        """Forget the audio and all tracks (a capture gap); the noise model is kept."""
        self._buf = np.zeros((0, self.n_mics), dtype=np.float64)
        self._buf_start = 0  # sample index of _buf[0]
        self._n = 0  # samples received
        self._frame = 0  # next frame to analyse: samples [frame*hop, frame*hop + nfft)
        self._spec: list[np.ndarray] = []  # recent (F, M) spectra, for a new track's back-fill
        self._spec_first = 0
        self._der: list[np.ndarray] = []  # wpe_use = 'masks': the same frames' dereverberated bins (Fb, M)
        self._late: list[np.ndarray] = []  # reverb_delay later than wpe_delay: their late reverberation (Fb, M)
        self._t0_s = 0.0  # stream time of sample 0
        self._tracks: dict[int, _Track] = {}
        self._listed = False
        if not hasattr(self, "_noise"):
            self._noise = self._gamma.astype(complex)
            self._noise_frames = 0
            self._noise_cache: np.ndarray | None = None  # _noise_model()
            self._psd = None  # per-bin noise floor (minimum of smoothed power)
            self._smooth = None
            self._mins: list[np.ndarray] = []
            self._acg: np.ndarray | None = None  # the noise class of the spatial model
            self._acg_weight: np.ndarray | None = None
            self._prior: np.ndarray | None = None
        self._dirty = True  # the noise model changed since the weights were made
        self._messages = 0
        self._classes: tuple[list[int], np.ndarray, np.ndarray] | None = None  # ids, B^-1, log det B
        # dereverberation: the last observed frames (the audio before a gap predicts nothing after it); the
        # statistics and filter are kept, the room is the same
        nb = self._wpe_bins.stop - self._wpe_bins.start
        self._wpe_hist = np.zeros((self._wpe_delay + self.settings.wpe_taps - 1, nb, self.n_mics), dtype=np.complex64)

    # ------------------------------------------------------------------ public
    def push(self, x: np.ndarray, events: Sequence[tuple[int, Mapping[str, Any]]] = ()) -> list[Chunk]:
        """Feed (n, n_mics) audio and the messages of windows ending in it (index into ``x`` just after
        the window's last sample, message); returns the tracks' new audio."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_mics:
            raise ValueError(f"audio must be (n, {self.n_mics}), got {x.shape}")
        out: list[Chunk] = []
        pos = 0
        for idx, msg in sorted(events, key=lambda e: e[0]):
            idx = int(min(max(idx, pos), len(x)))
            self._append(x[pos:idx], out, cut=True)
            pos = idx
            self._message(msg, out)
        self._append(x[pos:], out)
        return out

    def close(self) -> list[Chunk]:
        """End of stream: the rest of every track's audio, each stream closed."""
        out: list[Chunk] = []
        self._append(np.zeros((0, self.n_mics)), out, cut=True)  # the frames after the last message
        for tr in list(self._tracks.values()):
            self._emit_tail(tr, out)
            self._drop(tr, out)
        return out

    # ------------------------------------------------------------------ internals
    def _time(self, sample: int) -> float:
        return self._t0_s + sample / self.sample_rate_hz

    def _append(self, x: np.ndarray, out: list[Chunk], cut: bool = False) -> None:
        """Buffer ``x``; analyse whole blocks of frames (BLOCK_FRAMES at 512), and with ``cut`` (a message's window
        ends here, or the stream does) every complete frame."""
        if len(x):
            self._buf = np.concatenate([self._buf, x])
            self._n += len(x)
        avail = (self._n - self._nfft) // self._hop + 1 - self._frame if self._n >= self._nfft else 0
        while avail >= self._block:
            self._analyse(self._block, out)
            avail -= self._block
        if cut and avail > 0:
            self._analyse(avail, out)

    def _analyse(self, n_frames: int, out: list[Chunk]) -> None:
        """STFT of the next ``n_frames`` frames; learn the noise; render every track."""
        first = self._frame
        starts = (first + np.arange(n_frames)) * self._hop - self._buf_start
        frames = self._buf[starts[:, None] + np.arange(self._nfft)[None, :]]  # (T, nfft, M)
        spec = np.fft.rfft(frames * self._win[None, :, None], axis=1)  # (T, F, M)
        der = late = None  # (T, Fb, M) the dereverberated bins, for the masks alone; the late reverberation
        if self.settings.dereverb and self._wpe_bins.stop > self._wpe_bins.start:
            der, late = self._dereverb(spec)
            if self.settings.wpe_use == "all":
                spec = spec.copy()
                spec[:, self._wpe_bins] = der
                der = None
        self._frame += n_frames
        keep_from = self._frame * self._hop - self._buf_start
        self._buf = self._buf[keep_from:]
        self._buf_start += keep_from
        self._learn_noise(spec)
        self._spec.extend(spec)
        if der is not None:
            self._der.extend(der)
            if late is not None:
                self._late.extend(late)
        drop = len(self._spec) - self._backfill_frames
        if drop > 0:
            del self._spec[:drop]
            del self._der[:drop]
            del self._late[:drop]
            self._spec_first += drop
        if self._tracks:
            self._render(first, spec, out, der=der, late=late)

    def _dereverb(self, spec: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Online multichannel WPE over the (T, F, M) frames' dereverberated bins: (T, Fb, M), each mic minus
        its late reverberation, predicted from the observed frames ``wpe_delay`` .. ``wpe_delay + wpe_taps - 1``
        before (a filter solved from the previous blocks' statistics: causal); then the statistics learn these
        frames, weighted by 1 / their dereverberated power. Second: the prediction of the taps from ``reverb_delay``
        on (T, Fb, M), where the post-filter wants it and it is not the whole prediction (else None)."""
        s = self.settings
        t_n = len(spec)
        d_, k_ = self._wpe_delay, s.wpe_taps
        h = d_ + k_ - 1
        b = self._wpe_bins
        x = spec[:, b].astype(np.complex64)  # (T, Fb, M); single precision: the same SI-SDR
        obs = np.concatenate([self._wpe_hist, x])  # (h + T, Fb, M)
        self._wpe_hist = obs[len(obs) - h:]
        sub = obs if self._wpe_ch is None else obs[:, :, self._wpe_ch]
        # regressor of frame t: the frames t - D - k, k = 0 .. K-1, every predicting channel; then the frame
        z = np.concatenate([sub[h - d_ - k:h - d_ - k + t_n] for k in range(k_)] + [x], axis=2)  # (T, Fb, L + M)
        z = z.transpose(1, 0, 2)  # (Fb, T, L + M)
        l_ = z.shape[2] - self.n_mics
        xt, x = z[:, :, :l_], z[:, :, l_:]
        d = x if self._wpe_g is None else x - xt @ self._wpe_g.conj()
        late = None
        if self._late_tap and s.reverb_weight > 0 and s.wpe_use == "masks":
            c0 = self._late_tap * (l_ // k_)
            late = np.zeros_like(x) if self._wpe_g is None or c0 >= l_ else xt[:, :, c0:] @ self._wpe_g[:, c0:].conj()
            late = late.transpose(1, 0, 2)
        lam = s.wpe_forget ** self._r
        floor = self._psd[b, None] if self._psd is not None else 0.0
        power = np.maximum(np.mean(d.real ** 2 + d.imag ** 2, axis=2), floor) + 1e-12  # (Fb, T)
        wgt = ((lam ** np.arange(t_n - 1, -1, -1))[None, :] / power).astype(np.float32)  # (Fb, T)
        rp = (xt * wgt[:, :, None]).transpose(0, 2, 1) @ z.conj()  # (Fb, L, L + M): [R | P] of these frames
        keep = lam ** t_n
        self._wpe_rp = rp if self._wpe_rp is None else keep * self._wpe_rp + rp
        self._wpe_frames = keep * self._wpe_frames + float(np.sum(lam ** np.arange(t_n)))
        if self._wpe_frames >= WPE_MIN_FRAMES / self._r:
            # a share of the bins per block (round robin): each bin's filter is re-solved every WPE_SOLVE_EVERY
            # blocks, the solves being most of the cost
            sel = slice(None) if self._wpe_g is None else slice(self._wpe_blocks % WPE_SOLVE_EVERY, None,
                                                                 WPE_SOLVE_EVERY)
            if self._wpe_g is None:
                self._wpe_g = np.zeros((len(z), l_, self.n_mics), dtype=np.complex64)
            rr = self._wpe_rp[sel, :, :l_]
            load = 1e-3 * np.einsum("fll->f", rr).real / l_ + 1e-20
            self._wpe_g[sel] = np.linalg.solve(rr + load[:, None, None] * self._wpe_eye, self._wpe_rp[sel, :, l_:])
            self._wpe_blocks += 1
        return d.transpose(1, 0, 2), late

    def _learn_noise(self, spec: np.ndarray) -> None:
        p = np.mean(np.abs(spec) ** 2, axis=2)  # (T, F)
        for row in p:  # minimum statistics: noise floor per bin over about 1.5 s
            self._smooth = row if self._smooth is None else self._a[0] * self._smooth + self._a[1] * row
            if not self._mins or self._frame_count % self._min_seg == 0:
                self._mins.append(self._smooth.copy())
                self._mins = self._mins[-4:]
            else:
                self._mins[-1] = np.minimum(self._mins[-1], self._smooth)
            self._frame_count += 1
        self._psd = 1.5 * np.min(self._mins, axis=0)
        if not self._listed:
            # per frame: noise <- lam noise + (1 - lam) x x^H / (|x|^2 / M); the block's frames in one product
            lam = self.settings.noise_forget ** self._r
            t_n = len(spec)
            wgt = (1 - lam) * lam ** np.arange(t_n - 1, -1, -1)[:, None] / (p + 1e-20)  # (T, F)
            xf = spec.transpose(1, 2, 0)  # (F, M, T)
            self._noise = lam ** t_n * self._noise + (xf * wgt.T[:, None, :]) @ xf.conj().transpose(0, 2, 1)
            self._noise_frames += t_n
            self._noise_cache = None
            self._dirty = True

    _frame_count = 0

    @staticmethod
    def _normalized(cov: np.ndarray) -> np.ndarray:
        tr = np.einsum("fmm->f", cov).real / cov.shape[1]
        return cov / (tr[:, None, None] + 1e-20)

    def _message(self, msg: Mapping[str, Any], out: list[Chunk]) -> None:
        now = self._n
        self._t0_s = float(msg["t_s"]) - now / self.sample_rate_hz
        listed = [s for s in msg.get("sources", ()) if s.get("id") is not None]
        self._listed = bool(listed)
        changed = False
        for s in listed:
            el = s.get("elevation_deg") or 0.0
            tr = self._tracks.get(s["id"])
            if tr is None:
                first = max(self._spec_first, self._frame - self._backfill_frames)
                tr = _Track(s["id"], float(s["azimuth_deg"]), float(el), first, self._time(first * self._hop), now,
                            next_frame=first, tail=np.zeros(self._nfft - self._hop), distance_m=self._distance(s))
                self._tracks[tr.id] = tr
                changed = True
            else:
                changed |= abs(((tr.azimuth_deg - s["azimuth_deg"] + 180) % 360) - 180) > MOVE_DEG[0] \
                    or abs(tr.elevation_deg - el) > MOVE_DEG[1]
                tr.azimuth_deg, tr.elevation_deg, tr.last_seen = float(s["azimuth_deg"]), float(el), now
                dist = self._distance(s)
                if dist is not None and (tr.distance_m is None or abs(math.log(dist / tr.distance_m)) > NEAR_MOVE):
                    tr.distance_m = dist
                    changed = True
        hold = int(self.settings.hold_s * self.sample_rate_hz)
        for tr in [t for t in self._tracks.values() if now - t.last_seen > hold]:
            self._emit_tail(tr, out)
            self._drop(tr, out)
            changed = True
        self._messages += 1
        if changed or self._dirty or (self.settings.adapt_forget > 0 and self._tracks
                                      and self._messages % WEIGHTS_EVERY == 0):
            self._weights()
        # a new track: its back-filled frames, beamformed with the weights it has now
        late = [t for t in self._tracks.values() if t.next_frame < self._frame]
        if late:
            first = min(t.next_frame for t in late)
            spec = np.stack(self._spec[first - self._spec_first:])
            der = np.stack(self._der[first - self._spec_first:]) if self._der else None
            rev = np.stack(self._late[first - self._spec_first:]) if self._late else None
            self._render(first, spec, out, only={t.id for t in late}, der=der, late=rev)

    def _distance(self, source: Mapping[str, Any]) -> float | None:
        """The source's distance for near-field steering (clipped to NEAR_RANGE_M), or None (far-field)."""
        d = source.get("distance_m")
        if not self.settings.near_field or d is None or not math.isfinite(float(d)):
            return None
        return float(np.clip(float(d), *NEAR_RANGE_M))

    def _weights(self) -> None:
        s = self.settings
        self._dirty = False
        # before a second of silence, lean on the diffuse model; then on what was measured
        model = self._noise_model()
        sub = self._coarse  # the bins the weights are solved at (the rest interpolated)
        loaded = model[sub] + s.loading * self._eye
        steer = {k: self._steering(t) for k, t in self._tracks.items()}
        for k, t in self._tracks.items():
            others = [steer[j][sub] for j, o in self._tracks.items() if j != k and
                      abs(((o.azimuth_deg - t.azimuth_deg + 180) % 360) - 180) >= s.null_min_deg]
            own = loaded
            if t.cov is not None:
                # what this track's post-filter called interference, with the noise model as a prior
                prior = ADAPT_PRIOR_FRAMES / self._r
                cov = (t.cov + prior * model[sub]) / (t.cov_weight + prior)[:, None, None]  # learnt at ``sub``
                own = self._normalized(cov) + s.loading * self._eye
            t.w = self._interp(lcmv_weights(None, steer[k][sub], others, s.null_max_coherence, noise=own))
            if s.beamformer != "lcmv" and t.scov is not None:
                t.w = self._mask_weights(t, t.w)
            if s.mask == "beams":
                t.noise_gain = np.einsum("fm,fmn,fn->f", t.w.conj(), self._gamma, t.w).real
            if s.mask == "spatial" and (t.model_dir is None or abs(((t.model_dir[0] - t.azimuth_deg + 180) % 360)
                                                                   - 180) > 1.0
                                        or abs(t.model_dir[1] - t.elevation_deg) > 1.0
                                        or t.model_dir[2] != t.distance_m):
                a = steer[k]
                t.model = self._normalized(a[:, :, None] * a[:, None, :].conj() + s.spatial_spread * self._gamma)
                t.model_dir = (t.azimuth_deg, t.elevation_deg, t.distance_m)
        if s.mask == "spatial" and (self._classes is None or self._classes[0] != list(self._tracks)
                                    or self._messages % (SPATIAL_EVERY * WEIGHTS_EVERY) == 0):
            self._spatial_classes(model + s.loading * self._eye)

    def _steering(self, t: _Track) -> np.ndarray:
        """(F, M) the track's steering vector, made again only when its direction (or distance) changed."""
        key = (t.azimuth_deg, t.elevation_deg, t.distance_m)
        if t.steer_dir != key:
            t.steer = steering(self.positions, self.freqs_hz, t.azimuth_deg, t.elevation_deg, t.distance_m)
            t.steer_dir = key
        return t.steer

    def _mask_weights(self, t: _Track, w_lcmv: np.ndarray) -> np.ndarray:
        """(F, M) mask-based weights for track ``t`` (settings.beamformer), blended per bin with ``w_lcmv``
        by how much of the track's mask has been seen (MASK_TRUST_FRAMES)."""
        s = self.settings
        m = self.n_mics
        floor = self._psd if self._psd is not None else np.full(len(self.freqs_hz), 1e-12)
        prior = ADAPT_PRIOR_FRAMES / self._r * floor[:, None, None] * self._noise_model()
        phi_n = t.ncov + prior
        phi_n = phi_n + s.loading * (np.einsum("fmm->f", phi_n).real / m)[:, None, None] * self._eye
        phi_s = t.scov
        if s.beamformer == "mwf":
            w = np.linalg.solve(phi_s + s.mwf_mu * phi_n, phi_s[:, :, :1])[:, :, 0]
        else:
            num = np.linalg.solve(phi_n, phi_s)  # (F, M, M)
            tr = np.einsum("fmm->f", num)
            w = num[:, :, 0] / (tr[:, None] + 1e-20)
        trust = s.mask_share * np.clip(t.scov_weight / MASK_TRUST_FRAMES / self._r, 0.0, 1.0)[:, None]
        return trust * w + (1.0 - trust) * w_lcmv

    def _spatial_classes(self, noise_model: np.ndarray) -> None:
        """The spatial mixture's classes (tracks, then noise): complex angular central Gaussians, each the
        steering-vector model (noise: the noise model) blended with what the class learnt online."""
        prior = self.settings.spatial_prior_frames / self._r
        ids = list(self._tracks)
        sub = self._coarse
        models = [(self._tracks[k].model[sub], self._tracks[k].acg, self._tracks[k].acg_weight) for k in ids]
        noise = self._normalized(self._normalized(noise_model[sub]) + self.settings.spatial_spread * self._gamma[sub])
        models.append((noise, self._acg, self._acg_weight))
        bs = []
        for b0, acc, wgt in models:
            b = b0 if acc is None else self._normalized((acc + prior * b0) / (wgt + prior)[:, None, None])
            bs.append(b + 1e-4 * self._eye)
        b = np.stack(bs)  # (C, Fs, M, M)
        inv = np.linalg.inv(b).astype(np.complex64)
        logdet = np.linalg.slogdet(b)[1]
        if sub != slice(None):
            inv, logdet = self._interp(inv, axis=1), self._interp(logdet, axis=1)
        self._classes = (ids, inv, logdet)

    def _interp(self, x: np.ndarray, axis: int = 0) -> np.ndarray:
        """``x`` solved at every ``coarse_bins``-th bin (along ``axis``), linearly interpolated to every bin."""
        step = self.settings.coarse_bins
        if step == 1:
            return x
        x = np.moveaxis(x, axis, 0)
        if step == 2:
            out = np.empty((2 * len(x) - 1,) + x.shape[1:], dtype=x.dtype)
            out[::2] = x
            out[1::2] = x[:-1]
            out[1::2] += x[1:]
            out[1::2] *= 0.5
            return np.moveaxis(out, 0, axis)
        idx = np.arange(len(self.freqs_hz))
        lo = np.minimum(idx // step, len(x) - 1)
        hi = np.minimum(lo + 1, len(x) - 1)
        frac = ((idx % step) / step).reshape((-1,) + (1,) * (x.ndim - 1))
        out = (1 - frac) * x[lo] + frac * x[hi]
        return np.moveaxis(out.astype(x.dtype), 0, axis)

    def _spatial_masks(self, ids: list[int], spec: np.ndarray, learn: bool,
                       der: np.ndarray | None = None) -> np.ndarray:
        """(K, T, F) each track's posterior per bin under the spatial mixture (one E-step with the classes
        made at the last weight update); ``learn``: add the frames to each class's scatter (online M-step);
        ``der`` (T, Fb, M): the dereverberated bins, in place of the frames' own."""
        if self._classes is None or self._classes[0] != ids:
            self._spatial_classes(self._noise_model() + self.settings.loading * self._eye)
        _, binv, logdet = self._classes
        m = self.n_mics
        z = spec.transpose(1, 0, 2).astype(np.complex64)  # (F, T, M); single precision is plenty for masks
        if der is not None:
            z[self._wpe_bins] = der.transpose(1, 0, 2)
        z /= np.sqrt(np.sum(z.real ** 2 + z.imag ** 2, axis=2, keepdims=True)) + 1e-20
        q = np.sum((z.conj()[None] @ binv) * z[None], axis=3).real + 1e-10  # (C, F, T): z^H B^-1 z
        trs = [self._tracks[k] for k in ids]
        n_c, n_f = len(ids) + 1, len(self.freqs_hz)
        pri = np.stack([t.prior if t.prior is not None else np.full(n_f, 1.0 / n_c) for t in trs]
                       + [self._prior if self._prior is not None else np.full(n_f, 1.0 / n_c)])
        pri = pri / pri.sum(axis=0, keepdims=True)
        ll = np.log(pri)[:, :, None] - logdet[:, :, None] - m * np.log(q)  # (C, F, T)
        ll -= ll.max(axis=0, keepdims=True)
        g = np.exp(ll)
        g /= g.sum(axis=0, keepdims=True)
        lam = self.settings.adapt_forget ** self._r
        if learn and lam > 0:
            t_n = len(spec)
            decay = lam ** np.arange(t_n - 1, -1, -1)  # (T,)
            gd = g * decay
            sub = self._coarse  # the classes are made at these bins only
            zs, gs = z[sub], gd[:, sub]
            scat = ((zs * (gs / q[:, sub])[..., None].astype(np.float32)).transpose(0, 1, 3, 2) @ zs.conj()[None]) * m
            wsum = gs.sum(axis=2)  # (C, Fs)
            keep = lam ** t_n
            newp = keep * pri + (1 - keep) * g.mean(axis=2)
            newp = np.maximum(newp, 0.02)
            for ci, t in enumerate([*trs, None]):
                acc, wgt = (t.acg, t.acg_weight) if t is not None else (self._acg, self._acg_weight)
                acc = scat[ci] if acc is None else keep * acc + scat[ci]
                wgt = wsum[ci] if wgt is None else keep * wgt + wsum[ci]
                if t is not None:
                    t.acg, t.acg_weight, t.prior = acc, wgt, newp[ci]
                else:
                    self._acg, self._acg_weight, self._prior = acc, wgt, newp[ci]
        return g[:-1].transpose(0, 2, 1)  # (K, T, F)

    def _noise_model(self) -> np.ndarray:
        if self._noise_cache is None:  # made again only when the noise covariance learnt
            trust = min(1.0, self._noise_frames / (62.0 / self._r))
            self._noise_cache = trust * self._normalized(self._noise) + (1 - trust) * self._gamma
        return self._noise_cache

    def _adapt(self, ids: list[int], spec: np.ndarray, gains: np.ndarray, masks: np.ndarray) -> None:
        """Each track's interference covariance from the frames just rendered, weighted by 1 - its gain (for the
        mask-based beamformers instead: its power-weighted target and rest covariances, weighted by ``masks``)."""
        lam = self.settings.adapt_forget ** self._r
        if lam <= 0:
            return
        t_n = len(spec)
        decay = lam ** np.arange(t_n - 1, -1, -1)  # (T,)
        if self.settings.beamformer != "lcmv":
            xf = spec.transpose(1, 2, 0).astype(np.complex64)  # (F, M, T)
            xh = xf.conj().transpose(0, 2, 1)
            keep = lam ** t_n
            cx = (xf * decay.astype(np.float32)[None, None, :]) @ xh  # (F, M, M): every frame
            for ki, k in enumerate(ids):
                tr = self._tracks[k]
                ws = (masks[ki] * decay[:, None]).astype(np.float32)  # (T, F)
                cs = (xf * ws.T[:, None, :]) @ xh
                cn = cx - cs  # weighted by 1 - mask
                if tr.scov is None:
                    tr.scov, tr.ncov = cs.astype(complex), cn.astype(complex)
                    tr.scov_weight = ws.sum(axis=0).astype(float)
                else:
                    tr.scov = keep * tr.scov + cs
                    tr.scov_weight = keep * tr.scov_weight + ws.sum(axis=0)
                    tr.ncov = keep * tr.ncov + cn
            return  # their LCMV (young tracks) keeps the noise model: its learnt interference measured the same
        spec = spec[:, self._coarse]  # the weights are made at these bins only
        xn = spec / (np.sqrt(np.mean(np.abs(spec) ** 2, axis=2, keepdims=True)) + 1e-20)  # level-free frames
        xf = xn.transpose(1, 2, 0).astype(np.complex64)  # (F, M, T); single: the same SI-SDR (within 0.01 dB), less CPU
        xh = xf.conj().transpose(0, 2, 1)  # (F, T, M)
        for ki, k in enumerate(ids):
            tr = self._tracks[k]
            wgt = (1.0 - gains[ki][:, self._coarse]) * decay[:, None]  # (T, Fs)
            c = (xf * wgt.T[:, None, :].astype(np.float32)) @ xh  # (F, M, M): sum over frames of wgt x x^H
            if tr.cov is None:
                tr.cov, tr.cov_weight = c, wgt.sum(axis=0)
            else:
                tr.cov = lam ** t_n * tr.cov + c
                tr.cov_weight = lam ** t_n * tr.cov_weight + wgt.sum(axis=0)

    def _render(self, first: int, spec: np.ndarray, out: list[Chunk], only: set[int] | None = None,
                der: np.ndarray | None = None, late: np.ndarray | None = None) -> None:
        """Beamform frames ``first ..`` (T, F, M) for every track, post-filter, overlap-add; emit (``der``: the
        frames' dereverberated bins, for the spatial masks; ``late``: their late reverberation where it is not
        the frames minus ``der``)."""
        ids = list(self._tracks)
        w = np.stack([self._tracks[k].w for k in ids])  # (K, F, M)
        y = np.einsum("kfm,tfm->ktf", w.conj(), spec)  # (K, T, F)
        out_gains = None
        if self.settings.mask == "spatial":
            masks = self._spatial_masks(ids, spec, only is None, der)
            gains = np.maximum(masks, self.settings.gain_min)
            if self.settings.reverb_weight > 0 and der is not None:
                out_gains = self._reverb_gains(w, spec[:, self._wpe_bins] - der if late is None else late, y, masks)
        else:
            gains = self._postfilter(y, ids)
            masks = gains
        if only is None:
            self._adapt(ids, spec, gains, masks)  # the beams learn from the masks alone
        final = gains if out_gains is None else out_gains
        if self._net is not None or self.observer is not None:
            final = self._learned_gains(ids, first, y, masks, final, spec, only)
        if self.settings.postfilter:
            y = y * final
        frames = np.fft.irfft(y, n=self._nfft, axis=2) * self._win  # (K, T, nfft)
        for ki, k in enumerate(ids):
            tr = self._tracks[k]
            if only is not None and k not in only:
                continue
            skip = max(0, tr.next_frame - first)
            f = frames[ki, skip:]
            if not len(f):
                continue
            t_first = first + skip
            n = len(f)
            acc = np.zeros((n + 1) * self._hop)
            acc[:self._nfft - self._hop] += tr.tail
            for i in range(n):
                acc[i * self._hop:i * self._hop + self._nfft] += f[i]
            tr.tail = acc[n * self._hop:].copy()
            tr.next_frame = t_first + n
            out.append(Chunk(k, tr.start_s, self._time(t_first * self._hop), acc[:n * self._hop].astype(np.float32)))

    def _learned_gains(self, ids: list[int], first: int, y: np.ndarray, masks: np.ndarray, gains: np.ndarray,
                       spec: np.ndarray, only: set[int] | None) -> np.ndarray:
        """(K, T, F) the learned network's gains (floored at ``gain_min``) for the tracks rendered now; the others
        keep ``gains``. Each rendered track's features continue from the frames it was last rendered at."""
        from .separate_nn import TrackState, features

        sel = [ki for ki, k in enumerate(ids) if only is None or k in only]
        if not sel:
            return gains
        states = []
        for ki, k in enumerate(ids):
            tr = self._tracks[k]
            if ki not in sel:
                states.append(TrackState())  # not rendered now: its features are not used, its state not moved
                continue
            if tr.nn_state is None:
                tr.nn_state = TrackState()
            states.append(tr.nn_state)
        match = None
        if self.observer is not None or self._net.needs_match:
            # how much of each bin's power across the mics arrives from the track's direction (its steering vector)
            a = np.stack([self._steering(self._tracks[k]) for k in ids]).astype(np.complex64)
            ds = np.einsum("kfm,tfm->ktf", a.conj(), spec.astype(np.complex64))
            p = np.sum(spec.real ** 2 + spec.imag ** 2, axis=2)
            match = (ds.real ** 2 + ds.imag ** 2) / (self.n_mics * p[None] + 1e-30)
        feats = features(y, masks, gains, spec[:, :, 0], self._psd, self.freqs_hz, states, match)[sel]
        if self.observer is not None:
            self.observer(self, [ids[ki] for ki in sel], first, y[sel], feats, spec)
        if self._net is None:
            return gains
        out = gains.copy()
        g = self.settings.gain_min
        out[sel] = g + (1.0 - g) * self._net(feats)
        return out

    def _reverb_gains(self, w: np.ndarray, pred: np.ndarray, y: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """(K, T, F) the spatial masks less, in the dereverberated bins, each beam's late reverberation share:
        WPE's prediction ``pred`` (T, Fb, M) of the frames' late reverberation through the track's weights ``w``."""
        s = self.settings
        b = self._wpe_bins
        r = np.einsum("kfm,tfm->ktf", w[:, b].conj().astype(np.complex64), pred.astype(np.complex64))
        pr = r.real ** 2 + r.imag ** 2
        yb = y[:, :, b]
        py = yb.real ** 2 + yb.imag ** 2
        if pr.shape[2] > 2:  # smoothed over 3 bins, as the beams mask is: one bin does not flip the gain
            pr[..., 1:-1] = (pr[..., :-2] + pr[..., 1:-1] + pr[..., 2:]) / 3.0
            py[..., 1:-1] = (py[..., :-2] + py[..., 1:-1] + py[..., 2:]) / 3.0
        g = masks.copy()
        g[:, :, b] = masks[:, :, b] - s.reverb_weight * pr / (py + 1e-20)
        return np.maximum(g, s.gain_min)

    def _postfilter(self, y: np.ndarray, ids: list[int]) -> np.ndarray:
        s = self.settings
        p = np.abs(y) ** 2  # (K, T, F)
        # the noise floor left in each output: the mic noise floor through that output's weights
        noise = (self._psd if self._psd is not None else 0.0) * \
            np.stack([self._tracks[k].noise_gain for k in ids])[:, None, :]
        # smooth over 3 bins so a single bin does not flip the gain
        ps = p.copy()
        ps[..., 1:-1] = (p[..., :-2] + p[..., 1:-1] + p[..., 2:]) / 3.0
        leak = s.interference_weight * (ps.sum(axis=0, keepdims=True) - ps)
        g = ps / (ps + leak + noise + 1e-20)
        return np.maximum(g, s.gain_min)

    def _emit_tail(self, tr: _Track, out: list[Chunk]) -> None:
        out.append(Chunk(tr.id, tr.start_s, self._time(tr.next_frame * self._hop),
                         tr.tail[:self._hop].astype(np.float32)))

    def _drop(self, tr: _Track, out: list[Chunk]) -> None:
        out.append(Chunk(tr.id, tr.start_s, self._time((tr.next_frame + 1) * self._hop), np.zeros(0, np.float32),
                         True))
        del self._tracks[tr.id]
        if self._tracks:
            self._weights()


class SeparatedAudio:
    """The pipeline's ``audio_listener``: a :class:`Separator` whose chunks go to a writer (anything with
    ``write(chunks)`` and ``close()``, e.g. :class:`TrackWriter`)."""

    def __init__(self, separator: Separator, writer: Any) -> None:
        self.separator = separator
        self.writer = writer
        self.audio_s = 0.0

    def push(self, x: np.ndarray, events: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        self.audio_s += len(x) / self.separator.sample_rate_hz
        self.writer.write(self.separator.push(x, events))

    def reset(self) -> None:
        self.writer.write(self.separator.close())
        self.separator.reset()

    def close(self) -> None:
        self.writer.write(self.separator.close())
        self.writer.close()


__all__ = ["Separator", "SeparateSettings", "SeparateConfigError", "Chunk", "TrackWriter", "SeparatedAudio",
           "steering", "lcmv_weights", "diffuse_coherence", "NFFT", "HOP"]
