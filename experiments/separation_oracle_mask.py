"""Issue 33 (docs/experiments/separation-oracle-mask.md): how far a perfect post-filter on today's beams would go.
Every track's gain per bin is the phase-sensitive oracle against its talker's reference (the first argument:
direct or early), clipped to [gain_min, 1], in place of the learned post-filter's; the rest of the arguments are
benchmarks.separation_bench's.

    PYTHONPATH=. .venv/bin/python experiments/separation_oracle_mask.py direct --bank data/dry/bank-train.npz \
        --seed 43000 --scenes 8 --decimals 2
"""
import sys

import numpy as np

import edge_msl.separate as sep_mod
from benchmarks import separation_bench as sb
from train_tf.separate_postfilter import nearest_talker, reference_stfts

REF = sys.argv.pop(1)
CURRENT = {}
_run = sb.run_edge


def run_edge(scene, *a, **k):
    CURRENT["scene"] = scene
    return _run(scene, *a, **k)


sb.run_edge = run_edge


def _learned_gains(self, ids, first, y, masks, gains, spec, only):
    scene = CURRENT["scene"]
    refs = getattr(self, "_oracle_refs", None)
    if refs is None or refs[0] is not scene:
        refs = (scene, reference_stfts(scene, self, REF))
        self._oracle_refs = refs
    r = refs[1]
    out = np.array(gains, copy=True)
    t_n = y.shape[1]
    for ki, k in enumerate(ids):
        talker = nearest_talker(scene, self._tracks[k].azimuth_deg)
        if (only is not None and k not in only) or talker < 0:
            continue
        rk = r[talker, first:first + t_n]
        yk = y[ki, :len(rk)]
        g = np.real(rk * np.conj(yk)) / (np.abs(yk) ** 2 + 1e-12)
        out[ki, :len(rk)] = np.clip(g, self.settings.gain_min, 1.0)
    return out


sep_mod.Separator._learned_gains = _learned_gains
sys.exit(sb.main(sys.argv[1:]))
