#!/usr/bin/env bash
# issue 27, call 1 (carry .whl, .carry/part-0): install the wheels, copy the code to /tmp/src, stash
# this part of the dry bank, start the walking-chain RIR bank of plan walk-turns (gpu_job.py start's command line,
# 12 workers; its pid file makes gpu_job.py start skip it later).
R=$PWD
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
mkdir -p /tmp/runs /tmp/src && cp -r train_tf edge_msl convert /tmp/src/ && python3 train_tf/gpu_job.py stash
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
cd /tmp/src
PYTHONPATH=/tmp/site:/tmp/src PRA_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 \
  setsid nohup python3 -m train_tf.simulate rir-bank --out /tmp/rir-walk --rooms 3000 --shard-size 20 --workers 12 \
  --seed 31 --array uca8-r10 --set array_wall_prob=0.35 --set wall_absorption_spread=1.0 --set move_chains=3 \
  > /tmp/runs/sim-walk.log 2>&1 < /dev/null &
echo $! > /tmp/runs/sim-walk.pid
sleep 20; tail -c 300 /tmp/runs/sim-walk.log | tr '\r' '\n' | tail -n 2
