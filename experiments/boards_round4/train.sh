#!/usr/bin/env bash
# issue 28.1 round 4, training calls. train.sh WAIT EPOCHS MINUTES [CYCLE]
# cycle 1 (call 4, carry .carry/b66/part-3): gpu_job.py start (joins the 4 bank parts, checks the sha256, starts the
#   six trainers R4d..MCd of plan boards-round4 from /tmp/src), then snap.sh WAIT for those runs.
# cycle 2 (call 5, the same warm machine, nothing carried): each cycle-1 run that has ended starts again as R4e..MCe,
#   a new cosine cycle from its best weights without optimizer state (/tmp/init/<run>.weights.h5, strip_opt.py),
#   seed 5, the same arguments otherwise; then snap.sh WAIT for the cycle-2 runs (cycle 1's stay as they came back).
# EPOCHS and MINUTES are written into the plan copy the trainers get (/tmp/plan.json or /tmp/plan2.json).
# RUNS (environment): the runs snap.sh brings back, when the plan is not round 4's six (train-4mic.sh).
export R=$PWD
CYCLE=${4:-1}
[ "$CYCLE" = 1 ] && python3 /tmp/src/train_tf/gpu_job.py stash
cd /tmp/src
mkdir -p /tmp/init
python3 - "$2" "$3" "$CYCLE" <<'PY'
import json, os, subprocess, sys
plan = json.load(open("/tmp/plan-committed.json"))
cycle = sys.argv[3]
keep = []
for run in plan["runs"]:
    a = run["args"]
    if sys.argv[1]: a[a.index("--epochs") + 1] = sys.argv[1]
    if sys.argv[2]: a[a.index("--max-minutes") + 1] = sys.argv[2]
    if cycle == "2":
        c1 = run["name"]
        pid = open(f"/tmp/runs/{c1}.pid").read().strip() if os.path.exists(f"/tmp/runs/{c1}.pid") else None
        if pid and os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z":
            print(f"{c1} still running: no cycle 2 for it"); continue
        best = f"/tmp/runs/{c1}/best.weights.h5"
        if not os.path.exists(best):
            print(f"{c1}: no best weights: no cycle 2 for it"); continue
        init = f"/tmp/init/{c1}.weights.h5"
        subprocess.run([sys.executable, os.environ["R"] + "/experiments/boards_round4/strip_opt.py", best, init],
                       check=True, env=dict(os.environ, PYTHONPATH="/tmp/site"))
        a[a.index("--init-weights") + 1] = init
        a[a.index("--seed") + 1] = "5"
        run["name"] = c1[:-1] + "e"
    keep.append(run)
plan["runs"] = keep
out = "/tmp/plan.json" if cycle == "1" else "/tmp/plan2.json"
json.dump(plan, open(out, "w"), indent=1)
print("cycle", cycle, "runs", [r["name"] for r in keep], "epochs", a[a.index("--epochs") + 1],
      "max-minutes", a[a.index("--max-minutes") + 1])
PY
if [ "$CYCLE" = 1 ]; then python3 train_tf/gpu_job.py start /tmp/plan.json /tmp/runs; RUNS=${RUNS:-"R4d R6d RUd MVd UMd MCd"}
else python3 train_tf/gpu_job.py start /tmp/plan2.json /tmp/runs; RUNS=${RUNS:-"R4e R6e RUe MVe UMe MCe"}; fi
cd $R && bash experiments/boards_round4/snap.sh "$1" "$RUNS"
