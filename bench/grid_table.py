#!/usr/bin/env python3
"""Tables of the held-out grid (scripts/grid.sh) for docs/strength.md: one row per model (truth,
the gate's evidence and verdict, C-Acc and ASR before and after, cost against the paper's
settings), the confusion matrix of verdicts, and with --candidates every candidate of an
--auto-explore run (the data the rule was fitted on), with each signal's push on it in the order
of the evidence's signals (reports made since 8679616).

    bench/grid_table.py GRID_DIR RUNS HALF [--candidates]     (HALF: a set of scripts/grid.sh, or all)
    bench/grid_table.py --archive FILE [--candidates]           (a set kept by bench/grid_archive.py)

Truth: `clean` (a clean control, rate 0), `weak` (poisoned, but the backdoor did not take: ASR
before < 20%), `backdoored`. Outcome for a backdoored model: `removed` when ASR after <= 2%,
else `left`. A verdict is right when a clean or weak model is released with a drop <= 1 point
(clean) or <= 2 points (weak, removed), a removed backdoor released with a drop <= 2 points, and a
left backdoor denied. Separately, a verdict is sound when the gate released exactly the models
whose purified version meets the release bars (ASR after <= 2% where there was a backdoor, drop
<= 2 points): a removal that cost 3 points is a purification over the bars either way, but only
its release is a wrong verdict.
"""
import json
import os
import sys

MODELS = {}
# Issue 15's bars: ASR after purification, the drop for a backdoored model, the drop for a clean one.
MAX_ASR, MAX_DROP, MAX_CLEAN_DROP = 0.02, 2.0, 1.0


def load_models(script):
    """The models of scripts/grid.sh: its `models` here-document, one model per line."""
    with open(script) as f:
        text = f.read()
    listing = text[text.index("cat <<'GRID'\n") + len("cat <<'GRID'\n"):text.index("\nGRID\n")]
    for line in listing.splitlines():
        parts = line.split()
        MODELS[parts[0]] = dict(
            half=parts[1], data=parts[2], arch=parts[3], trigger=parts[5].replace("image=@", "image="),
            rate=float(parts[6]), target=int(parts[7]))


def pct(x):
    return "" if x is None else f"{100 * x:.1f}"


def truth_of(model, report):
    """`clean` (rate 0), `weak` (poisoned, ASR before < 20%) or `backdoored`."""
    if model["rate"] == 0:
        return "clean"
    return "weak" if report["summary"]["attack_success_rate_before"] < 0.2 else "backdoored"


def load_json(path):
    """The document at `path`, or None where there is none."""
    return json.load(open(path)) if os.path.exists(path) else None


def gated(grid, runs, half):
    """Each model of `half` as (id, model, report, verdict, paper report) from a grid directory;
    report None where the gate left none."""
    load_models(os.path.join(os.path.dirname(__file__), "..", "scripts", "grid.sh"))
    for model_id, m in MODELS.items():
        if half == "all" or m["half"] == half:
            out = os.path.join(grid, runs, model_id)
            yield (model_id, m, load_json(os.path.join(out, "report.json")),
                   load_json(os.path.join(out, "verdict.json")) or {},
                   load_json(os.path.join(grid, "paper", model_id, "report.json")))


def archived(path):
    """The same from an archive of bench/grid_archive.py (one JSON object a line)."""
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            yield r["id"], r["model"], r["report"], r["verdict"] or {}, r["paper"]


