"""Train several models at once on a GPU machine that has JAX but no TensorFlow, in few long calls.

    python3 train_tf/gpu_job.py start PLAN.json RUNS_DIR   # install, simulate RIR banks, start trainers (detached)
    python3 train_tf/gpu_job.py simulate PLAN.json RUNS_DIR WORKERS  # only the plan's RIR-bank simulators
    python3 train_tf/gpu_job.py wait RUNS_DIR SECONDS      # print progress until all runs end or SECONDS pass
    python3 train_tf/gpu_job.py pack RUNS_DIR OUT_DIR      # best weights + params + log of each run, in tarballs
    python3 train_tf/gpu_job.py split BANK.npz.xz N        # here: cut a dry bank too big for one call's carry
    python3 train_tf/gpu_job.py stash                      # there: keep this call's carried part in /tmp/carry

Simulators and trainers run in their own process sessions, so they go on between calls while the
machine stays warm; every trainer resumes from its run directory, so a lost machine costs only
the epochs since the last checkpoint. The plan (JSON) names the RIR banks to simulate (one per
array) and the runs (the plans of past runs are in ``experiments/plans/``); each run is placed on a GPU
round-robin. Needs the Keras/namex/optree/pyroomacoustics cp312 wheels in ``.whl/`` and the dry bank
as ``.carry/bank-carry.npz.xz``.

A call carries at most 64 MiB with the tracked tree, so a bigger bank travels in parts:
``split`` writes ``.carry/part-I/bank-carry.npz.xz.IofN`` (+ the whole file's sha256); each call
but the last carries one part and runs ``stash`` (the machine keeps /tmp while warm), the last
carries its part and runs ``start``, which joins every part, checks the hash and unpacks.
Two jobs on one warm machine each get their own bank: ``stash`` drops another bank's parts, and ``start``
joins again unless ``/tmp/bank.npz`` came from this very carry (its ``.sha256`` sidecar); before this, a second
job silently trained on the first one's bank (boards-round-4.md, "The fifth session").
Not for the CPU: there, run ``train_tf.simulate rir-bank`` and ``train_tf.train`` directly.
"""

from __future__ import annotations

import glob
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

SITE = "/tmp/site"
BANK = "/tmp/bank.npz"
CARRY = ".carry"
STASH = "/tmp/carry"
BANK_XZ = "bank-carry.npz.xz"


class CarryError(RuntimeError):
    """The carried dry bank is missing, incomplete or corrupt."""


