"""Float Keras models shipped with the package, for `edge-msl calibrate` on a pip install.

    python -m train_tf.pack_weights            (write train_tf/float_models/<array>/ from models/<array>/)
    python -m train_tf.pack_weights --check    (exit 1 naming each packaged model older than models/)

Each ``models/<array>/model.weights.h5`` (float32, ~3.7 MB) becomes a float16, gzip-compressed copy
with the same HDF5 layout (~1.7 MB), which Keras loads into float32 variables; ``params.json`` is
copied as is. The root attribute ``source_sha256`` names the file it came from, so a retrained model
that was not packed again is caught by ``--check`` (and by tests/test_packaging.py). Reads and writes
files only: it must not import TensorFlow.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

PACKAGED = Path(__file__).resolve().parent / "float_models"
CHECKOUT = Path(__file__).resolve().parents[1] / "models"
WEIGHTS = "model.weights.h5"
PARAMS = "params.json"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def pack(src: Path, out: Path) -> int:
    """Write ``out``/{params.json, model.weights.h5 (float16, gzip)} from the model directory ``src``;
    returns the bytes written."""
    import h5py
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (WEIGHTS + ".tmp")
    with h5py.File(src / WEIGHTS, "r") as fin, h5py.File(tmp, "w") as fout:
        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                g = fout.require_group(name)
                g.attrs.update(obj.attrs)
                return
            data = obj[()]
            if data.dtype == np.float32:
                # float16 keeps ~3 significant digits: the fine-tuning starts within ~1e-3 of the float32 model
                data = data.astype(np.float16)
            kw = {"compression": "gzip", "compression_opts": 9, "shuffle": True} if data.ndim else {}
            d = fout.create_dataset(name, data=data, **kw)
            d.attrs.update(obj.attrs)

        fout.attrs.update(fin.attrs)
        fin.visititems(copy)
        fout.attrs["source_sha256"] = sha256(src / WEIGHTS)
    tmp.replace(out / WEIGHTS)
    shutil.copyfile(src / PARAMS, out / PARAMS)
    return (out / WEIGHTS).stat().st_size + (out / PARAMS).stat().st_size


def stale(checkout: Path = CHECKOUT, packaged: Path = PACKAGED) -> list[str]:
    """Arrays whose packaged float model differs from (or is missing for) ``checkout``/<array>/."""
    import h5py

    bad = []
    for src in sorted(p for p in checkout.glob("*") if (p / WEIGHTS).exists() and (p / PARAMS).exists()):
        dst = packaged / src.name
        if not (dst / WEIGHTS).exists() or not (dst / PARAMS).exists():
            bad.append(src.name)
            continue
        with h5py.File(dst / WEIGHTS, "r") as f:
            source = f.attrs.get("source_sha256")
        if source != sha256(src / WEIGHTS) or (dst / PARAMS).read_bytes() != (src / PARAMS).read_bytes():
            bad.append(src.name)
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train_tf.pack_weights", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say which packaged models are stale")
    parser.add_argument("--models", type=Path, default=CHECKOUT, help="model directories (default models/)")
    parser.add_argument("--out", type=Path, default=PACKAGED, help=f"packaged copies (default {PACKAGED})")
    args = parser.parse_args(argv)
    todo = stale(args.models, args.out)
    if args.check:
        if todo:
            print(f"pack_weights: stale packaged float models: {', '.join(todo)}; run python -m train_tf.pack_weights",
                  file=sys.stderr)
            return 1
        return 0
    for name in todo:
        size = pack(args.models / name, args.out / name)
        print(f"{args.out / name}: {size:,} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
