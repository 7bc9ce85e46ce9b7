#!/usr/bin/env bash
# issue 28.1 round 3: wait up to $1 s for the trainers (wait.py), then bring back each run as it stands: params.json,
# best.weights.h5 WITHOUT its optimizer state (strip_opt.py: 11.3 MB -> about 3.9 MB; round 2's raw copies passed the
# 16 MiB per file), log.csv, state.json and the end of its stderr, two runs a tar in $OUT. The export (crosscheck
# export) is done on the CPU at home, so a machine taken back mid-run still leaves the last snapshot.
R=$PWD
cd /tmp/src
python3 $R/experiments/boards_round3/wait.py /tmp/runs "${1:-0}"
rm -rf /tmp/snap && mkdir -p /tmp/snap
for r in R4c R6c RUc MVc UMc MCc; do
  [ -d /tmp/runs/$r ] || continue
  mkdir -p /tmp/snap/$r
  for f in params.json log.csv state.json; do cp /tmp/runs/$r/$f /tmp/snap/$r/ 2>/dev/null; done
  tail -n 6 /tmp/runs/$r.err > /tmp/snap/$r/train.err.tail 2>/dev/null
  for try in 1 2 3; do  # a file being rewritten at an epoch's end: copy again until it opens
    [ -f /tmp/runs/$r/best.weights.h5 ] || break
    cp /tmp/runs/$r/best.weights.h5 /tmp/snap/$r/full.h5 && \
      PYTHONPATH=/tmp/site python3 $R/experiments/boards_round3/strip_opt.py /tmp/snap/$r/full.h5 /tmp/snap/$r/best.weights.h5 \
      && break
    sleep 3
  done
  rm -f /tmp/snap/$r/full.h5
done
tar -cf $OUT/R4c-R6c.tar -C /tmp/snap $(cd /tmp/snap && ls -d R4c R6c 2>/dev/null) 2>/dev/null
tar -cf $OUT/RUc-MVc.tar -C /tmp/snap $(cd /tmp/snap && ls -d RUc MVc 2>/dev/null) 2>/dev/null
tar -cf $OUT/UMc-MCc.tar -C /tmp/snap $(cd /tmp/snap && ls -d UMc MCc 2>/dev/null) 2>/dev/null
for b in respeaker-4mic respeaker-6mic respeaker-usb-v2 matrix-voice minidsp-uma8 matrix-creator; do
  echo "$b: $(ls /tmp/rir-$b/shard-*.npz 2>/dev/null | wc -l) shards"
done > $OUT/sims.txt
cp /tmp/plan.json $OUT/plan-used.json 2>/dev/null
for r in R4c R6c RUc MVc UMc MCc; do echo "$r: $(tail -n 1 /tmp/snap/$r/log.csv 2>/dev/null) | $(tail -n 1 /tmp/snap/$r/train.err.tail 2>/dev/null)"; done
cat $OUT/sims.txt; ls -la $OUT; nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv,noheader; uptime
