#!/usr/bin/env bash
# What issue #4 asks of a GPU, in one command, for a session that has one
# (the device tool runs it in a copy of the repository):
#   build fastact against the machine's CUDA torch, run the CUDA tests, run
#   them once more under compute-sanitizer, and benchmark against torch in
#   float32 and bfloat16 (with peak memory). Results go to $OUT (the device
#   tool's output folder) or bench/results/, named after the GPU.
# Usage: bash bench/gpu_session.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results}
mkdir -p "$out"

python -m pip install --no-build-isolation --no-deps -q . 2>&1 | tail -3
gpu=$(python -c "import re, torch; print(re.sub('[^a-z0-9]+', '-', torch.cuda.get_device_name().lower()).strip('-'))")
python -P -c "import fastact; print(fastact.backend())" | tee "$out/$gpu-build.txt"

python -P -m pytest tests/test_cuda.py -q -p no:cacheprovider --backends cpp 2>&1 | tail -25 | tee "$out/$gpu-tests.txt"
# fastact.optim and fuse's layer chains on CUDA (torch's ops one by one there)
python -P -m pytest tests/test_optim.py tests/test_linear_chain.py tests/test_train_step.py -q -p no:cacheprovider --backends cpp -k cuda 2>&1 \
  | tail -5 | tee -a "$out/$gpu-tests.txt"
python -P -m fastact train --device cuda --no-progress 2>&1 | tee "$out/$gpu-train.txt"

# memcheck over the kernels (the subprocess and 4 GiB cases left out: slow under the sanitizer)
compute-sanitizer --tool memcheck --print-limit 20 python -P -m pytest tests/test_cuda.py -q -x -p no:cacheprovider \
  --backends cpp -k "not out_of_range and not beyond_2_to_the_31 and not opcheck and not compile" 2>&1 \
  | tail -25 | tee "$out/$gpu-sanitizer.txt"

for dtype in float32 bfloat16; do
  python -P -m fastact bench --device cuda --dtype "$dtype" --memory --json "$out/$gpu-$dtype.json" \
    2>&1 | tee "$out/$gpu-$dtype.txt"
done
