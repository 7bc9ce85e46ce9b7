#!/usr/bin/env bash
# issue 28.1 round 3, last call (warm, nothing carried): wait up to $1 s for the trainers, export each run's
# best weights (crosscheck export, JAX on the CPU, in parallel), tar each into $OUT.
R=$PWD
cd /tmp/src
python3 $R/experiments/boards_round3/wait.py /tmp/runs "$1"
export PYTHONPATH=/tmp/site:/tmp/src KERAS_BACKEND=jax JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1
RUNS="R4c R6c RUc MVc UMc MCc"
mkdir -p /tmp/exp
for r in $RUNS; do
  [ -f /tmp/runs/$r/best.weights.h5 ] && python3 -m train_tf.crosscheck export /tmp/runs/$r /tmp/exp/$r > /tmp/exp/$r.log 2>&1 &
done
wait
for r in $RUNS; do
  [ -f /tmp/exp/$r/model.weights.h5 ] || { echo "no export of $r"; tail -n 3 /tmp/exp/$r.log; continue; }
  cp /tmp/runs/$r/state.json /tmp/runs/$r/log.csv /tmp/exp/$r/ 2>/dev/null
  tail -n 8 /tmp/runs/$r.err > /tmp/exp/$r/train.err.tail 2>/dev/null
  tar -cf $OUT/$r.tar -C /tmp/exp $r
  echo "$r: $(tail -n 1 /tmp/runs/$r/log.csv) | $(tail -n 1 /tmp/exp/$r.log)"
done
for b in respeaker-4mic respeaker-6mic respeaker-usb-v2 matrix-voice minidsp-uma8 matrix-creator; do
  echo "$b: $(ls /tmp/rir-$b/shard-*.npz 2>/dev/null | wc -l) shards | $(tail -c 200 /tmp/runs/sim-$b.log | tr '\r' '\n' | tail -n 1)"
done > $OUT/sims.txt
cp /tmp/plan.json $OUT/plan-used.json; cat $OUT/sims.txt; ls -la $OUT
