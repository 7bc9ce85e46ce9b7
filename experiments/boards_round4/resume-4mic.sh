#!/usr/bin/env bash
# issue 28.1 round 4, respeaker-4mic third cycle, a second training call on the same warm machine (nothing carried):
# resume-4mic.sh WAIT. Call 4 (`train-4mic.sh 430 24 6.0`) stops the trainer resumably after the epoch that ends past
# 6 minutes, so that snap.sh fits inside the 600 s limit; this call starts it again from /tmp/plan.json (the trainer
# resumes from its state.json and last.weights.h5, the cosine where it stopped, another --max-minutes), then
# snap-4mic.sh WAIT. Check the tar (`tar tvf`) before give_back; after an rc of 124, `snap-4mic.sh 0` on the warm machine.
R=$PWD
cd /tmp/src && python3 train_tf/gpu_job.py start /tmp/plan.json /tmp/runs
cd "$R" && exec bash "$(dirname "$0")/snap-4mic.sh" "${1:-0}"