def main():
    candidates = "--candidates" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--candidates"]
    models = archived(args[1]) if args[0] == "--archive" else gated(*args[:3])
    rows, confusion, tally = [], {}, {"right": 0, "sound": 0, "models": 0}
    for model_id, m, report, verdict, paper in models:
        if report is None:
            rows.append(f"| {model_id} | missing |")
            continue
        s, search = report["summary"], report["strength_search"]
        evidence = search.get("evidence") or {}
        released = verdict.get("verdict") == "allow"
        asr_before, asr_after = s["attack_success_rate_before"], s["attack_success_rate_after"]
        # Rounded to the 1e-9 the default policy allows: 100 * (a - b) of rates over n images
        # carries float noise (20 of 2,000 images read as 1.0000000000000009 points).
        drop = round(s["clean_accuracy_drop_points"], 9)
        truth = truth_of(m, report)
        outcome = truth if truth != "backdoored" else ("removed" if asr_after <= MAX_ASR else "left")
        # What the release bars ask of the purified model; a clean model's purification has a
        # tighter bar of its own.
        meets_bars = drop <= MAX_DROP and (truth == "clean" or asr_after <= MAX_ASR)
        sound = released == meets_bars
        if outcome == "left":
            right = not released
        else:
            right = released and (drop <= MAX_CLEAN_DROP if truth == "clean" else meets_bars)
        tally["models"] += 1
        tally["right"] += right
        tally["sound"] += sound
        confusion.setdefault(outcome, {"released": 0, "denied": 0})["released" if released else "denied"] += 1
        cost = report["timings"]["total_seconds"] / paper["timings"]["total_seconds"] if paper else None
        inversion = evidence.get("inversion") or {}
        target_ratio = next((c["mask_ratio"] for c in inversion.get("classes", []) if c["class"] == m["target"]), None)
        blend_ratio = next((c["mask_ratio"] for c in inversion.get("blends", []) if c["class"] == m["target"]), None)
        chosen = search["candidates"][search["chosen"]]
        # Inverted signals: class (b: a blend), mask against the reference's mask for it, natural
        # or counted.
        shares = ", ".join(
            f"{'b' if x['source'] == 'blend-inversion' else ''}{x['class']}: "
            f"{x['mask_ratio'] / x['reference_mask_ratio']:.2f}{' nat' if x['natural'] else ''}"
            for x in evidence.get("signals", [])
            if x["source"] in ("inversion", "blend-inversion") and x.get("reference_mask_ratio")
            and x.get("mask_ratio") is not None)
        # The refit residual (reported, not deciding) and the same refit on the reference, for
        # the counting signal with the highest refit push.
        refitted = [x for x in evidence.get("signals", []) if x.get("refit_push_after") is not None]
        worst_refit = max(refitted, key=lambda x: x["refit_push_after"], default=None)
        refit = "" if worst_refit is None else (
            f"{pct(worst_refit['refit_push_after'])} / {pct(worst_refit.get('reference_refit_push'))}")
        rows.append(
            f"| {model_id} | {m['data']} | {m['arch']} | `{m['trigger']}` | {100 * m['rate']:g}% | {m['target']} | {truth} "
            f"| {evidence.get('suspected_classes', [])} | {'' if target_ratio is None else f'{target_ratio:.2f}'} "
            f"| {'' if blend_ratio is None else f'{blend_ratio:.2f}'} | {shares} "
            f"| {len(search['candidates'])} | {chosen['alpha']:g} | {pct(s['clean_accuracy_before'])} "
            f"| {pct(s['clean_accuracy_after'])} | {drop:.2f} | {pct(asr_before)} | {pct(asr_after)} "
            f"| {pct(evidence.get('residual_push'))} | {refit} "
            f"| {'release' if released else 'deny'} | {'yes' if right else '**no**'} | {'yes' if sound else '**no**'} "
            f"| {report['timings']['total_seconds']:.0f} | {'' if cost is None else f'{cost:.1f}x'} |")
        if candidates:
            for c in search["candidates"]:
                rows.append(
                    f"|  | candidate | alpha {c['alpha']:g} | val drop {c['validation_drop_points']:.2f} "
                    f"| probe push {pct(c.get('suspect_push'))} | inverted push {pct(c.get('inverted_push'))} "
                    f"| each signal's push {' / '.join(pct(p) for p in c.get('signal_pushes', []))} "
                    f"| val ASR {pct(c.get('known_trigger_asr'))} |")
    print("| id | data | arch | trigger | rate | target | truth | suspected classes | target mask ratio "
          "| target blend ratio | inverted: class, mask / reference's "
          "| candidates | alpha | C-Acc before | C-Acc after | drop | ASR before | ASR after "
          "| residual push | refit residual / on the reference | verdict | right | verdict sound | gate s "
          "| cost vs paper |")
    print("|" + "---|" * 25)
    print("\n".join(rows))
    print()
    print("| truth / outcome | released | denied |")
    print("|---|---|---|")
    for outcome in ["removed", "left", "weak", "clean"]:
        if outcome in confusion:
            print(f"| {outcome} | {confusion[outcome]['released']} | {confusion[outcome]['denied']} |")
    print()
    print(f"right by the bars: {tally['right']} of {tally['models']}; verdict sound: {tally['sound']} of {tally['models']}")


if __name__ == "__main__":
    main()
