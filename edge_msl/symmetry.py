"""Symmetries of a microphone array that the region coding can follow.

A planar array that a rotation or a reflection of the plane maps onto itself (a uniform circular
array of n mics: n rotations and n reflections) hears a scene and its transformed image as
permutations of each other's channels. With ``x'[:, i] = x[:, perm[i]]``, where the transform
g carries mic i onto mic ``perm[i]``, the network sees the scene with every source moved to
g^-1(azimuth); its outputs for region r belong to region g(r) of the true scene. When g maps
the region layout onto itself (rotations by whole regions; reflections about an axis through a
region border or centre), the outputs of a permuted window are mapped back exactly: regions
rolled or reversed, the fine azimuth (0..1 across the region) reversed by a reflection,
distance and activity unchanged.

The network is not exactly equivariant, so its outputs on the images of one window differ a
little: the daemon cycles through the symmetries from one hop to the next (``decode.symmetry``
``"cycle"``), so that the pooled outputs average over several of them at no extra cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .regions import AZIMUTH, RegionLayout

SYMMETRY_MODES = ("none", "cycle")
"""Values of a model's ``decode.symmetry``: the daemon's use of the array's symmetries."""


@dataclass(frozen=True)
class Symmetry:
    """One symmetry: ``perm`` permutes the channels; the outputs are mapped back by rolling the
    regions by ``shift`` (after reversing them when ``mirror``)."""

    perm: tuple[int, ...]
    shift: int
    mirror: bool

    @property
    def identity(self) -> bool:
        return not self.mirror and self.shift == 0 and self.perm == tuple(range(len(self.perm)))

    def permute(self, window: np.ndarray) -> np.ndarray:
        """The window's image: channels on the last axis (..., samples, mics)."""
        return window if self.identity else np.ascontiguousarray(window[..., list(self.perm)])

    def restore(self, outputs: np.ndarray) -> np.ndarray:
        """Outputs (..., n_regions, 3) of the image -> outputs of the original window."""
        if self.identity:
            return outputs
        out = np.asarray(outputs)
        if self.mirror:
            out = out[..., ::-1, :].copy()
            out[..., AZIMUTH] = 1.0 - out[..., AZIMUTH]
        return np.roll(out, self.shift, axis=-2)  # a new array: the caller's outputs are left as they are


def _match(points: np.ndarray, images: np.ndarray, tol_m: float) -> tuple[int, ...] | None:
    """perm with images[i] == points[perm[i]] (within tol_m), or None."""
    d = np.linalg.norm(images[:, None, :] - points[None, :, :], axis=-1)
    perm = d.argmin(axis=1)
    if np.any(d[np.arange(len(points)), perm] > tol_m) or len(set(perm.tolist())) != len(points):
        return None
    return tuple(int(p) for p in perm)


def array_symmetries(positions_m: Sequence[Sequence[float]], layout: RegionLayout,
                     tol_m: float = 1e-3) -> list[Symmetry]:
    """Every rotation and reflection about the array's centre that maps both the mics (planar,
    within ``tol_m``) and the region layout onto themselves, the identity first. An array with
    none (a line array's reflection aside, when its layout does not follow) gives [identity]."""
    pos = np.asarray(positions_m, dtype=np.float64)
    n = len(pos)
    ident = Symmetry(tuple(range(n)), 0, False)
    if pos.ndim != 2 or pos.shape[1] < 2 or n < 2:
        return [ident]
    if pos.shape[1] > 2 and np.ptp(pos[:, 2]) > tol_m:
        return [ident]
    xy = pos[:, :2] - pos[:, :2].mean(axis=0)
    w, o = layout.width_deg, layout.offset_deg
    out = [ident]
    for k in range(1, layout.n_regions):  # rotations by whole regions
        a = math.radians(k * w)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        perm = _match(xy, xy @ rot.T, tol_m)
        if perm is not None:
            out.append(Symmetry(perm, k, False))
    for j in range(layout.n_regions):  # reflections about axes at o + j w / 2 (j and j + n: the same axis)
        beta = o + j * w / 2.0
        b = math.radians(2.0 * beta)
        ref = np.array([[math.cos(b), math.sin(b)], [math.sin(b), -math.cos(b)]])
        perm = _match(xy, xy @ ref.T, tol_m)
        if perm is None:
            continue
        # theta -> 2 beta - theta: region k -> region j - k - 1, i.e. reversed, then rolled by j
        out.append(Symmetry(perm, j % layout.n_regions, True))
    return out


def cycle_order(symmetries: list[Symmetry], n_regions: int) -> list[Symmetry]:
    """The symmetries in the order the daemon cycles through them: identity first, then
    alternately a reflection and a rotation, each time the one farthest (in regions) from those
    already used, so that a few consecutive hops see very different images."""
    rest = list(symmetries[1:])
    order = [symmetries[0]]
    while rest:
        want_mirror = not order[-1].mirror
        pool = [s for s in rest if s.mirror == want_mirror] or rest

        def spread(s: Symmetry) -> int:
            return min(min((s.shift - u.shift) % n_regions, (u.shift - s.shift) % n_regions) for u in order)

        best = max(pool, key=lambda s: (spread(s), -s.shift))
        order.append(best)
        rest.remove(best)
    return order


def symmetry_mode(decode_settings: dict) -> str:
    """A model's ``decode.symmetry`` ("none" if unset); ValueError naming the choices otherwise."""
    mode = decode_settings.get("symmetry", "none")
    if mode not in SYMMETRY_MODES:
        raise ValueError(f"decode.symmetry must be one of {', '.join(SYMMETRY_MODES)}, got {mode!r}")
    return mode


def model_cycle(positions_m: Sequence[Sequence[float]], regions: RegionLayout | dict) -> list[Symmetry]:
    """The symmetries a model of this array and region layout (a :class:`RegionLayout` or the
    ``regions`` of its params) cycles through, in :func:`cycle_order` (just the identity for an
    array without any)."""
    layout = regions if isinstance(regions, RegionLayout) else RegionLayout.from_dict(regions)
    return cycle_order(array_symmetries(positions_m, layout), layout.n_regions)
