#!/usr/bin/env bash
# issue 28.1 round 4, calls 2 and 3 (carry .carry/b66/part-1, then part-2): stash this bank part; show the simulators
python3 /tmp/src/train_tf/gpu_job.py stash
for b in respeaker-4mic respeaker-6mic respeaker-usb-v2 matrix-voice minidsp-uma8 matrix-creator; do
  echo "$b: $(ls /tmp/rir-$b/shard-*.npz 2>/dev/null | wc -l) shards"; done; uptime
