"""A candidate model dir from a run dir: its weights + params with the shipped sidecar's decode and region layout,
converted to int8 (docs/experiments/turns-and-walks-in-training.md).

    python -m experiments.walk_turns.candidate RUN_DIR NAME [WEIGHTS_FILE]   -> out/cand/NAME/NAME.tflite
"""
import json, shutil, subprocess, sys
from pathlib import Path
run, name = Path(sys.argv[1]), sys.argv[2]
wfile = sys.argv[3] if len(sys.argv) > 3 else ("model.weights.h5" if (run / "model.weights.h5").exists() else "best.weights.h5")
out = Path("out/cand") / name
out.mkdir(parents=True, exist_ok=True)
shipped = json.loads(Path("models/uca8-r10/params.json").read_text())
p = json.loads((run / "params.json").read_text())
p["decode"] = shipped["decode"]
p["regions"] = shipped["regions"]
p["input_scaling"] = shipped["input_scaling"]
(out / "params.json").write_text(json.dumps(p, indent=1))
shutil.copyfile(run / wfile, out / "model.weights.h5")
subprocess.run([sys.executable, "-m", "convert", "--model", str(out), "--calib-data", "data/val-speech",
                "--out", str(out / f"{name}.tflite")], check=True)
print(out)
