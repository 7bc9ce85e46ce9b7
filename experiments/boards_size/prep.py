"""Give an exported size-sweep run the board's shipped decode: ``prep.py EXPORT_DIR SHIPPED_PARAMS [--threshold T]
[--stretch S]`` copies the shipped ``decode`` section and ``input_scaling`` into EXPORT_DIR/params.json, sets the
regions' duplicate suppression to the shipped 20 degrees, and the threshold and ``fine_stretch`` when given."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    """Rewrite EXPORT_DIR/params.json as the module docstring says."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("export")
    parser.add_argument("shipped")
    parser.add_argument("--threshold", type=float)
    parser.add_argument("--stretch", type=float)
    args = parser.parse_args()
    path = Path(args.export) / "params.json"
    params = json.loads(path.read_text())
    shipped = json.loads(Path(args.shipped).read_text())
    params["decode"] = dict(shipped["decode"], chosen_on="the board's shipped decode (docs/experiments/board-size.md)")
    params["input_scaling"] = shipped["input_scaling"]
    params["regions"]["min_separation_deg"] = shipped["regions"]["min_separation_deg"]
    if args.threshold is not None:
        params["decode"]["threshold"] = args.threshold
    if args.stretch is not None:
        params["regions"]["fine_stretch"] = args.stretch
    path.write_text(json.dumps(params, indent=1))


if __name__ == "__main__":
    main()
