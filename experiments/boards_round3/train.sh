#!/usr/bin/env bash
# issue 28.1 round 3, call 4 (carry .carry/b66/part-3): gpu_job.py start (joins the 4 bank parts, checks the
# sha256, starts the six trainers of plan boards-round3 from /tmp/src), then snap.sh $1 (wait up to $1 s, bring the
# runs back as they stand).
# $2 $3 (optional): epochs and --max-minutes written into the plan copy the trainers get (/tmp/plan.json).
R=$PWD
python3 /tmp/src/train_tf/gpu_job.py stash
cd /tmp/src
python3 - "$2" "$3" <<'PY'
import json, sys
plan = json.load(open("/tmp/plan-committed.json"))
for run in plan["runs"]:
    a = run["args"]
    if sys.argv[1]: a[a.index("--epochs") + 1] = sys.argv[1]
    if sys.argv[2]: a[a.index("--max-minutes") + 1] = sys.argv[2]
json.dump(plan, open("/tmp/plan.json", "w"), indent=1)
print("epochs", a[a.index("--epochs") + 1], "max-minutes", a[a.index("--max-minutes") + 1])
PY
python3 train_tf/gpu_job.py start /tmp/plan.json /tmp/runs
cd $R && bash experiments/boards_round3/snap.sh "$1"
