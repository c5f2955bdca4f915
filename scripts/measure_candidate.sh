#!/usr/bin/env bash
# Measure weights as the run rules of docs/accuracy.md do, with this checkout's participant level:
# the 8 IXI test scans (coarse Dice against DLMUSE) and the held-out Mindboggle subjects
# sub-13...16 at registration seeds 0, 1 and 2 (with the test-time flip and the cortical clean-up).
#
#   scripts/measure_candidate.sh MODEL OUT [DATA]      # DATA defaults to ../shared/data
#
# OUT receives ixi.tsv and heldout_seed{0,1,2}.tsv (plus the parcellations and a work folder);
# a rerun skips what is already there. Needs TEMPLATEFLOW_HOME. About 12 minutes on 2 cores
# (session 35, beside a bundle export). It starts two participant workers: not beside a training
# run (memory).
set -euo pipefail

if [ $# -lt 2 ] || [ ! -f "$1" ]; then
    echo "usage: $0 MODEL OUT [DATA]  (MODEL: an existing eneuronet.pt)" >&2
    exit 2
fi
model=$(realpath "$1")
out=$(realpath -m "$2")
repo=$(cd "$(dirname "$0")/.." && pwd)
data=$(realpath "${3:-$repo/../shared/data}")
mkdir -p "$out"

[ -s "$out/ixi.tsv" ] || python "$repo/scripts/evaluate_generalisation.py" "$data" \
    --work "$out/work/ixi" --ixi 8 --participants --model "$model" --out "$out/ixi.tsv"
for seed in 0 1 2; do
    [ -s "$out/heldout_seed$seed.tsv" ] && continue
    "$repo/run.py" "$data/mindboggle-oasis" "$out/seed$seed" participant \
        --participant-label 13 14 15 16 -w "$out/work/seed$seed" --nprocs 2 --omp-nthreads 1 \
        --random-seed "$seed" --model "$model" --skip-bids-validation
    python "$repo/scripts/evaluate_mindboggle.py" "$data/mindboggle-oasis" "$out/seed$seed" \
        --participants 13 14 15 16 --out "$out/heldout_seed$seed.tsv"
done
