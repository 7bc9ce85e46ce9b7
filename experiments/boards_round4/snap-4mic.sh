#!/usr/bin/env bash
# issue 28.1 round 4, respeaker-4mic third cycle: snap.sh for the one run R4f. snap-4mic.sh WAIT: wait up to WAIT s
# for the trainer (wait.py), then bring back params.json, best.weights.h5 without optimizer state (strip_opt.py),
# log.csv, state.json and the end of its stderr in $OUT/R4f.tar.
R=$PWD
r=R4f
cd /tmp/src
python3 $R/experiments/boards_round4/wait.py /tmp/runs "${1:-0}"
rm -rf /tmp/snap && mkdir -p /tmp/snap/$r
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
tar -cf $OUT/$r.tar -C /tmp/snap $r
echo "respeaker-4mic: $(ls /tmp/rir-respeaker-4mic/shard-*.npz 2>/dev/null | wc -l) shards" > $OUT/sims.txt
cp /tmp/plan.json $OUT/plan-used.json 2>/dev/null
echo "$r: $(tail -n 1 /tmp/snap/$r/log.csv 2>/dev/null) | $(tail -n 1 /tmp/snap/$r/train.err.tail 2>/dev/null)"
cat /tmp/snap/$r/log.csv 2>/dev/null
cat $OUT/sims.txt; ls -la $OUT; nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv,noheader; uptime
