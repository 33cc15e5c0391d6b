#!/bin/bash
# The GPU check of the few-shot issue, as one prepared script for a lent GPU machine (README,
# "GPU"). Prepare here with `make device-wheels device-data`, then run it there from the
# repository root with `.whl` and `.data` carried: bash benchmarks/device_check.sh.
# Results land in $OUT (or benchmarks/results); copy miniimagenet_speed_cuda.json and the Omniglot
# result into benchmarks/results and run make tables.
#
# 1. the CUDA branches of tests/train/test_device.py;
# 2. the mini-ImageNet-shaped training speed (miniimagenet_speed_cuda.json, STEPS timed steps),
#    and scale-out's check (benchmarks/gpu_speed.py: gpu_speed_cuda.json; GPU_SPEED=0 skips it);
# 3. with .data/omniglot there: an Omniglot MAML row trained on the GPU and evaluated
#    (omniglot_<CONFIG>_cuda.json). CONFIG (default maml-5w1s, a name in configs/omniglot/) and
#    SETTINGS (default "5w1s 5w5s") choose the row; BATCHING (default auto: vmap on a GPU) the
#    task batching. MAML_STEPS=N fixes its length; otherwise benchmarks/steps_in_budget.py times
#    both task batchings and sizes the run to what is left of BUDGET_S (seconds for the whole
#    script; give the device call a little more), keeping EVAL_S for the test episodes and 20 s
#    for the start of the run. The rate drops ×0.1 from MILESTONE (default: 80% of the steps).
#    The run folder (RUNS, default /tmp/runs) comes back as omniglot_<CONFIG>_run.tgz, so a run
#    stopped by the clock can be resumed or evaluated elsewhere (the fingerprint leaves out the
#    device and the data's path). To share one long run between sessions, fix MAML_STEPS and
#    MILESTONE, and BATCHING (it is part of the fingerprint), carry the unpacked folder and
#    point RUNS at it: each session trains until its clock runs out, exactly where the last
#    stopped, and the one that reaches MAML_STEPS evaluates.
# A failing step is reported and the script goes on, so one failure does not cost the others.
set -uo pipefail
START=$SECONDS
BUDGET_S="${BUDGET_S:-540}"
EVAL_S="${EVAL_S:-100}"
DEVICE="${DEVICE:-cuda}"  # DEVICE=cpu rehearses the script on a CPU machine
left() { echo $((BUDGET_S - (SECONDS - START))); }

if [ "$DEVICE" != cpu ]; then  # the GPU machine's Python 3.12 lacks pydantic
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH="$PWD/src:/tmp/site" PYTHONUNBUFFERED=1
RESULTS="${OUT:-benchmarks/results}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

python3 -m pytest -q -p no:cacheprovider tests/train/test_device.py 2>&1 \
    | tee "$RESULTS/device_tests.log" || echo "device tests FAILED"
echo "[$((SECONDS - START)) s] tests done"
if [ "${STEPS:-30}" -gt 0 ]; then  # STEPS=0 leaves the speed check out
    python3 benchmarks/miniimagenet_speed.py --device "$DEVICE" --steps "${STEPS:-30}" \
        --results "$RESULTS" 2>&1 | tee "$RESULTS/miniimagenet_speed_cuda.log" \
        || echo "mini-ImageNet speed FAILED"
fi
echo "[$((SECONDS - START)) s] speed done"
if [ "${GPU_SPEED:-1}" = 1 ]; then  # GPU_SPEED=0 leaves scale-out's GPU check out
    tiny=""; [ "$DEVICE" = cpu ] && tiny="--tiny"
    # compiled variants start only in the first half of what is left (compiling takes minutes)
    python3 benchmarks/gpu_speed.py --device "$DEVICE" $tiny --seconds $(($(left) / 2)) \
        --results "$RESULTS" 2>&1 \
        | tee "$RESULTS/gpu_speed.log" || echo "GPU speed check FAILED"
fi
echo "[$((SECONDS - START)) s] GPU speed check done"

[ -d .data/omniglot ] || { echo "no .data/omniglot: Omniglot MAML skipped"; exit 0; }
CONFIG="${CONFIG:-maml-5w1s}"
read -r -a settings <<<"${SETTINGS:-5w1s 5w5s}"
RUNS="${RUNS:-/tmp/runs}"
BATCHING="${BATCHING:-auto}"
if [ -n "${MAML_STEPS:-}" ]; then
    steps="$MAML_STEPS"
else
    plan=$(python3 benchmarks/steps_in_budget.py --config "$CONFIG" --device "$DEVICE" \
        --data .data/omniglot --seconds $(($(left) - EVAL_S - 20)) --results "$RESULTS" \
        2>&1 | tee "$RESULTS/steps_in_budget.log" | tail -n 1)
    read -r BATCHING steps <<<"$plan"
    if ! [[ "${steps:-}" =~ ^[0-9]+$ ]]; then
        BATCHING=auto steps="${FALLBACK_STEPS:-2000}"
        echo "steps_in_budget FAILED ($plan): $steps steps with batching $BATCHING instead"
    fi
fi
milestone="${MILESTONE:-$((steps * 4 / 5))}"
[ "$(left)" -gt 60 ] || { echo "$(left) s left: no time for the Omniglot run"; exit 0; }
echo "[$((SECONDS - START)) s] $CONFIG: $steps steps (×0.1 from $milestone), batching" \
    "$BATCHING, runs in $RUNS, $(left) s left"
timeout $(($(left) - 15)) python3 benchmarks/omniglot.py --config "$CONFIG" --device "$DEVICE" \
    --data .data/omniglot --steps "$steps" --settings "${settings[@]}" --tasks "${TASKS:-1000}" \
    --results "$RESULTS" --runs "$RUNS" --set "learner.batching=$BATCHING" \
    train.schedule=piecewise "train.milestones=[$milestone]" 'train.factors=[0.1]' \
    2>&1 | tee "$RESULTS/omniglot_${CONFIG}_cuda.log" || echo "Omniglot $CONFIG stopped (status $?)"
[ -d "$RUNS" ] && tar czf "$RESULTS/omniglot_${CONFIG}_run.tgz" -C "$RUNS" . && echo "run folder saved"
echo "[$((SECONDS - START)) s] done"
