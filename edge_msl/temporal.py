"""The one temporal decode: per-window network outputs in, the talkers present now out, with stable ids.

Used by the streaming pipeline (``edge-msl locate``, the daemon) and by ``train_tf.evaluate`` alike,
so what is measured is what ships. Pure Python + numpy; it must not read audio or run the model.

Per window (one hop): the network's regions above ``keep_threshold`` are candidates
(:func:`edge_msl.regions.decode`, optionally moved to a local SRP-PHAT peak); every track predicts
its direction with its angular velocity (a constant-velocity Kalman filter on the azimuth, so a
still talker gets a long memory and a walking one is followed); candidates are assigned to tracks
within a gate; a track is *listed* while its own evidence holds (a candidate at least
``keep_threshold`` in this window, or in the window before with ``miss_windows`` 1) and is
dropped from the list as soon as it falls (it keeps its id, unlisted, for ``resume_s`` in case
the talker resumes there). New talkers are born from candidates at ``birth_threshold`` (k of n
windows, or one very probable window). The reported azimuth is extrapolated to the window's end
(``lead_s``): the network sees the talker where they were on average over the window. The newest
hops of audio say where a talker is now better than a whole window: their SRP-PHAT peak near each
heard talker (``peak``, from the pipeline) is a second measurement of the talker's filters and
where a walker is reported, and lists at once a new talker it already hears strongly
(``now_*`` settings; off without them, as for a model whose sidecar lacks them). With
``resume_by_birth`` a talker confirmed near a paused one is that talker resuming.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from .regions import Detection, RegionLayout, decode, wrap180, wrap360
from .settings_check import Settings, SettingError, boolean, integer, invalid, number, setting


DecodeConfigError = SettingError
"""Temporal decode settings are invalid (the one settings error, under its former name)."""


@dataclass(frozen=True)
class DecodeSettings(Settings):
    """How per-window outputs become listed talkers (defaults chosen on validation scenes with
    ``benchmarks/scenes_bench.py``; each model's sidecar may set its own under ``decode.temporal``)."""

    birth_threshold: float = setting(0.45, number(0.0, 1.0, lo_open=True, hi_open=True, noun="a probability"))
    """A region at least this probable can start a new talker."""
    seed_threshold: float = setting(0.15, number(0.0, 1.0, lo_open=True, hi_open=True, noun="a probability"))
    """A region at least this probable starts a tentative talker, listed only if ``confirm_mean`` is met."""
    keep_threshold: float = setting(0.15, number(0.0, 1.0, lo_open=True, hi_open=True, noun="a probability"))
    """A listed talker stays listed while a region at its direction is at least this probable."""
    confirm_hits: int = setting(2, integer(1))
    """A new talker is listed once born in this many windows ..."""
    confirm_windows: int = setting(3, integer(1))
    """... of its first this-many windows (otherwise it was a false alarm)."""
    confirm_confidence: float = setting(0.6, number(0.0, 1.0, lo_open=True))
    """A new talker whose first window is at least this probable is listed at once (1: never)."""
    confirm_mean: float = setting(0.3, number(0.0, 1.0, lo_open=True))
    """... or once its evidence averaged over ``confirm_mean_windows`` windows (0 where it was
    missed) reaches this: a quiet talker, seldom above the birth threshold, is found from the
    evidence of several windows (1: never)."""
    confirm_mean_windows: int = setting(3, integer(1))
    """Windows over which that average is taken (a tentative talker lives at most this long)."""
    coast_s: float = setting(1.0, number(0.0, 60.0))
    """Internally, a walker who pauses is followed at their last speed this long (never listed)."""
    gate_open_deg_s: float = setting(30.0, number(0.0, 1e3))
    """The gate of a talker not heard for a while widens this fast (up to twice ``gate_deg``)."""
    miss_windows: int = setting(1, integer(0, 50))
    """Windows without evidence a listed talker survives (0: unlisted in the first such window)."""
    resume_s: float = setting(2.0, number(0.0, 3600.0))
    """An unlisted talker keeps its id this long; evidence at its direction lists it again."""
    resume_by_birth: bool = setting(False, boolean)
    """A new talker confirmed within the gate of a paused one (unlisted, still holding an id) is
    that talker resuming: it takes their id. Otherwise only a candidate at ``birth_threshold``
    brings a paused talker back, and a quieter return, or one a few degrees on after a walk,
    gets a new id."""
    hand_over_deg: float = setting(0.0, number(0.0, 180.0))
    """A new talker confirmed up to this many degrees ahead of a walker (listed or paused, along the
    walking hypothesis' motion), heard in the newest audio (``now_min_strength``) where the walker is
    no longer heard, is that walker: they sped up or turned faster than the windows follow. The
    walker's track moves there and keeps its id (0: off; needs the pipeline's ``peak``)."""
    hand_over_side_deg: float = setting(0.0, number(0.0, 180.0))
    """... and a new talker confirmed up to this many degrees either side of a listed talker who moves
    at least ``hand_over_side_rate_deg_s`` is that talker, on the same two conditions: a walker who
    turned round, or whose track has not yet taken the walking hypothesis (0: off)."""
    hand_over_side_rate_deg_s: float = setting(10.0, number(0.0, 1e4))
    """... the least angular speed of that talker's walking hypothesis, whichever hypothesis is reported
    (a talker standing still never hands their id to one who starts beside them)."""
    gate_deg: float = setting(25.0, number(0.0, 180.0, lo_open=True, hi_open=True, noun="degrees"))
    """A candidate farther than this from a track's predicted direction cannot continue it."""
    gate_opens_walking: bool = setting(False, boolean)
    """The gate opens (``gate_open_deg_s``) only around where the walking hypothesis puts a talker
    unheard for a while, not around where they stopped: a walker who went quiet is looked for ahead,
    and an echo on the other side of where they were is not taken for them."""
    merge_deg: float = setting(18.0, number(0.0, 180.0, lo_open=True, hi_open=True, noun="degrees"))
    """Two tracks closer than this are one talker: the younger one ends."""
    azimuth_noise_deg: float = setting(3.0, number(0.0, 90.0, lo_open=True))
    """Standard deviation of one window's azimuth at full confidence (grows as confidence falls)."""
    turn_rate_deg_s2: float = setting(50.0, number(0.0, 1e5))
    """How fast a talker's angular velocity may change (Kalman process noise, deg/s per sqrt s)."""
    max_rate_deg_s: float = setting(120.0, number(0.0, 1e4))
    """Cap on a track's angular speed."""
    drift_deg_s: float = setting(1.0, number(0.0, 1e3))
    """How fast a still talker's direction may drift (deg per sqrt s)."""
    now_needs_walk: bool = setting(True, boolean)
    """... and only while the walking hypothesis is the one reported."""
    walk_after: int = setting(3, integer(1, 1000))
    """Windows of evidence before a talker can be taken for walking."""
    model_forget: float = setting(0.8, number(0.0, 1.0))
    """Memory of the still/walking choice: weight of the past evidence per window."""
    lead_s: float = setting(0.25, number(0.0, 5.0))
    """The network's direction is where the talker was this long before the window's end (half the
    window): the filter follows a walker to the end of the window, where it reports them."""
    now_half_deg: float = setting(16.0, number(0.0, 90.0))
    """The SRP-PHAT peak of the newest audio (see ``now_hops``) is searched this many degrees either
    side of where a talker was; a walking talker is reported there (0: off; needs the pipeline's
    ``peak``)."""
    now_min_rate_deg_s: float = setting(10.0, number(0.0, 1e4))
    """... when the walking hypothesis moves at least this fast (a still talker keeps the
    filter's long average, which the newest hop alone would only make noisier)."""
    now_hops: int = setting(1, integer(1, 50))
    """Hops of the newest audio (the last ``now_hops`` of the window) whose SRP-PHAT peak says where a
    talker is now."""
    now_lag_s: float = setting(0.0, number(0.0, 1.0))
    """... where the talker was this long before the window's end (half of that audio's length); the
    reported direction adds the talker's angular velocity times this."""
    now_sd_deg: float = setting(0.0, number(0.0, 90.0))
    """That peak, within ``now_half_deg`` of a heard talker's direction, is also a measurement of
    the talker's track, this noisy (degrees; 0: only reported for walkers, never measured): the
    network's windows tell where a talker was on average, the newest audio how they move."""
    now_min_strength: float = setting(0.0, number(0.0, 1.0))
    """That peak is used only where its SRP-PHAT response is at least this share of a single plane
    wave's (the newest audio may hold only reverberation or another talker)."""
    now_sd_strength: float = setting(0.0, number(0.0, 1.0))
    """Where set, that noise is ``now_sd_deg`` for a peak this strong and scales with one over the
    peak's strength (half to three times ``now_sd_deg``): the peak's error falls as its strength rises."""
    now_confirm_strength: float = setting(0.0, number(0.0, 1.0))
    """A tentative talker is listed at once where the newest audio's SRP-PHAT peak near it is at
    least this strong (share of a plane wave's) and its window at least ``now_confirm_min``
    probable: a talker who has just started fills the newest hops before the network's window
    (0: off; needs the pipeline's ``peak``)."""
    now_confirm_min: float = setting(0.3, number(0.0, 1.0))
    """... the probability that confirmation needs."""
    hold_mean: float = setting(0.0, number(0.0, 1.0))
    """A listed talker whose evidence, averaged over the recent windows (``hold_alpha``; 0 where a
    window had none), falls below this is no longer listed (it keeps its id, as in a pause): a
    phantom fed by an echo now and then is dropped, a talker heard in most windows is not (0: off).
    A talker younger than ``1 / hold_alpha`` windows is exempt (a talker who just started is listed at once), and
    one back after that many windows unheard starts its average again at this bar (a talker who paused is listed
    at once, and stays listed while the average holds)."""
    hold_alpha: float = setting(0.2, number(0.0, 1.0, lo_open=True))
    """Weight of a new window in that average (0.2: about the last five windows)."""
    distance_alpha: float = setting(0.3, number(0.0, 1.0, lo_open=True))
    """Weight of a new window in the smoothed distance."""
    confidence_alpha: float = setting(0.6, number(0.0, 1.0, lo_open=True))
    """Weight of a new window in the published confidence."""

    KEY = "decode.{}"
    TABLE = "decode"

    def check_together(self) -> None:
        """keep_threshold at most birth_threshold, confirm_hits at most confirm_windows."""
        if self.keep_threshold > self.birth_threshold:
            raise invalid("decode.keep_threshold", self.keep_threshold,
                          f"a probability in (0, birth_threshold = {self.birth_threshold}]")
        if self.confirm_hits > self.confirm_windows:
            raise invalid("decode.confirm_hits", self.confirm_hits,
                          f"an integer in [1, confirm_windows = {self.confirm_windows}]")


@dataclass(frozen=True)
class Talker:
    """One talker at one instant, as the temporal decode reports it."""

    id: int
    """Stable id: unique, increasing in order of listing, never reused (also not after a reset)."""
    azimuth_deg: float
    """Direction at the end of the analysed window, [0, 360), counter-clockwise from the array's x axis."""
    distance_m: float
    """Smoothed horizontal distance from the array centre."""
    confidence: float
    """Smoothed region probability of the track's evidence."""
    region: int
    """Region of the latest evidence."""
    active: bool
    """True when the talker's evidence is in this window (False: listed through ``miss_windows``)."""
    rate_deg_s: float
    """Estimated angular velocity (counter-clockwise positive)."""


class _Kalman:
    """Azimuth (unwrapped, deg) and angular velocity (deg/s) of one talker under one motion model."""

    __slots__ = ("az", "rate", "p", "q", "score")

    def __init__(self, az: float, var_az: float, var_rate: float, q: float, lag_s: float) -> None:
        # after a first measurement of where the talker was lag_s ago, with nothing known before:
        # the direction now is that one plus lag_s times an unknown velocity
        self.az, self.rate = az, 0.0
        self.p = [[var_az + lag_s * lag_s * var_rate, lag_s * var_rate], [lag_s * var_rate, var_rate]]
        self.q = q  # white-acceleration spectral density (deg^2/s^3); 0: a still talker
        self.score = 0.0  # discounted log-likelihood of the evidence under this model

    def predict(self, dt: float) -> None:
        (a, b), (_, d) = self.p
        q = self.q
        self.p = [[a + 2 * dt * b + dt * dt * d + q * dt ** 3 / 3, b + dt * d + q * dt * dt / 2],
                  [b + dt * d + q * dt * dt / 2, d + q * dt]]
        self.az += self.rate * dt

    def update(self, az: float, r: float, lag_s: float, max_rate: float, forget: float | None) -> None:
        """One measurement ``az`` of where the talker was ``lag_s`` before the state's time."""
        (a, b), (_, d) = self.p
        innov = wrap180(az - (self.az - lag_s * self.rate))
        ph0, ph1 = a - lag_s * b, b - lag_s * d  # P H^T with H = [1, -lag_s]
        s = ph0 - lag_s * ph1 + r
        if forget is not None:
            self.score = forget * self.score - 0.5 * (innov * innov / s + math.log(s))
        k0, k1 = ph0 / s, ph1 / s
        self.az += k0 * innov
        self.rate = max(-max_rate, min(max_rate, self.rate + k1 * innov))
        self.p = [[a - k0 * ph0, b - k0 * ph1], [b - k0 * ph1, d - k1 * ph1]]


class _Track:
    __slots__ = ("still", "moving", "updates", "is_walking", "evidence_sum", "distance_m", "confidence", "region",
                 "id", "number", "windows", "hits", "misses", "last_t_s", "listed", "evidence", "support")

    def __init__(self, det: Detection, t_s: float, s: DecodeSettings) -> None:
        var = s.azimuth_noise_deg ** 2
        # two hypotheses, run side by side: a talker standing still (no velocity, a long memory)
        # and one walking (constant angular velocity with random turns); the one that explains
        # the recent evidence better is reported
        self.still = _Kalman(float(det.azimuth_deg), var, 0.0, 0.0, s.lead_s)
        self.moving = _Kalman(float(det.azimuth_deg), var, (0.5 * s.max_rate_deg_s) ** 2, s.turn_rate_deg_s2 ** 2,
                              s.lead_s)
        self.updates = 1
        self.is_walking = False
        self.evidence_sum = float(det.confidence)
        self.distance_m = float(det.distance_m)
        self.confidence = float(det.confidence)
        self.support = float(det.confidence)  # evidence averaged over recent windows, misses as 0
        self.region = int(det.region)
        self.id: int | None = None  # seniority, given at confirmation; None while tentative
        self.number: int | None = None  # the id users see, given when first listed
        self.windows = 1
        self.hits = 1 if det.confidence >= s.birth_threshold else 0
        self.misses = 0
        self.last_t_s = t_s
        self.listed = False
        self.evidence = True

    updates: int

    def walk_weight(self, s: DecodeSettings) -> float:
        """Posterior weight of the walking hypothesis (0 before ``walk_after`` updates)."""
        if self.updates < s.walk_after:
            return 0.0
        d = max(-30.0, min(30.0, self.moving.score - self.still.score))
        return 1.0 / (1.0 + math.exp(-d))

    @property
    def best(self) -> _Kalman:
        return self.moving if self.is_walking else self.still

    @property
    def az(self) -> float:
        return self.best.az

    def distance(self, az: float, s: DecodeSettings, walking: bool = False) -> float:
        """How far ``az`` is from where this window's network output should put the talker
        (``lead_s`` behind the window's end) under either hypothesis (``walking``: the walking one
        alone): the walking one can keep a talker whom the still one has lost."""
        fs = (self.moving,) if walking else (self.still, self.moving)
        return min(abs(wrap180(az - (f.az - s.lead_s * f.rate))) for f in fs)

    def reaches(self, az: float, unheard_s: float, s: DecodeSettings) -> float | None:
        """:meth:`distance` to ``az`` where it is inside this talker's gate, else None. The gate opens
        with the time unheard (a talker may have moved), around the walking hypothesis alone where
        ``gate_opens_walking`` is set."""
        d = self.distance(az, s)
        gate = s.gate_deg + min(s.gate_deg, s.gate_open_deg_s * max(0.0, unheard_s))
        if d > gate or (s.gate_opens_walking and d > s.gate_deg and self.distance(az, s, walking=True) > gate):
            return None
        return d

    def predict(self, dt: float, t_s: float, s: DecodeSettings) -> None:
        # a walker keeps walking through a pause of up to coast_s (internally: an unlisted talker
        # is never reported, so nothing drifts in the output), then holds their place
        if t_s - self.last_t_s > s.coast_s:
            self.moving.rate = 0.0
        if dt > 0:
            self.still.predict(dt)
            # a still talker may still shift a little (head turns, the network's slow drift)
            self.still.p[0][0] += (s.drift_deg_s ** 2) * dt
            self.moving.predict(dt)

    def update(self, det: Detection, t_s: float, s: DecodeSettings, lag_s: float | None = None) -> None:
        """One window's evidence: ``det`` measures where the talker was ``lag_s`` (default ``lead_s``) before
        ``t_s``."""
        sd = s.azimuth_noise_deg / max(det.confidence, 0.05)
        lag = s.lead_s if lag_s is None else lag_s
        for f in (self.still, self.moving):
            f.update(det.azimuth_deg, sd * sd, lag, s.max_rate_deg_s, s.model_forget)
        self.updates += 1
        # the walking hypothesis explains the recent evidence better (the two filters' weight)
        self.is_walking = self.walk_weight(s) > 0.5
        self.evidence_sum += float(det.confidence)
        self.distance_m += s.distance_alpha * (float(det.distance_m) - self.distance_m)
        self.confidence += s.confidence_alpha * (float(det.confidence) - self.confidence)
        if self.misses * s.hold_alpha >= 1.0:  # back after a pause of the average's length: it starts at the bar
            self.support = max(self.support, min(float(det.confidence), s.hold_mean))
        else:
            self.support += s.hold_alpha * (float(det.confidence) - self.support)
        self.region = int(det.region)
        self.windows += 1
        if det.confidence >= s.birth_threshold:
            self.hits += 1
        self.misses = 0
        self.last_t_s = t_s
        self.evidence = True

    def blended(self, s: DecodeSettings) -> tuple[float, float]:
        """The two hypotheses blended by how much better each explains the recent evidence: the
        azimuth (unwrapped) and the walking hypothesis' weight."""
        w = self.walk_weight(s)
        return self.still.az + w * wrap180(self.moving.az - self.still.az), w

    def heard_now(self, peak: Any, s: DecodeSettings) -> tuple[float, float] | None:
        """The newest audio's SRP-PHAT peak (``peak``) near where this talker was ``now_lag_s`` before
        the window's end, unwrapped next to it, and its strength; None where the search finds none or
        it is weaker than ``now_min_strength``."""
        az, w = self.blended(s)
        was = az - s.now_lag_s * w * self.moving.rate
        found = peak(float(wrap360(was)), s.now_half_deg)
        if found is None or found[1] < s.now_min_strength:
            return None
        return was + wrap180(found[0] - was), found[1]

    def measure_now(self, peak: Any, s: DecodeSettings) -> None:
        """:meth:`heard_now` as a measurement of both hypotheses (not of which one is better)."""
        if self.updates < s.walk_after:
            return
        found = self.heard_now(peak, s)
        if found is not None:
            sd = s.now_sd_deg
            if s.now_sd_strength > 0:  # a weak peak is a noisier one
                sd *= min(3.0, max(0.5, s.now_sd_strength / max(found[1], 1e-6)))
            for f in (self.still, self.moving):
                f.update(found[0], sd * sd, s.now_lag_s, s.max_rate_deg_s, None)

    def take_over(self, new: "_Track", t_s: float, s: DecodeSettings) -> None:
        """Move this walker to where the newly confirmed track ``new`` is (see ``hand_over_deg``),
        keeping the walker's speed, id and the still/walking choice."""
        az = self.moving.az + wrap180(new.az - self.moving.az)
        self.moving.az = az + s.lead_s * self.moving.rate
        self.still.az = self.still.az + wrap180(new.az - self.still.az)
        for f in (self.still, self.moving):
            f.p[0][0] += s.azimuth_noise_deg ** 2
        self.confidence = max(self.confidence, new.confidence)
        self.support = max(self.support, new.support)
        self.region = new.region
        self.last_t_s = t_s
        self.misses = 0
        self.evidence = self.evidence or new.evidence
        self.listed = True

    def miss(self, s: DecodeSettings) -> None:
        self.confidence *= 1.0 - s.confidence_alpha
        self.support *= 1.0 - s.hold_alpha
        self.windows += 1
        self.misses += 1
        self.evidence = False

    def report(self, s: DecodeSettings) -> Talker:
        assert self.number is not None
        az, w = self.blended(s)
        return Talker(self.number, float(wrap360(az)), self.distance_m, self.confidence, self.region, self.evidence,
                      w * self.moving.rate)


class TemporalDecoder:
    """Per-window network outputs -> the talkers present now (see the module's doc).

    One per stream. :meth:`update` takes one window's outputs (n_regions, 3) and its end time;
    ``refine`` (optional) moves each candidate's azimuth, e.g. to a local SRP-PHAT peak.
    """

    def __init__(self, layout: RegionLayout, settings: DecodeSettings | None = None) -> None:
        self.layout = layout
        self.settings = settings or DecodeSettings()
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._next_rank = 1
        self._last_t_s: float | None = None

    @property
    def next_id(self) -> int:
        """The id the next listed talker will get."""
        return self._next_id

    def reset(self) -> None:
        """Forget every track (after a gap in the audio); ids keep increasing from where they were."""
        self._tracks = []
        self._last_t_s = None

    def candidates(self, outputs: np.ndarray) -> list[Detection]:
        """This window's candidates: regions at least ``seed_threshold`` (or ``keep_threshold``)
        probable, decoded."""
        return decode(self.layout, outputs, min(self.settings.keep_threshold, self.settings.seed_threshold))

    def update(self, outputs: np.ndarray, t_s: float, refine: Any = None, peak: Any = None) -> list[Talker]:
        """Feed one window's network outputs (window ending at ``t_s``); returns the listed talkers by id.

        ``refine``: None, or a callable taking and returning a list of :class:`Detection` (the
        candidates), applied before association. ``peak``: None, or a callable ``(azimuth_deg,
        half_deg) -> (azimuth_deg, strength) | None`` giving the newest audio's local SRP-PHAT peak
        and its strength (None where the search finds none inside; :func:`edge_msl.pipeline.newest_peak`):
        a measurement of where talkers are now, and where a walking talker is reported."""
        dets = self.candidates(outputs)
        if refine is not None and dets:
            dets = refine(dets)
        return self.step(dets, t_s, peak, outputs)

    def step(self, dets: Sequence[Detection], t_s: float, peak: Any = None,
             outputs: np.ndarray | None = None) -> list[Talker]:
        """:meth:`update` with the candidates already decoded (``outputs``, if given, lets a
        tentative talker count its region's probability in windows without a candidate)."""
        s = self.settings
        if self._last_t_s is not None and t_s < self._last_t_s:
            raise ValueError(f"time went backwards: {t_s} s after {self._last_t_s} s; call reset() after a gap")
        dt = 0.0 if self._last_t_s is None else t_s - self._last_t_s
        self._last_t_s = t_s
        for tr in self._tracks:
            tr.predict(dt, t_s, s)
        # every (track, candidate) pair in the gate, nearest first; listed tracks before unlisted
        # ones and confirmed before tentative, so a false alarm cannot take a talker's evidence
        pairs = []
        for ti, tr in enumerate(self._tracks):
            rank = 0 if tr.listed else (1 if tr.id is not None else 2)
            for di, det in enumerate(dets):
                d = tr.reaches(det.azimuth_deg, t_s - tr.last_t_s - dt, s)
                if d is not None:
                    pairs.append((rank, d, ti, di))
        pairs.sort()
        used_t: set[int] = set()
        used_d: set[int] = set()
        for rank, _, ti, di in pairs:
            if ti in used_t or di in used_d:
                continue
            tr = self._tracks[ti]
            c = dets[di].confidence
            # a listed talker stays on evidence at keep_threshold, one who is not listed needs the
            # birth threshold to come back; a tentative one takes anything from seed_threshold
            if (rank == 0 and c < s.keep_threshold) or (rank == 1 and c < s.birth_threshold):
                continue
            used_t.add(ti)
            used_d.add(di)
            tr.update(dets[di], t_s, s)
        for ti, tr in enumerate(self._tracks):
            if ti not in used_t:
                tr.miss(s)
                if tr.id is None:  # a tentative talker's evidence: its region's probability anyway
                    tr.evidence_sum += float(outputs[int(self.layout.region_of(wrap360(tr.az))), 0]) \
                        if outputs is not None else 0.0
        for di, det in enumerate(dets):
            if di not in used_d and (det.confidence >= s.birth_threshold or
                                     (s.confirm_mean < 1.0 and det.confidence >= s.seed_threshold)):
                self._tracks.append(_Track(det, t_s, s))
        if peak is not None and s.now_sd_deg > 0 and s.now_half_deg > 0:
            for ti in sorted(used_t):
                self._tracks[ti].measure_now(peak, s)
        kept: list[_Track] = []
        resumed: set[int] = set()  # paused talkers whose id a new track took
        handed: set[int] = set()  # walkers who took a newcomer's place this window
        merged = self._merge(self._tracks)
        for tr in merged:
            if tr.id is None:
                by_mean = tr.windows >= s.confirm_mean_windows and \
                    tr.evidence_sum / tr.windows >= s.confirm_mean and tr.evidence
                if ((tr.hits >= s.confirm_hits and tr.windows <= s.confirm_windows) or by_mean or
                        (tr.windows == 1 and tr.confidence >= s.confirm_confidence) or
                        self._heard_starting(tr, peak)):
                    paused = self._paused_near(tr, [t for t in merged if id(t) not in resumed], t_s) \
                        if s.resume_by_birth else None
                    # one newcomer per walker per window, never a walker whose id a newcomer took
                    walker = self._walker_behind(tr, [t for t in merged if id(t) not in resumed | handed], peak) \
                        if paused is None else None
                    if walker is not None:
                        walker.take_over(tr, t_s, s)
                        handed.add(id(walker))
                        continue  # tr ends: the walker is who it heard
                    if paused is not None:
                        tr.id, tr.number = paused.id, paused.number
                        resumed.add(id(paused))
                    else:
                        tr.id = self._next_rank
                        self._next_rank += 1
                elif tr.hits + max(0, s.confirm_windows - tr.windows) < s.confirm_hits and \
                        (tr.windows >= s.confirm_mean_windows or s.confirm_mean >= 1.0):
                    continue  # can reach neither k births in n windows nor the mean: a false alarm
                else:
                    kept.append(tr)
                    continue
            if t_s - tr.last_t_s > s.resume_s + 1e-9:
                continue
            tr.listed = tr.misses <= s.miss_windows and (tr.listed or tr.evidence) and \
                (tr.support >= s.hold_mean or tr.windows * s.hold_alpha < 1.0)
            kept.append(tr)
        self._tracks = [tr for tr in kept if id(tr) not in resumed]
        out = []
        for tr in self._tracks:
            if tr.id is None or not tr.listed:
                continue
            if tr.number is None:  # ids follow the order in which talkers are first listed
                tr.number = self._next_id
                self._next_id += 1
            talker = tr.report(s)
            if peak is not None and s.now_half_deg > 0 and talker.active and tr.updates >= s.walk_after and \
                    (tr.is_walking or not s.now_needs_walk) and abs(tr.moving.rate) >= s.now_min_rate_deg_s:
                now = tr.heard_now(peak, s)
                if now is not None:
                    talker = replace(talker, azimuth_deg=float(wrap360(now[0] + s.now_lag_s * talker.rate_deg_s)))
            out.append(talker)
        return sorted(out, key=lambda r: r.id)

    def _paused_near(self, tr: _Track, tracks: list[_Track], t_s: float) -> _Track | None:
        """The paused talker (unlisted, holding an id) nearest ``tr`` within its opened gate, if any."""
        s = self.settings
        best, best_d = None, math.inf
        for old in tracks:
            if old is tr or old.listed or old.number is None:
                continue
            d = old.reaches(tr.az, t_s - old.last_t_s, s)
            if d is not None and d < best_d:
                best, best_d = old, d
        return best

    def _walker_behind(self, tr: _Track, tracks: list[_Track], peak: Any) -> _Track | None:
        """The walker (listed or paused) whom ``tr`` is up to ``hand_over_deg`` ahead of along their
        motion, else the listed mover whom ``tr`` is up to ``hand_over_side_deg`` from on either side,
        where the newest audio hears ``tr`` and no longer the walker where they are reported."""
        s = self.settings
        if (s.hand_over_deg <= 0 and s.hand_over_side_deg <= 0) or peak is None:
            return None
        here = peak(float(wrap360(tr.az)), s.now_half_deg)
        if here is None or here[1] < s.now_min_strength:
            return None

        def still_heard(old: _Track) -> bool:  # the walker is heard where they are: the new one is someone else
            there, _ = old.blended(s)
            found = peak(float(wrap360(there)), s.now_half_deg)
            return found is not None and found[1] >= s.now_min_strength and \
                abs(wrap180(found[0] - there)) < abs(wrap180(found[0] - tr.az))

        best, best_d = None, math.inf
        for old in tracks:
            if old is tr or old.number is None or not old.is_walking or old.moving.rate == 0.0:
                continue
            ahead = wrap180(tr.az - old.moving.az) * math.copysign(1.0, old.moving.rate)
            if not 0.0 < ahead <= s.hand_over_deg or ahead >= best_d or (old.listed and still_heard(old)):
                continue
            best, best_d = old, ahead
        if best is not None or s.hand_over_side_deg <= 0:
            return best
        for old in tracks:
            if old is tr or old.number is None or not old.listed or abs(old.moving.rate) < s.hand_over_side_rate_deg_s:
                continue
            d = abs(wrap180(tr.az - old.blended(s)[0]))
            if d <= s.hand_over_side_deg and d < best_d and not still_heard(old):
                best, best_d = old, d
        return best

    def _heard_starting(self, tr: _Track, peak: Any) -> bool:
        """A tentative talker with evidence now, ``now_confirm_min`` probable, whose newest audio
        holds a peak at least ``now_confirm_strength`` strong near it."""
        s = self.settings
        if peak is None or s.now_confirm_strength <= 0 or not tr.evidence or tr.confidence < s.now_confirm_min:
            return False
        found = peak(float(wrap360(tr.az)), s.now_half_deg)
        return found is not None and found[1] >= s.now_confirm_strength

    def _merge(self, tracks: list[_Track]) -> list[_Track]:
        # seniority: listed tracks by id, then unlisted by id, then tentative ones by age
        order = sorted(tracks, key=lambda t: (not t.listed, t.id is None, t.id or 0, -t.windows))
        dropped: set[int] = set()
        for i, older in enumerate(order):
            if id(older) in dropped:
                continue
            for younger in order[i + 1:]:
                if id(younger) in dropped:
                    continue
                if self.settings.resume_by_birth and not older.listed and older.id is not None and younger.id is None:
                    continue  # a paused talker resuming quietly: the new track takes their id when confirmed
                if abs(wrap180(older.az - younger.az)) < self.settings.merge_deg:
                    dropped.add(id(younger))
                    # the survivor takes the latest evidence of a talker, not that of a tentative
                    # one (the fading tail of a talker who stopped must not bring them back)
                    if younger.id is not None and younger.last_t_s > older.last_t_s:
                        older.last_t_s = younger.last_t_s
                        older.evidence = older.evidence or younger.evidence
                        older.misses = min(older.misses, younger.misses)
                    if older.id is None:
                        older.hits = max(older.hits, younger.hits)
        return [t for t in tracks if id(t) not in dropped]


__all__ = ["DecodeConfigError", "DecodeSettings", "Talker", "TemporalDecoder"]
