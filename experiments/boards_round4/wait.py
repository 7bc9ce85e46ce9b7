"""Wait up to SECONDS for the trainers of RUNS_DIR (polling every 5 s; gpu_job.py wait polls every 60 s, which
can overrun a call's limit or waste device time); print each run's last epoch every minute and at the end.
Usage: python3 wait.py RUNS_DIR SECONDS (run from /tmp/src)."""
import glob, sys, time
from pathlib import Path
sys.path.insert(0, "train_tf")
from gpu_job import _alive, _last_epoch

runs, seconds = Path(sys.argv[1]), float(sys.argv[2])
t0 = time.time()
last = -1e9


def show():
    print(f"--- {time.time() - t0:.0f} s", flush=True)
    for p in sorted(runs.glob("*.pid")):
        n = p.stem
        if n.startswith("sim-"):
            print(f"{n}: {len(glob.glob(f'/tmp/rir-{n[4:]}/shard-*.npz'))} shards", flush=True)
        else:
            print(f"{n}: {'running' if _alive(int(p.read_text())) else 'ended'}: {_last_epoch(runs / n)}", flush=True)


while True:
    trainers = [p for p in runs.glob("*.pid") if not p.stem.startswith("sim-")]
    live = [p for p in trainers if _alive(int(p.read_text()))]
    if not live or time.time() - t0 > seconds:
        break
    if time.time() - last >= 60:
        show()
        last = time.time()
    time.sleep(5)
show()
