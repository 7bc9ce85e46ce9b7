#!/usr/bin/env bash
# issue 28.1, the board size sweep (plan experiments/plans/boards-size.json; report docs/experiments/board-size.md).
# Run on the device machine from the repository root, one phase a call:
#   call.sh sim     carry .whl and .carry/part-0: install the wheels (kept in /tmp/whl-keep), stash bank part 0,
#                   start the plan's RIR-bank simulators (4 workers each; their pid files make gpu_job.py start skip them)
#   call.sh stash   carry .carry/part-1: stash it
#   call.sh train S carry .carry/part-2: join the bank, start the six trainers, print progress for S seconds
#   call.sh pack S  print progress for S seconds more, then pack every run's best weights, params and log into $OUT
set -u
PLAN=experiments/plans/boards-size.json
export PYTHONPATH=/tmp/site:$PWD PRA_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 KERAS_BACKEND=jax
case "$1" in
sim)
  rm -rf /tmp/whl-keep && cp -r .whl /tmp/whl-keep
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  python3 train_tf/gpu_job.py stash
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc; free -g | head -2
  mkdir -p /tmp/runs
  python3 - "$PLAN" <<'PY'
import json, subprocess, sys
plan = json.load(open(sys.argv[1]))
for name, b in plan["banks"].items():
    cmd = [sys.executable, "-m", "train_tf.simulate", "rir-bank", "--out", f"/tmp/rir-{name}", "--rooms", str(b["rooms"]),
           "--shard-size", "20", "--workers", "4", "--seed", str(b["seed"]), "--array", b["array"], *b.get("args", [])]
    p = subprocess.Popen(cmd, stdout=open(f"/tmp/runs/sim-{name}.log", "w"), stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    open(f"/tmp/runs/sim-{name}.pid", "w").write(str(p.pid))
    print("simulating", name, "pid", p.pid)
PY
  sleep 20; ls /tmp/rir-*/ | head; for f in /tmp/runs/sim-*.log; do echo "$f: $(tail -c 300 $f | tr '\r' '\n' | tail -n 2)"; done ;;
stash)
  python3 train_tf/gpu_job.py stash; ls /tmp/carry ;;
train)
  ln -sfn /tmp/whl-keep .whl
  python3 train_tf/gpu_job.py start "$PLAN" /tmp/runs && python3 train_tf/gpu_job.py wait /tmp/runs "$2" ;;
pack)
  python3 train_tf/gpu_job.py wait /tmp/runs "$2"
  for f in /tmp/runs/*.err; do echo "== $f"; tail -n 3 "$f"; done
  python3 train_tf/gpu_job.py pack /tmp/runs "$OUT" 2
  ls -la "$OUT" ;;
esac
