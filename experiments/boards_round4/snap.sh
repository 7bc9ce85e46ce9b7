#!/usr/bin/env bash
# issue 28.1 round 4: snap.sh WAIT "RUNS": wait up to WAIT s for the trainers (wait.py), then bring back each of RUNS
# as it stands: params.json, best.weights.h5 WITHOUT its optimizer state (strip_opt.py, about 3.9 MB), log.csv,
# state.json and the end of its stderr, two runs a tar in $OUT. The export (crosscheck export) is done on the CPU at
# home, so a machine taken back mid-run still leaves the last snapshot.
R=$PWD
RUNS=${2:-"R4d R6d RUd MVd UMd MCd"}
cd /tmp/src
python3 $R/experiments/boards_round4/wait.py /tmp/runs "${1:-0}"
rm -rf /tmp/snap && mkdir -p /tmp/snap
for r in $RUNS; do
  [ -d /tmp/runs/$r ] || continue
  mkdir -p /tmp/snap/$r
  for f in params.json log.csv state.json; do cp /tmp/runs/$r/$f /tmp/snap/$r/ 2>/dev/null; done
  tail -n 6 /tmp/runs/$r.err > /tmp/snap/$r/train.err.tail 2>/dev/null
  for try in 1 2 3; do  # a file being rewritten at an epoch's end: copy again until it opens
    [ -f /tmp/runs/$r/best.weights.h5 ] || break
    cp /tmp/runs/$r/best.weights.h5 /tmp/snap/$r/full.h5 && \
      PYTHONPATH=/tmp/site python3 $R/experiments/boards_round4/strip_opt.py /tmp/snap/$r/full.h5 /tmp/snap/$r/best.weights.h5 \
      && break
    sleep 3
  done
  rm -f /tmp/snap/$r/full.h5
done
set -- $RUNS
while [ $# -gt 0 ]; do
  have=$(cd /tmp/snap && ls -d $1 $2 2>/dev/null)
  [ -n "$have" ] && tar -cf $OUT/$1-$2.tar -C /tmp/snap $have
  shift 2
done
for b in respeaker-4mic respeaker-6mic respeaker-usb-v2 matrix-voice minidsp-uma8 matrix-creator; do
  echo "$b: $(ls /tmp/rir-$b/shard-*.npz 2>/dev/null | wc -l) shards"
done > $OUT/sims.txt
cp /tmp/plan.json $OUT/plan-used.json 2>/dev/null; cp /tmp/plan2.json $OUT/plan2-used.json 2>/dev/null
for r in $RUNS; do echo "$r: $(tail -n 1 /tmp/snap/$r/log.csv 2>/dev/null) | $(tail -n 1 /tmp/snap/$r/train.err.tail 2>/dev/null)"; done
cat $OUT/sims.txt; ls -la $OUT; nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv,noheader; uptime
