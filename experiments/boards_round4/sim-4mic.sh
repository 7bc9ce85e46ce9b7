#!/usr/bin/env bash
# issue 28.1 round 4, respeaker-4mic third cycle, call 1 (carry .whl, .carry/b66m/part-0): sim.sh for one board.
# Install the wheels, unpack the committed code (src.tar.gz = git archive b8377b6) into /tmp/src with the shipped
# respeaker-4mic model, stash bank part 0, start the respeaker-4mic RIR-bank simulator of plan boards-round4-4mic
# (seed 81, 5,000 rooms, 12 workers, PRA_NUM_THREADS=1; its pid file makes gpu_job.py start skip it).
# $1: seconds to sleep before showing the shard count.
R=$PWD
b=respeaker-4mic
mkdir -p /tmp/whl /tmp/src/models /tmp/runs /tmp/init && cp .whl/*.whl /tmp/whl/
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/whl/*.whl
tar xzf experiments/boards_round4/src.tar.gz -C /tmp/src
cp -r models/$b /tmp/src/models/
cp experiments/plans/boards-round4-4mic.json /tmp/plan-committed.json
python3 /tmp/src/train_tf/gpu_job.py stash
cd /tmp/src && ln -sfn /tmp/whl .whl && ln -sfn $R/.carry .carry
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc; free -g | head -2
PYTHONPATH=/tmp/site:/tmp/src PRA_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 \
  setsid nohup python3 -m train_tf.simulate rir-bank --out /tmp/rir-$b --rooms 5000 --shard-size 20 --workers 12 \
  --seed 81 --array $b --set array_wall_prob=0.35 --set wall_absorption_spread=1.0 \
  > /tmp/runs/sim-$b.log 2>&1 < /dev/null &
echo $! > /tmp/runs/sim-$b.pid
sleep ${1:-15}
echo "$b: $(ls /tmp/rir-$b/shard-*.npz 2>/dev/null | wc -l) shards | $(tail -c 200 /tmp/runs/sim-$b.log | tr '\r' '\n' | tail -n 1)"
