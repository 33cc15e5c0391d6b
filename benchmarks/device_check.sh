#!/bin/bash
# The GPU check of the few-shot issue, as one prepared script for a lent GPU machine (README,
# "GPU"). Prepare here with `make device-wheels`, then run it there from the repository root with
# `.whl` carried: bash benchmarks/device_check.sh. Results land in $OUT (or benchmarks/results);
# copy miniimagenet_speed_cuda.json into benchmarks/results and run make tables.
# With `make device-data` run here and `.data` carried too, MAML_STEPS=N also trains the Omniglot
# MAML 5w1s row on the GPU for N meta-iterations and evaluates it (omniglot_maml-5w1s.json).
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
export PYTHONPATH="$PWD/src:/tmp/site" PYTHONUNBUFFERED=1
RESULTS="${OUT:-benchmarks/results}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
# the CUDA branches of the device checks (skipped on CPU-only machines)
python3 -m pytest -q -p no:cacheprovider tests/train/test_device.py 2>&1 | tee "$RESULTS/device_tests.log"
python3 benchmarks/miniimagenet_speed.py --device cuda --steps "${STEPS:-30}" --results "$RESULTS" \
    2>&1 | tee "$RESULTS/miniimagenet_speed_cuda.log"
if [ -d .data/omniglot ] && [ "${MAML_STEPS:-0}" -gt 0 ]; then
    python3 benchmarks/omniglot.py --config maml-5w1s --device cuda --data .data/omniglot \
        --steps "$MAML_STEPS" --settings 5w1s 5w5s --results "$RESULTS" --runs /tmp/runs \
        2>&1 | tee "$RESULTS/omniglot_maml_cuda.log"
fi
