#!/usr/bin/env python3
"""Keeps a gated set of the held-out grid (scripts/grid.sh) in the repository: one JSON object a
line per model, with its line of scripts/grid.sh, the gate's whole report.json, the default
policy's verdict on the attack-free copy and the paper-settings run's report where there is one.

The models and work/grid do not outlive a machine; the reports do not need them. Every
candidate's validation drop, each signal's push on it and the real trigger's ASR on its
validation images are in the report, so a rule over the rungs a gate tried (where to stop the
ladder, which signal to read as the data's nature) can be fitted and checked on kept sets without
training anything, and bench/grid_table.py --archive prints the set's table from it.

    bench/grid_archive.py GRID_DIR RUNS HALF OUT.jsonl [--gated-only]

--gated-only keeps the models of HALF that RUNS gated and skips the rest (a rule tried on a few
spent models); without it every model of HALF must have its report.
"""
import json
import os
import sys

from grid_table import gated


def main():
    grid, runs, half, out = sys.argv[1:5]
    gated_only = "--gated-only" in sys.argv[5:]
    lines = []
    for model_id, model, report, verdict, paper in gated(grid, runs, half):
        if report is None and gated_only:
            continue
        if report is None:
            sys.exit(f"{model_id}: no report.json under {grid}/{runs}: gate the whole set first")
        lines.append(json.dumps({"id": model_id, "model": model, "report": report, "verdict": verdict or None,
                                 "paper": paper}, separators=(",", ":")))
    if not lines:
        sys.exit(f"no model of {half!r} in scripts/grid.sh" + (f" gated under {runs}" if gated_only else ""))
    # Written whole and renamed: a failed run leaves no half-written archive.
    with open(out + ".partial", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(out + ".partial", out)
    print(f"{out}: {len(lines)} models")


if __name__ == "__main__":
    main()
