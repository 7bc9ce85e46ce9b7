"""Copy a Keras weights file without its optimizer state (the top-level 'optimizer' group): what an uncompiled
model loads (crosscheck export reads it the same way), at a third of the size. Fails (exit 1) on a file that does
not open, so snap.sh copies a file being rewritten again.
Usage: python3 strip_opt.py IN.weights.h5 OUT.weights.h5"""
import sys

import h5py

with h5py.File(sys.argv[1], "r") as src, h5py.File(sys.argv[2], "w") as dst:
    for k, v in src.attrs.items():
        dst.attrs[k] = v
    for key in src:
        if key != "optimizer":
            src.copy(src[key], dst, name=key)
