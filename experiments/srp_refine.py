"""Choose the settings of the local SRP-PHAT refinement of the model's azimuths (edge_msl.refine).

Each detection of the pooled decode is moved towards the highest SRP-PHAT response within
``--half`` degrees of it: new = (1 - w) * network + w * SRP peak, for a peak strictly inside the
searched arc (a peak on its edge means the search saw a slope, not a peak: the detection stays).
The SRP map uses the GCC-PHAT cross-spectra of each 0.1 s hop of audio, averaged over the audio of
the pooled sub-windows, as the daemon keeps them (``train_tf.evaluate.srp_refine_all``). Prints DOA error and F1 per
number of sources for the network alone and each setting; choose settings on a validation set.

    .venv/bin/python -m experiments.srp_refine --model models/uca8-r10 --data data/val2-speech-1s \\
        --fmax 5000,8000 --half 5,8,12 --weight 0.3,0.5,0.7
"""

from __future__ import annotations

import argparse

import numpy as np



def main(argv: list[str] | None = None) -> int:
    import copy

    from experiments.decode01 import decode_all, pool_gain, pool_gate, pooled
    from train_tf.evaluate import score_detections, srp_crosses, srp_refine_all, summarize, window_outputs
    from train_tf.simulate import load_windows

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/uca8-r10")
    ap.add_argument("--data", required=True)
    ap.add_argument("--weights", default="model.weights.h5")
    ap.add_argument("--fmax", default="8000", help="comma list of upper band edges (Hz)")
    ap.add_argument("--half", default="8", help="comma list of search half-widths (deg)")
    ap.add_argument("--weight", default="0.5", help="comma list of weights of the SRP peak")
    ap.add_argument("--max-windows", type=int, default=None)
    args = ap.parse_args(argv)

    data = load_windows(args.data)
    n = len(data["audio"]) if args.max_windows is None else min(args.max_windows, len(data["audio"]))
    audio = data["audio"][:n]
    az, dist, n_src = data["azimuth_deg"][:n], data["distance_m"][:n], data["n_sources"][:n].astype(int)
    per, params = window_outputs(args.model, audio, args.weights)
    is_pooled = per.shape[1] > 1
    dets, _, _ = decode_all(pooled(per, pool_gain(params), pool_gate(params)), params, pooled=is_pooled)

    def row(name: str, d: list[list]) -> str:
        s = summarize(score_detections(d, az, dist, 20.0))
        per_k = []
        for k in (1, 2, 3, 4):
            m = np.flatnonzero(n_src == k)
            per_k.append(summarize(score_detections([d[i] for i in m], az[m], dist[m], 20.0))["err_mean"])
        return (f"| {name} | {s['err_mean']:.3f} / {s['err_median']:.3f} | "
                + " | ".join(f"{e:.3f}" for e in per_k) + f" | {s['f1']:.4f} |")

    print(f"{args.model} on {args.data} ({n} windows)\n")
    print("| setting | DOA err mean / median (deg) | 1 src | 2 src | 3 src | 4 src | F1@20 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(row("network alone", dets), flush=True)
    for fmax in (float(v) for v in args.fmax.split(",")):
        crosses = None  # the cross-spectra depend on the band only: once per fmax
        for half in (float(v) for v in args.half.split(",")):
            for wgt in (float(v) for v in args.weight.split(",")):
                p = copy.deepcopy(params)
                p["decode"]["srp_refine"] = {"fmax_hz": fmax, "half_deg": half, "weight": wgt}
                if crosses is None:
                    crosses = srp_crosses(dets, audio, p, p["decode"]["srp_refine"])
                print(row(f"fmax {fmax:g} Hz, +-{half:g} deg, weight {wgt:g}",
                          srp_refine_all(dets, audio, p, crosses=crosses)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
