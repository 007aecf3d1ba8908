#!/usr/bin/env bash
# Benchmark of FST's automatic strength (issue 8; results in docs/strength.md). The lab backdoors
# small CNNs on Fashion-MNIST (triggers x architectures x poisoning rates), then each model is
# purified three ways on the same clean images:
#   auto    the default `fstgate purify` (automatic strength)
#   paper   --strength fixed: the paper's CIFAR-10 settings (alpha 0.2, 10 epochs, crop + flip)
#   manual  alpha 0.02, 20 epochs, no augmentation: the setting hand-tuned on one BadNets model
# and a Markdown table of C-Acc and ASR before/after, drop, time and the chosen alpha is written
# to $BENCH_DIR/table.md. Finished steps are kept: a rerun resumes where it stopped.
#
# The lab's triggers are variants outside fstgate's probe bank (a 4x4 patch, another noise seed,
# another sinusoid), so the automatic strength's probes meet them the way they would meet an
# attacker's own trigger, not as the very trigger.
#
#   scripts/bench-strength.sh [path/to/fstgate]
#
# Environment (defaults in brackets): BENCH_DIR [work/bench-strength], BENCH_TRIGGERS
# ["badnets:size=4 blended:alpha=0.2,seed=7 sig:delta=30,freq=4"; a cell is named by the kind], BENCH_ARCHS ["small-cnn small-cnn-gn"], BENCH_RATES ["0.005 0.05"],
# BENCH_TRAIN [10000 training images], BENCH_LAB_EPOCHS [4], BENCH_CLEAN [3000 clean images],
# BENCH_TEST [2000 test images].
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
fstgate=${1:-$here/target/release/fstgate}
dir=${BENCH_DIR:-$here/work/bench-strength}
data=/usr/share/datasets/fashion-mnist
triggers=${BENCH_TRIGGERS:-badnets:size=4 blended:alpha=0.2,seed=7 sig:delta=30,freq=4}
archs=${BENCH_ARCHS:-small-cnn small-cnn-gn}
rates=${BENCH_RATES:-0.005 0.05}
train=${BENCH_TRAIN:-10000}
lab_epochs=${BENCH_LAB_EPOCHS:-4}
clean=${BENCH_CLEAN:-3000}
test=${BENCH_TEST:-2000}
mkdir -p "$dir/models" "$dir/runs"
started=$SECONDS

method_args() {
  case $1 in
    auto) ;;
    paper) echo --strength fixed ;;
    manual) echo --alpha 0.02 --epochs 20 --crop-padding 0 --no-flip ;;
  esac
}

for trigger in $triggers; do
  for arch in $archs; do
    for rate in $rates; do
      cell=${trigger%%:*}-$arch-$rate
      model=$dir/models/$cell.pt
      if [ ! -f "$model" ]; then
        echo "[bench] lab: $cell" >&2
        "$fstgate" --quiet lab poison --data "$data#train" --train-count "$train" --test-data "$data#test" \
          --test-count "$test" --arch "$arch" --trigger "$trigger" --rate "$rate" --target-class 0 \
          --epochs "$lab_epochs" --seed 1 --device cpu --out "$model" >&2
      fi
      for method in auto paper manual; do
        out=$dir/runs/$cell-$method
        [ -d "$out" ] && continue
        echo "[bench] purify: $cell, $method" >&2
        # shellcheck disable=SC2046 # method_args is a word list on purpose
        "$fstgate" --quiet purify --model "$model" --clean-data "$data#train" --clean-count "$clean" \
          --test-data "$data#test" --test-count "$test" --trigger "$trigger" --target-class 0 --no-probes \
          --device cpu --out "$out" $(method_args "$method") >/dev/null
      done
    done
  done
done

table=$dir/table.md
{
  echo "| trigger | arch | rate | method | alpha | candidates | C-Acc before | C-Acc after | drop (points) | ASR before | ASR after | suspect probes | suspect push after | tuning s | total s | ASR <= 2% and drop <= 2 |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for trigger in $triggers; do
    for arch in $archs; do
      for rate in $rates; do
        for method in auto paper manual; do
          jq -r --arg trigger "${trigger%%:*}" --arg arch "$arch" --arg rate "$rate" --arg method "$method" '
            def pct: . * 1000 | round / 10;
            .summary as $s
            | [$trigger, $arch, ((($rate | tonumber) * 100 | tostring) + "%"), $method,
               (.settings.alpha * 10000 | round / 10000),
               (.strength_search.candidates // [] | length),
               ($s.clean_accuracy_before | pct), ($s.clean_accuracy_after | pct),
               ($s.clean_accuracy_drop_points * 100 | round / 100),
               ($s.attack_success_rate_before | pct), ($s.attack_success_rate_after | pct),
               (.strength_search.suspect_probes // [] | map(.trigger + " > " + (.class | tostring)) | join(", ")),
               (.strength_search as $q | if $q == null then "" else ($q.candidates[$q.chosen].suspect_push // null
                 | if . == null then "" else pct end) end),
               (.timings.purification_seconds | round), (.timings.total_seconds | round),
               (if $s.attack_success_rate_after <= 0.02 and $s.clean_accuracy_drop_points <= 2 then "yes"
                else "no" end)]
            | "| " + (map(tostring) | join(" | ")) + " |"' "$dir/runs/${trigger%%:*}-$arch-$rate-$method/report.json"
        done
      done
    done
  done
} >"$table"
cat "$table"
echo "[bench] $((SECONDS - started)) s in this invocation (finished steps of earlier ones are reused)" >&2
