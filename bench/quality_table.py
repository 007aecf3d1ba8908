"""Markdown tables from `cargo bench --bench fst -- quality` results (cells.jsonl): per
architecture, one row per attack and poisoning rate, C-Acc / ASR / RA after each method (mean over
seeds, with the spread when there are several), then the cells where a method fails.

  python3 bench/quality_table.py bench/results/h100/quality-cells.jsonl
"""
import json
import sys
from collections import defaultdict
from statistics import mean

METHODS = ["none", "ft", "lp", "fe-tuning", "ft-init", "fst", "fst-auto"]
# A method fails a cell when the backdoor survives or clean accuracy collapses.
ASR_FAIL, DROP_FAIL = 0.10, 5.0


def fmt(values, scale=100):
    m = mean(values) * scale
    if len(values) == 1:
        return f"{m:.1f}"
    return f"{m:.1f}±{(max(values) - min(values)) * scale / 2:.1f}"


def main(path):
    cells = [json.loads(line) for line in open(path)]
    groups = defaultdict(list)
    for c in cells:
        groups[(c["arch"], c["attack"], c["rate"], c["method"])].append(c)
    failures = []
    for arch in sorted({c["arch"] for c in cells}):
        seeds = sorted({c["seed"] for c in cells if c["arch"] == arch})
        print(f"\n### {arch} (seeds {', '.join(map(str, seeds))}; C-Acc / ASR / RA in %)\n")
        methods = [m for m in METHODS if any(c["method"] == m and c["arch"] == arch for c in cells)]
        print("| attack | rate | " + " | ".join(methods) + " |")
        print("|---|---|" + "---|" * len(methods))
        for attack, rate in sorted({(c["attack"], c["rate"]) for c in cells if c["arch"] == arch}):
            row = [attack, f"{rate * 100:.2g}%"]
            before = groups.get((arch, attack, rate, "none"), [])
            for m in methods:
                g = groups.get((arch, attack, rate, m), [])
                if not g:
                    row.append("")
                    continue
                row.append(
                    f"{fmt([c['clean_accuracy'] for c in g])} / {fmt([c['attack_success_rate'] for c in g])}"
                    f" / {fmt([c['robust_accuracy'] for c in g])}"
                )
                if m != "none" and before:
                    asr = mean(c["attack_success_rate"] for c in g)
                    drop = 100 * (mean(c["clean_accuracy"] for c in before) - mean(c["clean_accuracy"] for c in g))
                    if asr > ASR_FAIL or drop > DROP_FAIL:
                        failures.append((arch, attack, rate, m, asr, drop))
            print("| " + " | ".join(row) + " |")
        secs = {m: mean(c["seconds"] for c in cells if c["arch"] == arch and c["method"] == m) for m in methods}
        print("\nMean seconds per purification: " + ", ".join(f"{m} {s:.1f}" for m, s in secs.items()))
    print(f"\n### Failures (ASR after > {ASR_FAIL:.0%} or C-Acc drop > {DROP_FAIL:g} points)\n")
    by_method = defaultdict(list)
    for arch, attack, rate, m, asr, drop in failures:
        by_method[m].append(f"{arch} {attack} {rate * 100:.2g}% (ASR {asr * 100:.1f}%, drop {drop:.1f})")
    for m in METHODS:
        if m in by_method:
            print(f"- **{m}** fails {len(by_method[m])}: " + "; ".join(by_method[m]))


if __name__ == "__main__":
    main(sys.argv[1])
