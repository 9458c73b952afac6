#!/usr/bin/env bash
# Train the embedded model on one CUDA GPU in about 8 minutes, then export, evaluate and package it.
#
#   bash scripts/train_gpu.sh OUTPUT_DIR [RUN_DIR]
#
# Each phase's step count is fitted to its time budget (--vae-minutes, --unet-minutes) and printed;
# pass the printed counts as --vae-steps / --unet-steps (without the minutes) to reproduce a run exactly.
# OUTPUT_DIR gets: gpu.txt, train.log, evaluate.txt, grid.png, loss.csv, model.tgz (the pipeline folder).
set -uo pipefail
out=${1:?usage: bash scripts/train_gpu.sh OUTPUT_DIR [RUN_DIR]}
run=${2:-training-runs/gpu}
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
size=${SIZE:-full}
mkdir -p "$out" "$run"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
nproc | tee -a "$out/gpu.txt"

timeout "${TRAIN_SECONDS:-440}" "$python" -m app.training train --run-dir "$run" --device "$device" --size "$size" \
    --data-workers "${DATA_WORKERS:-12}" --threads 4 --seed 0 \
    --vae-batch "${VAE_BATCH:-64}" --vae-crop 0 --vae-lr 0.001 --vae-minutes "${VAE_MINUTES:-1.0}" \
    --pool-size "${POOL_SIZE:-150000}" \
    --unet-batch "${UNET_BATCH:-256}" --unet-lr 0.001 --warmup-steps 300 --unet-minutes "${UNET_MINUTES:-4.0}" \
    --checkpoint-every 500 --decoder-steps "${DECODER_STEPS:-2000}" 2>&1 | tr '\r' '\n' | tee "$out/train.log"
echo "train exit ${PIPESTATUS[0]}" | tee -a "$out/train.log"

"$python" -m app.training export --run-dir "$run" --size "$size" --output "$run/model"
"$python" -m app.training evaluate --model "$run/model" --grid "$out/grid.png" --device "$device" 2>&1 | tee "$out/evaluate.txt"
tar -czf "$out/model.tgz" -C "$run" model
cp "$run/loss.csv" "$out/loss.csv"
