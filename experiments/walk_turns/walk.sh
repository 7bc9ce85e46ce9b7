#!/usr/bin/env bash
# issue 27, call 1 (carry .whl, .carry/part-2; parts 0 and 1 stashed by walk-sim.sh and a `gpu_job.py stash` call): unpack the committed code into /tmp/src,
# start the walking-chain RIR bank and the trainers of experiments/plans/walk-turns.json (or $PLAN, runs $RUNS), wait up to $1 s.
R=$PWD
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
python3 train_tf/gpu_job.py stash
cd /tmp/src && ln -sfn $R/models models && ln -sfn $R/.whl .whl && ln -sfn $R/.carry .carry
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
python3 train_tf/gpu_job.py start ${PLAN:-experiments/plans/walk-turns.json} /tmp/runs && python3 train_tf/gpu_job.py wait /tmp/runs "$1"
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv; uptime
for r in ${RUNS:-DW0 DW1 DG0}; do echo "== $r"; tail -n 2 /tmp/runs/$r.err; done
tail -c 400 /tmp/runs/sim-walk.log | tr '\r' '\n' | tail -n 2
