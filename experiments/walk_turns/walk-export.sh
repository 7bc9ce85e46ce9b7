#!/usr/bin/env bash
# issue 27, call 2 (warm): wait up to $1 s for the trainers, export each run's best weights (JAX on the CPU; runs $RUNS, default DW0 DW1 DG0), tar into $OUT
cd /tmp/src
python3 train_tf/gpu_job.py wait /tmp/runs "$1"
export PYTHONPATH=/tmp/site:/tmp/src KERAS_BACKEND=jax JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1
mkdir -p /tmp/exp
for r in ${RUNS:-DW0 DW1 DG0}; do
  [ -f /tmp/runs/$r/best.weights.h5 ] && python3 -m train_tf.crosscheck export /tmp/runs/$r /tmp/exp/$r > /tmp/exp/$r.log 2>&1 &
done
wait
for r in ${RUNS:-DW0 DW1 DG0}; do
  [ -f /tmp/exp/$r/model.weights.h5 ] || { echo "no export of $r"; tail -n 3 /tmp/exp/$r.log; continue; }
  cp /tmp/runs/$r/state.json /tmp/runs/$r/log.csv /tmp/exp/$r/ 2>/dev/null
  tail -n 5 /tmp/runs/$r.err > /tmp/exp/$r/train.err.tail 2>/dev/null
  tar -cf $OUT/$r.tar -C /tmp/exp $r
  echo "$r: $(tail -n 1 /tmp/runs/$r/log.csv) | $(tail -n 1 /tmp/exp/$r.log)"
done
ls -la $OUT; tail -c 300 /tmp/runs/sim-walk.log | tr '\r' '\n' | tail -n 1