def split_bank(src: str, n_parts: int, carry_dir: str = CARRY) -> list[Path]:
    """Cut ``src`` (an xz-compressed bank) into ``n_parts`` files under ``carry_dir/part-I/``."""
    data = Path(src).read_bytes()
    if n_parts < 1:
        raise ValueError(f"parts must be >= 1, got {n_parts}")
    digest = hashlib.sha256(data).hexdigest()
    size = -(-len(data) // n_parts)
    out = []
    for i in range(n_parts):
        d = Path(carry_dir) / f"part-{i}"
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob(f"{BANK_XZ}.*"):
            old.unlink()
        part = d / f"{BANK_XZ}.{i}of{n_parts}"
        part.write_bytes(data[i * size:(i + 1) * size])
        (d / f"{BANK_XZ}.sha256").write_text(digest + "\n")
        out.append(part)
    return out


def _parts(dirs: list[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in dirs:
        for f in sorted(d.rglob(f"{BANK_XZ}.*")) if d.is_dir() else []:
            found.setdefault(f.name, f)
    return found


def stash(carry_dir: str = CARRY, stash_dir: str = STASH) -> list[str]:
    """Copy the carried bank parts into ``stash_dir`` (kept between calls while the machine is warm). Parts
    of another bank stashed by an earlier job on the same machine (another sha256) are dropped first, so
    that the join does not mix two splits."""
    dst = Path(stash_dir)
    dst.mkdir(parents=True, exist_ok=True)
    carried = _parts([Path(carry_dir)])
    digest = carried.get(f"{BANK_XZ}.sha256")
    held_digest = dst / f"{BANK_XZ}.sha256"
    if digest is not None and held_digest.exists() and held_digest.read_text() != digest.read_text():
        for old in dst.glob(f"{BANK_XZ}.*"):
            old.unlink()
        print(f"dropped another bank's parts from {dst}", flush=True)
    for name, f in carried.items():
        shutil.copyfile(f, dst / name)
    held = sorted(p.name for p in dst.glob(f"{BANK_XZ}.*"))
    print(f"stashed in {dst}: {held}", flush=True)
    return held


def carried_digest(dirs: list[str]) -> str | None:
    """The sha256 of the compressed dry bank carried in ``dirs``: its parts' ``.sha256`` file, else the whole
    ``.npz.xz`` hashed; None when neither is there."""
    for d in dirs:
        whole = Path(d) / BANK_XZ
        if whole.exists():
            return hashlib.sha256(whole.read_bytes()).hexdigest()
    f = _parts([Path(d) for d in dirs]).get(f"{BANK_XZ}.sha256")
    return f.read_text().strip() if f is not None else None


def ensure_bank(dirs: list[str], out: str) -> bool:
    """Join the carried bank to ``out`` unless ``out`` already holds that very bank (its ``.sha256`` sidecar,
    written by :func:`join_bank`, names the carry it came from). A bank left by another job on the same warm
    machine is replaced; with nothing carried, a bank already there is kept. Returns whether it joined."""
    want = carried_digest(dirs)
    have = Path(out + ".sha256")
    if Path(out).exists() and (want is None or (have.exists() and have.read_text().strip() == want)):
        return False
    join_bank(dirs, out)
    return True


def join_bank(dirs: list[str], out: str) -> None:
    """Decompress the dry bank to ``out`` from the whole ``.npz.xz`` or from all its parts in ``dirs``."""
    for d in dirs:
        whole = Path(d) / BANK_XZ
        if whole.exists():
            with lzma.open(whole) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
            Path(out + ".sha256").write_text(hashlib.sha256(whole.read_bytes()).hexdigest() + "\n")
            return
    found = _parts([Path(d) for d in dirs])
    parts = {k: v for k, v in found.items() if not k.endswith(".sha256")}
    if not parts:
        raise CarryError(f"no dry bank: neither {BANK_XZ} nor its parts in {', '.join(dirs)}; carry .carry "
                         f"(or .carry/part-I, stashing every part but the last)")
    counts = {k.rsplit(".", 1)[1].split("of")[1] for k in parts}
    if len(counts) != 1:
        raise CarryError(f"bank parts of different splits: {sorted(parts)}; split once and carry those")
    n = int(counts.pop())
    names = [f"{BANK_XZ}.{i}of{n}" for i in range(n)]
    missing = [m for m in names if m not in parts]
    if missing:
        raise CarryError(f"bank parts missing: {missing} (have {sorted(parts)}); carry and stash them first")
    h = hashlib.sha256()
    tmp = Path(out + ".xz")
    with open(tmp, "wb") as dst:  # join and hash in one pass
        for m in names:
            data = parts[m].read_bytes()
            h.update(data)
            dst.write(data)
    want = found.get(f"{BANK_XZ}.sha256")
    if want is None or want.read_text().strip() != h.hexdigest():
        tmp.unlink()
        raise CarryError("bank parts do not join to the split file (sha256 differs): split again and carry all parts")
    with lzma.open(tmp) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    tmp.unlink()
    Path(out + ".sha256").write_text(h.hexdigest() + "\n")


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONPATH": f"{SITE}:{os.getcwd()}", "KERAS_BACKEND": "jax", "PRA_NUM_THREADS": "1",
                "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    env.update(extra or {})
    return env


def _gpus() -> int:
    out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    names = [n for n in out.stdout.splitlines() if n.strip()]
    print(f"GPUs: {names}", flush=True)
    return max(1, len(names))


def start(plan_path: str, runs_dir: str) -> None:
    """Install the wheels, unpack the dry bank, start every simulator and trainer detached."""
    plan = json.loads(Path(plan_path).read_text())
    runs = Path(runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    wheels = sorted(glob.glob(".whl/*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--upgrade", "--target", SITE, *wheels], check=True)
    if ensure_bank([CARRY, STASH], BANK):
        print(f"joined the carried dry bank into {BANK}", flush=True)
    n_gpus = _gpus()
    cores = os.cpu_count() or 16
    # simulator workers in proportion to each bank's work (rooms x mics), leaving cores to the trainers
    sim_cores = max(len(plan["banks"]), cores - 2 * len(plan["runs"]) - 2)
    work = {name: b["rooms"] * b["mics"] for name, b in plan["banks"].items()}
    total = sum(work.values())
    simulate(plan, runs, {name: max(1, round(sim_cores * w / total)) for name, w in work.items()})
    per_gpu: dict[int, int] = {}
    for i, run in enumerate(plan["runs"]):
        per_gpu[i % n_gpus] = per_gpu.get(i % n_gpus, 0) + 1
    for i, run in enumerate(plan["runs"]):
        name = run["name"]
        if (runs / f"{name}.pid").exists() and _alive(int((runs / f"{name}.pid").read_text())):
            continue
        gpu = i % n_gpus
        rir = f"/tmp/rir-{run['bank']}"
        # wait for the validation shard (0) and a first training shard, then train
        script = (f"until [ -f {rir}/shard-00000.npz ] && [ -f {rir}/shard-00001.npz ]; do sleep 2; done; "
                  f"exec {sys.executable} -m train_tf.train --rir-bank {rir} --bank {BANK} --out {runs / name} "
                  f"--quiet " + " ".join(f"'{a}'" for a in run["args"]))
        env = _env({"CUDA_VISIBLE_DEVICES": str(gpu),
                    "XLA_PYTHON_CLIENT_MEM_FRACTION": str(round(0.85 / per_gpu[gpu], 3))})
        p = subprocess.Popen(["bash", "-c", script], env=env, stdout=open(runs / f"{name}.out", "a"),
                             stderr=open(runs / f"{name}.err", "a"), stdin=subprocess.DEVNULL,
                             start_new_session=True)
        (runs / f"{name}.pid").write_text(str(p.pid))
        print(f"run {name} on GPU {gpu} (pid {p.pid})", flush=True)


def simulate(plan: dict, runs: Path, workers: dict[str, int]) -> None:
    """Start the plan's RIR-bank simulators detached (``workers[name]`` processes each), but for a bank already
    done or already being simulated (its pid file in ``runs``)."""
    runs.mkdir(parents=True, exist_ok=True)
    for name, bank in plan["banks"].items():
        out = Path(f"/tmp/rir-{name}")
        if (out / "done.json").exists() or (runs / f"sim-{name}.pid").exists():
            continue
        cmd = [sys.executable, "-m", "train_tf.simulate", "rir-bank", "--out", str(out), "--rooms", str(bank["rooms"]),
               "--shard-size", "20", "--workers", str(workers[name]), "--seed", str(bank["seed"]), "--array",
               bank["array"], *bank.get("args", [])]
        p = subprocess.Popen(cmd, env=_env(), stdout=open(runs / f"sim-{name}.log", "w"), stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        (runs / f"sim-{name}.pid").write_text(str(p.pid))
        print(f"simulating {name}: {bank['rooms']} rooms on {workers[name]} workers (pid {p.pid})", flush=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # a zombie (exited child of an earlier call's process) is not alive
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _last_epoch(run_dir: Path) -> str:
    log = run_dir / "log.csv"
    if not log.exists():
        return "starting"
    rows = log.read_text().strip().splitlines()
    return rows[-1] if len(rows) > 1 else "first epoch"


def wait(runs_dir: str, seconds: float) -> None:
    """Print each run's last epoch every minute until all trainers end or ``seconds`` pass."""
    runs = Path(runs_dir)
    t0 = time.time()
    while True:
        pids = {p.stem: int(p.read_text()) for p in runs.glob("*.pid")}
        live = {n for n, pid in pids.items() if _alive(pid)}
        trainers = [n for n in pids if not n.startswith("sim-")]
        print(f"--- {time.time() - t0:.0f} s", flush=True)
        for n in sorted(pids):
            if n.startswith("sim-"):
                done = Path(f"/tmp/rir-{n[4:]}/done.json").exists()
                shards = len(glob.glob(f"/tmp/rir-{n[4:]}/shard-*.npz"))
                print(f"{n}: {shards} shards{' done' if done else ''}", flush=True)
            else:
                print(f"{n}: {'running' if n in live else 'ended'}: {_last_epoch(runs / n)}", flush=True)
        if not any(n in live for n in trainers) or time.time() - t0 > seconds:
            break
        time.sleep(60)
    for n in trainers:
        if n not in live:
            err = (runs / f"{n}.err").read_text().strip().splitlines()[-3:]
            print(f"== {n} ended: {' | '.join(err)}", flush=True)


def pack(runs_dir: str, out_dir: str, per_tar: int = 3) -> None:
    """Tarballs of each run's best and last weights, params.json, log.csv (at most ``per_tar`` runs each)."""
    runs = Path(runs_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in runs.iterdir() if p.is_dir() and (p / "params.json").exists())
    for k in range(0, len(names), per_tar):
        group = names[k:k + per_tar]
        with tarfile.open(out / f"runs-{k // per_tar}.tar", "w") as tar:
            for n in group:
                for f in ("params.json", "log.csv", "best.weights.h5", "state.json"):
                    if (runs / n / f).exists():
                        tar.add(runs / n / f, arcname=f"{n}/{f}")
        print(f"packed {group}", flush=True)


def main(argv: list[str]) -> int:
    """Dispatch ``start``, ``simulate``, ``wait``, ``pack``, ``split`` or ``stash``."""
    if not argv or argv[0] not in ("start", "simulate", "wait", "pack", "split", "stash"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if argv[0] == "start":
            start(argv[1], argv[2])
        elif argv[0] == "simulate":
            plan = json.loads(Path(argv[1]).read_text())
            simulate(plan, Path(argv[2]), {name: int(argv[3]) for name in plan["banks"]})
        elif argv[0] == "wait":
            wait(argv[1], float(argv[2]))
        elif argv[0] == "split":
            for part in split_bank(argv[1], int(argv[2])):
                print(f"{part} ({part.stat().st_size / 2**20:.1f} MiB)")
        elif argv[0] == "stash":
            stash()
        else:
            pack(argv[1], argv[2])
    except CarryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
