#!/usr/bin/env bash
# One short call on a lent GPU machine (which has torch but neither ITK, nibabel nor the
# datasets): time the network there, then train from a bundle for what is left of a fixed
# wall-clock budget, and leave at most 8 flat files in OUT_DIR (what the lending tool brings
# back). Prepare here first:
#   python scripts/train_bundle.py export .dev/bundle.npz -- <train command line>
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl nibabel==5.4.2
# then, on the GPU machine, in the repository root:
#   scripts/gpu_session.sh .dev/bundle.npz OUT_DIR BUDGET_SECONDS [train options...]
set -uo pipefail
bundle=$1 out=$2 budget=$3
shift 3
start=$(date +%s)
export PYTHONUNBUFFERED=1
if ! python3 -c "import nibabel" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        .whl/*.whl || exit 3
    export PYTHONPATH=/tmp/site
fi
mkdir -p "$out" /tmp/gpu_session
nvidia-smi -L
python3 scripts/benchmark_model.py "$bundle" --device cuda --train-batch-sizes 1 2 4 8 \
    --patches 16 --out "$out/performance_gpu.json" 2>&1 | tee /tmp/gpu_session/benchmark.log

# Batch size and steps from the measured step, patch-making and validation times: the
# loader's workers make B patches while the GPU runs a step, so a step takes the longer of
# the two.
workers=$(( $(nproc) - 2 ))
now=$(date +%s)
train_s=$(( budget - (now - start) - 60 ))  # 60 s for the loader's start and the copies
read -r batch steps < <(python3 - "$out/performance_gpu.json" "$workers" "$train_s" <<'EOF'
import json, sys
result, workers, seconds = json.load(open(sys.argv[1])), int(sys.argv[2]), float(sys.argv[3])
patch = result["patch_making"]["median_s"]
gpu = {r["batch_size"]: r["median_s"] for r in result["training_step"]
       if r["layout"] == "channels_last_3d"}
batch = 4 if 4 in gpu else max(gpu)
step = max(gpu[batch], batch * patch / workers) * 1.3
# four validations of the bundle's validation subjects; the argmax and Dice run on the CPU
forward = [r["median_s"] for r in result["inference"] if not r["test_time_flip"]]
seconds -= 4 * len(forward) * (max(forward) + 4)
print(batch, max(20, int(seconds / step) // 20 * 20))
EOF
)
echo "training: batch $batch, $steps steps, $workers loader workers, $train_s s"
timeout $(( train_s + 40 )) python3 scripts/train_bundle.py train "$bundle" /tmp/gpu_session/train -- \
    --device cuda --batch-size "$batch" --steps "$steps" --validate-every $(( steps / 4 )) \
    --checkpoint-every $(( steps / 4 )) --data-workers "$workers" --keep-validated "$@" \
    2>&1 | tr '\r' '\n' | awk '!/^train: / || NR % 100 == 0' | tee /tmp/gpu_session/train.log

# Flat files only: each validated export's weights, and one archive of logs and model cards.
for d in /tmp/gpu_session/train/validated/step-*; do
    [ -f "$d/eneuronet.pt" ] && cp "$d/eneuronet.pt" "$out/$(basename "$d").pt"
    cp "$d/model_card.json" "/tmp/gpu_session/$(basename "$d")_model_card.json"
done
cp /tmp/gpu_session/train/training_log.csv /tmp/gpu_session/ 2>/dev/null
tar -C /tmp/gpu_session -czf "$out/logs.tar.gz" --exclude train .
ls -la "$out"
