#!/usr/bin/env bash
# issue 28.1 round 2: wait up to $1 s for the trainers (wait.py), then bring back each run as it stands: params.json,
# best.weights.h5, log.csv, state.json and the end of its stderr, two runs a tar in $OUT. The export (crosscheck export)
# is done on the CPU at home, so a machine taken back mid-run still leaves the last snapshot.
R=$PWD
cd /tmp/src
python3 $R/experiments/boards_round2/wait.py /tmp/runs "${1:-0}"
rm -rf /tmp/snap && mkdir -p /tmp/snap
for r in R4b R6b RUb MVb UMb MCb; do
  [ -d /tmp/runs/$r ] || continue
  mkdir -p /tmp/snap/$r
  for f in params.json log.csv state.json; do cp /tmp/runs/$r/$f /tmp/snap/$r/ 2>/dev/null; done
  tail -n 6 /tmp/runs/$r.err > /tmp/snap/$r/train.err.tail 2>/dev/null
  for try in 1 2 3; do  # a file being rewritten at an epoch's end: copy again until it opens
    [ -f /tmp/runs/$r/best.weights.h5 ] || break
    cp /tmp/runs/$r/best.weights.h5 /tmp/snap/$r/ && python3 -c "import h5py,sys; h5py.File(sys.argv[1],'r').close()" \
      /tmp/snap/$r/best.weights.h5 2>/dev/null && break
    sleep 3
  done
done
tar -cf $OUT/R4b-R6b.tar -C /tmp/snap $(cd /tmp/snap && ls -d R4b R6b 2>/dev/null) 2>/dev/null
tar -cf $OUT/RUb-MVb.tar -C /tmp/snap $(cd /tmp/snap && ls -d RUb MVb 2>/dev/null) 2>/dev/null
tar -cf $OUT/UMb-MCb.tar -C /tmp/snap $(cd /tmp/snap && ls -d UMb MCb 2>/dev/null) 2>/dev/null
for b in respeaker-4mic respeaker-6mic respeaker-usb-v2 matrix-voice minidsp-uma8 matrix-creator; do
  echo "$b: $(ls /tmp/rir-$b/shard-*.npz 2>/dev/null | wc -l) shards"
done > $OUT/sims.txt
cp /tmp/plan.json $OUT/plan-used.json 2>/dev/null
for r in R4b R6b RUb MVb UMb MCb; do echo "$r: $(tail -n 1 /tmp/snap/$r/log.csv 2>/dev/null) | $(tail -n 1 /tmp/snap/$r/train.err.tail 2>/dev/null)"; done
cat $OUT/sims.txt; ls -la $OUT; nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv,noheader; uptime
