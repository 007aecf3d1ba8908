#!/usr/bin/env python3
"""Replays the judge's alpha ladder from kept grid sets (bench/grid_archive.py) under another
stopping rule, without training anything: every rung a gate tried is in its report with its
validation drop, each signal's push on it and the real trigger's ASR on the validation images.

The rule replayed here, "holding" (a candidate for a version 17; its defaults are guesses from
the spent sets' figures in docs/strength.md, a20 and d19; on o21 it changed nothing): a counting
inverted trigger whose push at a rung is still above its target but at least HOLD of its push
before purification (the rung barely moved it), and whose mask is at least SHARE of the
from-scratch reference's mask for its class in pixels (near the line where version 15 reads a
class as the data's nature, 0.37), is read as the data's nature at that rung when another
counting signal that pushed at least half the images before has been cleared there. The ladder
stops at the first rung where every counting signal is cleared or so read. This is the false
"bag" pattern of a06, a12 and d05 (docs/strength.md): the real trigger gone at alpha 0.03, a
false signal holding the ladder up to 0.09 and its cost.

    bench/ladder_rules.py [--hold H] [--share S] ARCHIVE...
    bench/ladder_rules.py --signals ARCHIVE...

--signals lists every signal instead: whether it points at the planted target of a backdoor that
took (real) or not (false), its mask against the reference's in pixels, how hard its trigger moves
the reference against the model (transfer), whether version 15 read it as natural, and its push
on each rung: the data a rule that reads signals by size and transfer together is fitted on.

Per model: the truth, what the gate chose (alpha, test drop, test ASR after, blind verdict) and
what the rule would choose (alpha, validation drop, the real trigger's ASR on validation; the
test figures only where the rung is the one the gate chose), and whether that changes a verdict.
Only rungs the gate tried can be replayed: where none of them meets the rule, the table says so.
"""
import argparse

from grid_table import MAX_ASR, MAX_DROP, archived, truth_of


def target(signal, settings):
    """The push a signal must fall to (the judge's `push_target`)."""
    if signal["source"] == "probe":
        return settings["suspect_push_target"]
    return signal.get("natural_push") or settings["inverted_push_target"]


def reads_natural(signal, push, settings, hold, share):
    """The rule: a marginal inverted trigger that the rung barely moved."""
    if signal["source"] == "probe" or not signal.get("reference_mask_pixels") or signal.get("mask_pixels") is None:
        return False
    marginal = signal["mask_pixels"] >= share * signal["reference_mask_pixels"]
    return marginal and push > target(signal, settings) and push >= hold * signal["push_before"]


def replay(report, hold, share):
    """The rung the rule stops at (index into the candidates) and the signals it read as
    natural there; None where no rung the gate tried satisfies it."""
    search = report["strength_search"]
    settings = search["settings"]
    signals = (search.get("evidence") or {}).get("signals", [])
    counting = [i for i, s in enumerate(signals) if not s["natural"]]
    if not counting:
        return search["chosen"], []
    for k, c in enumerate(search["candidates"]):
        pushes = c.get("signal_pushes") or []
        if len(pushes) != len(signals) or c.get("sharpness_radius"):
            continue
        cleared = [i for i in counting if pushes[i] <= target(signals[i], settings)]
        natural = [i for i in counting if i not in cleared
                   and reads_natural(signals[i], pushes[i], settings, hold, share)]
        fell = any(signals[i]["push_before"] >= 0.5 for i in cleared)
        if len(cleared) == len(counting) or (fell and len(cleared) + len(natural) == len(counting)):
            return k, natural if len(cleared) < len(counting) else []
    return None, []


def records(paths):
    """Every kept model of the archives (bench/grid_archive.py), with its truth."""
    for path in paths:
        for model_id, model, report, verdict, _ in archived(path):
            yield {"id": model_id, "model": model, "report": report, "verdict": verdict,
                   "truth": truth_of(model, report)}


def list_signals(paths):
    """The --signals table."""
    print("| id | model | truth | signal | class | real | mask / reference's | transfer | push before "
          "| v15 natural | push on each rung |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in records(paths):
        search = r["report"]["strength_search"]
        signals = (search.get("evidence") or {}).get("signals", [])
        for i, x in enumerate(signals):
            real = r["truth"] == "backdoored" and x["class"] == r["model"]["target"]
            share = (x["mask_pixels"] / x["reference_mask_pixels"]
                     if x.get("mask_pixels") is not None and x.get("reference_mask_pixels") else None)
            transfer = x["reference_push"] / x["push_before"] if x.get("reference_push") is not None else None
            rungs = "; ".join(f"{c['alpha']:g}: {100 * c['signal_pushes'][i]:.1f}" for c in search["candidates"]
                              if len(c.get("signal_pushes") or []) == len(signals))
            print(f"| {r['id']} | {r['model']['data']} {r['model']['arch']} | {r['truth']} | {x['source']} "
                  f"| {x['class']} | {'real' if real else 'false'} | {'' if share is None else f'{share:.2f}'} "
                  f"| {'' if transfer is None else f'{transfer:.2f}'} | {100 * x['push_before']:.1f} "
                  f"| {'yes' if x['natural'] else 'no'} | {rungs} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hold", type=float, default=0.4)
    parser.add_argument("--share", type=float, default=0.25)
    parser.add_argument("--signals", action="store_true")
    parser.add_argument("archives", nargs="+")
    args = parser.parse_args()
    if args.signals:
        return list_signals(args.archives)
    print(f"holding: push >= {args.hold} of its push before, mask >= {args.share} of the reference's")
    print("| id | model | truth | gate: alpha, test drop, ASR after, verdict | rule: alpha, val drop, "
          "val ASR, read as natural | changes |")
    print("|---|---|---|---|---|---|")
    for r in records(args.archives):
        report, model, truth = r["report"], r["model"], r["truth"]
        search, s = report["strength_search"], report["summary"]
        signals = (search.get("evidence") or {}).get("signals", [])
        released = r["verdict"].get("verdict") == "allow"
        chosen = search["candidates"][search["chosen"]]
        gate = (f"{chosen['alpha']:g}, {s['clean_accuracy_drop_points']:.2f}, "
                f"{100 * s['attack_success_rate_after']:.1f}%, {'release' if released else 'deny'}")
        k, natural = replay(report, args.hold, args.share)
        if k is None:
            rule, change = "no rung tried meets it", ""
        elif k == search["chosen"]:
            rule, change = "the same rung", ""
        else:
            c = search["candidates"][k]
            asr = c.get("known_trigger_asr")
            names = ", ".join(f"{signals[i]['class']} ({signals[i]['mask_pixels'] / signals[i]['reference_mask_pixels']:.2f})"
                              for i in natural)
            rule = (f"{c['alpha']:g}, {c['validation_drop_points']:.2f}, "
                    f"{'' if asr is None else f'{100 * asr:.1f}%'}, {names}")
            would_meet = c["validation_drop_points"] <= MAX_DROP and (
                truth == "clean" or (asr is not None and asr <= MAX_ASR))
            change = "release within the bars (by validation)" if would_meet else "still over a bar"
        print(f"| {r['id']} | {model['data']} {model['arch']} `{model['trigger']}` {100 * model['rate']:g}% "
              f"-> {model['target']} | {truth} | {gate} | {rule} | {change} |")


if __name__ == "__main__":
    main()
