"""Issue 34, a lead (docs/experiments/calibration-mic-positions.md): can a session's clips tell where each mic really
is? Per-mic in-plane position offsets from single-talker clips' residual delays, in the calibration stand-in room
(`train_tf.calibrate.standin`, uca8-r10, its +-4 mm position errors, board echo), by least squares with a constant
delay per mic; the array's common modes (translation, rotation and, with ``drop radial``, the radial scale, which
is what a talker's unknown elevation and the board's echo look like) left out of both the fit and the truth.

    .venv/bin/python experiments/calibration_posfit.py [POSITIONS] [LABEL_SD_DEG] [SEEDS]
"""
import math, sys
import numpy as np
from edge_msl.arrays import SPEED_OF_SOUND_M_S, get_array
from train_tf.calibrate.standin import StandInRoom, dry_speech
from train_tf.signals import DryBank

C = SPEED_OF_SOUND_M_S
FS = 16000
arr = get_array("uca8-r10")
nom = arr.positions()
bank = DryBank.load("data/dry/bank-train.npz")


def residual_delays(x, az, el_assumed=0.0, nfft=512, band=(300.0, 4000.0)):
    """Per-mic delay (s) left after undoing the nominal plane wave from (az, el_assumed), relative to the mean."""
    hop = nfft // 2
    f = np.fft.rfftfreq(nfft, 1 / FS)
    sel = (f >= band[0]) & (f <= band[1])
    f = f[sel]
    n_fr = (len(x) - nfft) // hop + 1
    idx = np.arange(nfft)[None] + hop * np.arange(n_fr)[:, None]
    spec = np.fft.rfft(x[idx] * np.hanning(nfft)[None, :, None], axis=1)[:, sel]
    e = np.sum(np.abs(spec) ** 2, axis=(1, 2))
    spec = spec[e >= np.quantile(e, 0.5)]
    u = np.array([math.cos(math.radians(az)) * math.cos(math.radians(el_assumed)),
                  math.sin(math.radians(az)) * math.cos(math.radians(el_assumed)), 0.0])
    tau = -(nom @ u) / C
    y = spec * np.exp(2j * np.pi * f[None, :, None] * tau[None, None, :])
    beam = np.sum(y / (np.abs(y) + 1e-12), axis=2, keepdims=True)
    cr = y * np.conj(beam)
    acc = np.sum(cr / (np.abs(cr) + 1e-12), axis=0)  # (F, M)
    psi = np.angle(acc)
    w = np.abs(acc)
    d = []
    for m in range(acc.shape[1]):
        a = np.stack([2 * np.pi * f, np.ones_like(f)], 1) * w[:, m:m + 1]
        (dm, _), *_ = np.linalg.lstsq(a, -psi[:, m] * w[:, m], rcond=None)
        d.append(dm)
    d = np.array(d)
    return d - d.mean()


def fit(res, azs, drop_radial):
    """res (K, M) residual delays; unknowns: per-mic constant delay (M) and in-plane offset (M x 2)."""
    K, M = res.shape
    rows, rhs = [], []
    for k in range(K):
        u = np.array([math.cos(math.radians(azs[k])), math.sin(math.radians(azs[k]))])
        for m in range(M):
            r = np.zeros(3 * M)
            r[m] = 1.0
            r[M + 2 * m:M + 2 * m + 2] = -u / C
            rows.append(r)
            rhs.append(res[k, m])
    A = np.array(rows)
    b = np.array(rhs)
    # the offsets' common modes and the delays' common constant, projected out of the solution
    modes = [np.r_[np.zeros(M), v] for v in offset_modes(M, drop_radial)] + [np.r_[np.ones(M), np.zeros(2 * M)]]
    Q, _ = np.linalg.qr(np.array(modes).T)
    P = np.eye(3 * M) - Q @ Q.T
    sol, *_ = np.linalg.lstsq(A @ P, b, rcond=None)
    sol = P @ sol
    return sol[M:].reshape(M, 2)


def offset_modes(M, drop_radial):
    """The (2 M,) offset patterns no fit can tell: translation (x, y), rotation and, with ``drop_radial``, the
    radial scale."""
    modes = [np.tile([1.0, 0.0], M), np.tile([0.0, 1.0], M), np.stack([-nom[:, 1], nom[:, 0]], 1).ravel()]
    return modes + [nom[:, :2].ravel()] if drop_radial else modes


def project(e, drop_radial):
    """The offsets ``e`` (M, 2) less their :func:`offset_modes`."""
    v = e.ravel()
    Q, _ = np.linalg.qr(np.array(offset_modes(len(e), drop_radial)).T)
    return (v - Q @ (Q.T @ v)).reshape(e.shape)


def main(seed, n_pos, el_range, rt60, label_sd=0.0):
    room = StandInRoom(arr, seed=seed, rt60_s=rt60)
    rng = np.random.default_rng(100 + seed)
    true = (room.mic_xyz - room.centre - nom)[:, :2]
    az = rng.uniform(0, 360, n_pos)
    dist = rng.uniform(0.8, 2.5, n_pos)
    el = rng.uniform(*el_range, n_pos)
    rirs = room.rirs(az, dist, el)
    res = []
    for p in range(n_pos):
        dry = dry_speech(bank, 4 * FS + rirs.shape[2], rng, 1)
        x = room.render(rirs[[p]], dry).astype(np.float64)
        res.append(residual_delays(x, az[p] + label_sd * rng.standard_normal()))
    res = np.array(res)
    out = {}
    for drop in (False, True):
        est = fit(res, az, drop)
        t = project(true, drop)
        err = np.linalg.norm(est - t, axis=1)
        out[drop] = (np.linalg.norm(t, axis=1).mean() * 1000, err.mean() * 1000)
    return out


if __name__ == "__main__":
    n_pos = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    label_sd = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    seeds = range(int(sys.argv[3]) if len(sys.argv) > 3 else 3)
    print(f"| positions | label sd (deg) | elevations (deg) | RT60 (s) | fit | offsets (mm, mean) | error (mm, mean) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for el_range in ((0.0, 0.0), (-5.0, 20.0)):
        for rt60 in (0.0001, 0.45):
            rows = [main(s, n_pos, el_range, rt60, label_sd) for s in seeds]
            for drop in (False, True):
                size = np.mean([r[drop][0] for r in rows])
                err = np.mean([r[drop][1] for r in rows])
                kind = "common modes and radial scale out" if drop else "common modes out"
                print(f"| {n_pos} | {label_sd:g} | {el_range[0]:g} to {el_range[1]:g} | {rt60:g} | {kind} | "
                      f"{size:.2f} | {err:.2f} |")
