#!/usr/bin/env bash
# issue 28.1, board models round 6 (plan experiments/plans/boards-round6.json; report docs/experiments/boards-round-6.md).
# Run on the device machine from the repository root, one phase a call, the calls one after another (a warm machine
# goes back after 30 s idle):
#   call.sh sim       carry .whl and .carry/part-0: install the wheels (kept in /tmp/whl-keep), stash bank part 0,
#                     start the plan's six RIR-bank simulators (2 workers each; their pid files make gpu_job.py start
#                     skip them)
#   call.sh stash     carry .carry/part-1: stash it
#   call.sh train S   carry .carry/part-2: join the bank (sha256 checked), start the six trainers, wait up to S seconds
#                     for them, then pack
#   call.sh pack S    wait up to S seconds more, then pack
# pack: each run as it stands (params.json, log.csv, state.json, the end of its stderr, best.weights.h5 without its
# optimizer state: experiments/boards_round4/strip_opt.py), one tar a run in $OUT (RUN.tar, about 4 MB).
set -u
PLAN=experiments/plans/boards-round6.json
RUNS="R46 R66 RU6 MV6 MC6 UM6"
export PYTHONPATH=/tmp/site:$PWD PRA_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 KERAS_BACKEND=jax

alive() {  # a trainer's process is there and not a zombie
  local pid; pid=$(cat /tmp/runs/$1.pid 2>/dev/null) || return 1
  [ -e /proc/$pid ] && [ "$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)" != Z ]
}

progress() {
  for r in $RUNS; do
    echo "$r: $(alive $r && echo running || echo ended): $(tail -n 1 /tmp/runs/$r/log.csv 2>/dev/null)"
  done
  for f in /tmp/rir-*; do echo "$f: $(ls $f/shard-*.npz 2>/dev/null | wc -l) shards"; done
}

wait_runs() {  # up to $1 seconds, checking every 10 s, progress every 60 s
  local t0=$SECONDS n=0
  while [ $((SECONDS - t0)) -lt "$1" ]; do
    local any=0
    for r in $RUNS; do alive $r && any=1; done
    [ $any = 0 ] && break
    sleep 10; n=$((n + 1))
    [ $((n % 6)) = 0 ] && { echo "--- $((SECONDS - t0)) s"; progress; }
  done
  echo "=== waited $((SECONDS - t0)) s"; progress
}

pack() {
  rm -rf /tmp/snap && mkdir -p /tmp/snap
  for r in $RUNS; do
    [ -d /tmp/runs/$r ] || continue
    mkdir -p /tmp/snap/$r
    for f in params.json log.csv state.json; do cp /tmp/runs/$r/$f /tmp/snap/$r/ 2>/dev/null; done
    tail -n 6 /tmp/runs/$r.err > /tmp/snap/$r/train.err.tail 2>/dev/null
    for try in 1 2 3; do  # a file being rewritten at an epoch's end: copy again until it opens
      [ -f /tmp/runs/$r/best.weights.h5 ] || break
      cp /tmp/runs/$r/best.weights.h5 /tmp/snap/$r/full.h5 && \
        python3 experiments/boards_round4/strip_opt.py /tmp/snap/$r/full.h5 /tmp/snap/$r/best.weights.h5 && break
      sleep 3
    done
    rm -f /tmp/snap/$r/full.h5
    tar -cf "$OUT/$r.tar" -C /tmp/snap "$r"
  done
  for r in $RUNS; do echo "$r: $(tail -n 1 /tmp/snap/$r/train.err.tail 2>/dev/null)"; done
  ls -la "$OUT"; nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv,noheader; uptime
}

case "$1" in
sim)
  rm -rf /tmp/whl-keep && cp -r .whl /tmp/whl-keep
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  python3 train_tf/gpu_job.py stash
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc; free -g | head -2
  python3 train_tf/gpu_job.py simulate "$PLAN" /tmp/runs 2
  sleep 5; for f in /tmp/runs/sim-*.log; do echo "$f: $(tail -c 200 $f | tr '\r' '\n' | tail -n 1)"; done ;;
stash)
  python3 train_tf/gpu_job.py stash; progress ;;
train)
  ls .whl/*.whl > /dev/null 2>&1 || { rm -rf .whl; ln -sfn /tmp/whl-keep .whl; }
  python3 train_tf/gpu_job.py start "$PLAN" /tmp/runs || exit 1
  cat /tmp/bank.npz.sha256
  wait_runs "$2"; pack ;;
pack)
  wait_runs "$2"; pack ;;
esac
