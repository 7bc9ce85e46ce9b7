"""Re-cut round 4's dry bank (.carry/b66/part-0..3, the 66-minute bank: the same bytes and sha256) into 4 parts
sized for the calls of the respeaker-4mic third cycle (.carry/b66m/part-I/bank-carry.npz.xz.Iof4 + sha256): the
tracked tree leaves about 14.2 MB a call, so part 0 travels with the wheels (4.2 MB), part 1 with the init weights
(3.8 MB), parts 2 and 3 alone. gpu_job.py join_bank joins any 4 parts with one split's names and checks the hash.
Usage (repo root): .venv/bin/python experiments/boards_round4/recut-4mic.py"""
import hashlib
from pathlib import Path

data = b"".join(Path(f".carry/b66/part-{i}/bank-carry.npz.xz.{i}of4").read_bytes() for i in range(4))
sha = Path(".carry/b66/part-0/bank-carry.npz.xz.sha256").read_text()
assert hashlib.sha256(data).hexdigest() == sha.strip(), "the b66 parts do not join to their sha256"
sizes = [9_600_000, 9_900_000, 11_400_000]
sizes.append(len(data) - sum(sizes))
o = 0
for i, s in enumerate(sizes):
    d = Path(f".carry/b66m/part-{i}")
    d.mkdir(parents=True, exist_ok=True)
    (d / f"bank-carry.npz.xz.{i}of4").write_bytes(data[o:o + s])
    (d / "bank-carry.npz.xz.sha256").write_text(sha)
    o += s
print(sizes, len(data))
