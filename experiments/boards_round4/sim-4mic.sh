#!/usr/bin/env bash
# issue 28.1 round 4, respeaker-4mic third cycle, call 1 (carry .whl, .carry/b66m/part-0): sim.sh for one board.
# Install the wheels, unpack the committed code (src.tar.gz = git archive b8377b6) into /tmp/src with the shipped
# respeaker-4mic model, stash bank part 0, start the respeaker-4mic RIR-bank simulator of plan boards-round4-4mic
# (seed 81, 5,000 rooms, 12 workers, PRA_NUM_THREADS=1; its pid file makes gpu_job.py start skip it).
# $1: seconds to sleep before showing the shard count.
BOARDS=respeaker-4mic SEED=81 WORKERS=12 PLAN=experiments/plans/boards-round4-4mic.json \
  exec bash "$(dirname "$0")/sim.sh" "$@"
