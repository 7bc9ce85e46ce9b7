#!/usr/bin/env bash
# issue 28.1 round 4, respeaker-4mic third cycle, the training call (carry .carry/b66m/part-3):
# train-4mic.sh WAIT EPOCHS MINUTES. train.sh's cycle 1 on the plan copy sim-4mic.sh left (/tmp/plan-committed.json:
# boards-round4-4mic): stash the last bank part, write EPOCHS and MINUTES into /tmp/plan.json, gpu_job.py start
# (joins the 4 parts, checks the sha256, starts run R4f from /tmp/init/R4e.weights.h5), then snap.sh WAIT R4f.
ls /tmp/init/R4e.weights.h5 || exit 1
RUNS=R4f exec bash "$(dirname "$0")/train.sh" "$1" "$2" "$3" 1
