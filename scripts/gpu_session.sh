#!/usr/bin/env bash
# One short call on a lent GPU machine (which has torch but neither ITK, nibabel nor the
# datasets): time the network there, then train from a bundle for what is left of a fixed
# wall-clock budget, and leave at most 8 flat files in OUT_DIR (what the lending tool brings
# back). Prepare here first:
#   python scripts/train_bundle.py export .dev/bundle.npz -- <train command line>
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl nibabel==5.4.2
# (.dev/ and .whl/ are git-ignored, the bundle being made of the datasets' images: the lending
# tool's call brings them with carry [".dev", ".whl"])
# then, on the GPU machine, in the repository root:
#   scripts/gpu_session.sh .dev/bundle.npz OUT_DIR BUDGET_SECONDS [train options...]
# Environment: DEVICE (default cuda), BATCH (default 4), PROBE_STEPS (default 60),
# BENCHMARK_OPTIONS (default: every batch size; a dry run on a CPU passes a small set).
set -uo pipefail
bundle=$1 out=$2 budget=$3
shift 3
start=$(date +%s)
device=${DEVICE:-cuda} batch=${BATCH:-4} probe_steps=${PROBE_STEPS:-60}
export PYTHONUNBUFFERED=1
if ! python3 -c "import nibabel" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        .whl/*.whl || exit 3
    export PYTHONPATH=/tmp/site
fi
mkdir -p "$out" /tmp/gpu_session
nvidia-smi -L 2>/dev/null
# shellcheck disable=SC2086  # the options are words
python3 scripts/benchmark_model.py "$bundle" --device "$device" \
    ${BENCHMARK_OPTIONS:---train-batch-sizes 1 2 4 8 --patches 16} \
    --out "$out/performance_gpu.json" 2>&1 | tee /tmp/gpu_session/benchmark.log

# The steps that fit come from a short probe of the real training loop (loader, copies and
# logging included): in run 23 a step took 3.4 times the benchmarked one, and a plan made from
# the benchmark alone ran out of time. --stop-after ends the probe before any validation.
workers=$(( $(nproc) - 2 ))
python3 scripts/train_bundle.py train "$bundle" /tmp/gpu_session/probe -- --device "$device" \
    --batch-size "$batch" --steps 100000 --stop-after "$probe_steps" --data-workers "$workers" \
    "$@" 2>&1 | tr '\r' '\n' > /tmp/gpu_session/probe.log
# tqdm's last rate: "N.NNit/s" or "N.NNs/it"
step_s=$(grep -oE '[0-9.]+(it/s|s/it)' /tmp/gpu_session/probe.log | tail -1 |
         awk '/it\/s/ {print 1 / $1} /s\/it/ {print $1 + 0}')
[ -n "$step_s" ] || { echo "the probe gave no step rate"; cat /tmp/gpu_session/probe.log; exit 4; }
now=$(date +%s)
train_s=$(( budget - (now - start) - 60 ))  # 60 s for the loader's start and the copies
read -r steps < <(python3 - "$out/performance_gpu.json" "$step_s" "$train_s" <<'EOF'
import json, sys
result, step, seconds = json.load(open(sys.argv[1])), float(sys.argv[2]), float(sys.argv[3])
# four validations of the bundle's validation subjects; the argmax and Dice run on the CPU
forward = [r["median_s"] for r in result["inference"] if not r["test_time_flip"]]
seconds -= 4 * len(forward) * (max(forward) + 4)
print(max(20, int(seconds / (step * 1.1)) // 20 * 20))
EOF
)
echo "training: batch $batch, $steps steps at ${step_s} s a step (probe), $workers loader workers, $train_s s"
timeout $(( train_s + 40 )) python3 scripts/train_bundle.py train "$bundle" /tmp/gpu_session/train -- \
    --device "$device" --batch-size "$batch" --steps "$steps" --validate-every $(( steps / 4 )) \
    --checkpoint-every $(( steps / 4 )) --data-workers "$workers" --keep-validated "$@" \
    2>&1 | tr '\r' '\n' | awk '!/^train: / || NR % 100 == 0' | tee /tmp/gpu_session/train.log

# Flat files only: each validated export's weights, and one archive of logs and model cards.
for d in /tmp/gpu_session/train/validated/step-*; do
    [ -f "$d/eneuronet.pt" ] && cp "$d/eneuronet.pt" "$out/$(basename "$d").pt"
    cp "$d/model_card.json" "/tmp/gpu_session/$(basename "$d")_model_card.json"
done
cp /tmp/gpu_session/train/training_log.csv /tmp/gpu_session/ 2>/dev/null
tar -C /tmp/gpu_session -czf "$out/logs.tar.gz" --exclude train --exclude probe .
ls -la "$out"
