#!/usr/bin/env bash
# issue 28.1 round 4, respeaker-4mic third cycle, the training call (carry .carry/b66m/part-3):
# train-4mic.sh WAIT EPOCHS MINUTES. Stash the last bank part, write EPOCHS and MINUTES into the plan copy
# (/tmp/plan.json), gpu_job.py start (joins the 4 parts, checks the sha256, starts run R4f from
# /tmp/init/R4e.weights.h5), then snap-4mic.sh WAIT.
export R=$PWD
python3 /tmp/src/train_tf/gpu_job.py stash
ls /tmp/init/R4e.weights.h5 || exit 1
cd /tmp/src
python3 - "$2" "$3" <<'PY'
import json, sys
plan = json.load(open("/tmp/plan-committed.json"))
for run in plan["runs"]:
    a = run["args"]
    a[a.index("--epochs") + 1] = sys.argv[1]
    a[a.index("--max-minutes") + 1] = sys.argv[2]
json.dump(plan, open("/tmp/plan.json", "w"), indent=1)
print("runs", [r["name"] for r in plan["runs"]], "epochs", sys.argv[1], "max-minutes", sys.argv[2])
PY
python3 train_tf/gpu_job.py start /tmp/plan.json /tmp/runs
cd $R && bash experiments/boards_round4/snap-4mic.sh "$1"
