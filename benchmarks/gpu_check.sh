#!/usr/bin/env bash
# GPU checks, under 8 minutes on one GPU: the `gpu` tests, the backbones' images/s in float32 and
# bf16 against the GPU's matmul peak, a cached vs uncached epoch, and payloads encoded on one device
# and decoded on the other.
#
#   bash benchmarks/gpu_check.sh [FIGURES_DIR]      (default: gpu_check/)
#
# Needs the package's dependencies importable (pip install -e ".[test]", or wheels carried to a
# machine without network); the package itself is taken from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-gpu_check}")
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible'"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" || true

python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/gpu_tests.txt"
python3 benchmarks/bench_features.py --device cuda --batches 1 8 32 2>&1 | tee "$out/features.txt"
python3 benchmarks/bench_cache.py --accelerator gpu --model vit --images 200 --epochs 3 2>&1 | tee "$out/cache_vit.txt"

work=$(mktemp -d)
python3 -m embeddings_squeeze make-data --root "$work/data" --n-trainval 64 --n-test 24 --seed 0
python3 -m embeddings_squeeze squeeze --data_path "$work/data" --output_dir "$work/runs" --weights none \
    --accelerator gpu --epochs 3 --num_vectors 64 --experiment_name cross --seed 0 > "$work/train.log" 2>&1
python3 benchmarks/cross_device_payloads.py --checkpoint "$work/runs/cross/version_0/last.ckpt" \
    --output_dir "$work/payloads" $(sed 's|^\([^ ]*\) .*|'"$work"'/data/oxford-iiit-pet/images/\1.jpg|' \
    "$work/data/oxford-iiit-pet/annotations/test.txt") 2>&1 | tee "$out/cross_device.txt"
rm -rf "$work"
echo "figures in $out"
