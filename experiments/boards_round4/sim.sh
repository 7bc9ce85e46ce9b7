#!/usr/bin/env bash
# issue 28.1 round 4, call 1 (carry .whl, .carry/b66/part-0): install the wheels, unpack the committed code
# (src.tar.gz = git archive b8377b6 train_tf edge_msl convert, binaries left out) into /tmp/src with a copy of the
# six boards' shipped models (the --init-weights of cycle 1), stash bank part 0, start the six RIR-bank simulators of
# plan boards-round4 (seed 71, up to 5,000 rooms, 2 workers each, PRA_NUM_THREADS=1; their pid files make
# gpu_job.py start skip them). $1: seconds to sleep before showing the shard counts.
# BOARDS, SEED, WORKERS, PLAN (environment) change the boards, the bank seed, the workers a simulator and the plan
# (sim-4mic.sh); unset, they are round 4's.
R=$PWD
BOARDS=${BOARDS:-"respeaker-4mic respeaker-6mic respeaker-usb-v2 matrix-voice minidsp-uma8 matrix-creator"}
SEED=${SEED:-71} WORKERS=${WORKERS:-2} PLAN=${PLAN:-experiments/plans/boards-round4.json}
mkdir -p /tmp/whl /tmp/src/models /tmp/runs /tmp/init && cp .whl/*.whl /tmp/whl/
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/whl/*.whl
tar xzf experiments/boards_round4/src.tar.gz -C /tmp/src
for b in $BOARDS; do cp -r models/$b /tmp/src/models/; done
cp "$PLAN" /tmp/plan-committed.json
python3 /tmp/src/train_tf/gpu_job.py stash
cd /tmp/src && ln -sfn /tmp/whl .whl && ln -sfn $R/.carry .carry
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc; free -g | head -2
for b in $BOARDS; do
  PYTHONPATH=/tmp/site:/tmp/src PRA_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 \
    setsid nohup python3 -m train_tf.simulate rir-bank --out /tmp/rir-$b --rooms 5000 --shard-size 20 --workers $WORKERS \
    --seed $SEED --array $b --set array_wall_prob=0.35 --set wall_absorption_spread=1.0 \
    > /tmp/runs/sim-$b.log 2>&1 < /dev/null &
  echo $! > /tmp/runs/sim-$b.pid
done
sleep ${1:-15}
for b in $BOARDS; do echo "$b: $(ls /tmp/rir-$b/shard-*.npz 2>/dev/null | wc -l) shards | $(tail -c 200 /tmp/runs/sim-$b.log | tr '\r' '\n' | tail -n 1)"; done
