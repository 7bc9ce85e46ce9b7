#!/usr/bin/env bash
# issue 28.1 round 4, respeaker-4mic third cycle, calls 2 and 3 (carry .carry/b66m/part-1 and runs/bf4m/init, then
# .carry/b66m/part-2): stash this bank part; keep the carried init weights in /tmp/init; show the simulator
python3 /tmp/src/train_tf/gpu_job.py stash
[ -d runs/bf4m/init ] && cp runs/bf4m/init/*.weights.h5 /tmp/init/ && ls -l /tmp/init
echo "respeaker-4mic: $(ls /tmp/rir-respeaker-4mic/shard-*.npz 2>/dev/null | wc -l) shards"; uptime
