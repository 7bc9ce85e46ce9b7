"""Grid of temporal-decode settings on cached network outputs of validation scenes (docs/experiments/turns-and-walks-in-training.md).

    python -m experiments.walk_turns.grid MODEL.tflite|- SET...   (- = the packaged uca8-r10)
"""
import dataclasses, itertools, sys
from pathlib import Path
from benchmarks import scenes_bench as sb
from edge_msl.temporal import DecodeSettings
from edge_msl.runtime import load_model
model = load_model(None if sys.argv[1] == "-" else sys.argv[1])
info = model.info
base = DecodeSettings.from_dict(info.raw.get("decode", {}).get("temporal", {}))
images = "cycle" if info.symmetry == "cycle" else "plain"
sets = {d: sb.scenes([d]) for d in sys.argv[2:]}
cached = {s: sb.cached_outputs(model, s) for st in sets.values() for s in st}
for birth, conf, keep in itertools.product((0.35, 0.4, 0.45), (0.5, 0.6), (0.15, 0.2)):
    st = dataclasses.replace(base, birth_threshold=birth, confirm_confidence=conf, keep_threshold=keep)
    out = []
    for d, stems in sets.items():
        r = sb.score_set(stems, lambda stem: sb.decode_cached(model, cached[stem], st, images), info.window_s)
        out.append(f"{Path(d).name}: F1 {r['f1']:.3f} P {r['precision']:.3f} R {r['recall']:.3f} mov {r['doa_error_moving_deg']} "
                   f"pick {r['pickup_p90_s']} ling {r['linger_mean_s']:.3f} sw {r['id_switches_per_turn']:.3f}")
    print(f"birth {birth} conf {conf} keep {keep} | " + " | ".join(out), flush=True)
