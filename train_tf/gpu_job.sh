#!/usr/bin/env bash
# One call on a GPU machine that has JAX but no TensorFlow: simulate an RIR bank with many CPU
# workers in the background and train one or more model configurations on the GPU meanwhile.
#
#   bash train_tf/gpu_job.sh RUNS_DIR MINUTES CONFIG [CONFIG ...]
#
# CONFIG is NAME:REGIONS:FIRST_FILTERS:BLOCK_FILTERS:DENSE (block filters joined by '-').
# Expects the Keras/namex/optree/pyroomacoustics cp312 wheels in .whl/ and the dry-signal bank
# as .carry/bank-carry.npz.xz (see README, "Reproduce"). Every run resumes from
# RUNS_DIR/NAME when it exists, so a second call continues the first.
set -euo pipefail
runs=$1; minutes=$2; shift 2
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PRA_NUM_THREADS=1 PYTHONUNBUFFERED=1
: "${RIR_DIR:=/tmp/rir}" "${ROOMS:=4000}" "${SIM_WORKERS:=12}" "${BANK:=/tmp/bank.npz}"
: "${BATCH:=512}" "${LR:=3e-3}" "${EPOCHS:=40}" "${STEPS:=250}" "${SEED:=0}"
if [ ! -f "$BANK" ]; then
  python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
    .carry/bank-carry.npz.xz "$BANK"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ ! -f "$RIR_DIR/done.json" ] && ! pgrep -f "train_tf.simulate rir-bank" >/dev/null; then
  # own session, so it keeps simulating between calls while the machine stays warm
  setsid nohup python3 -m train_tf.simulate rir-bank --out "$RIR_DIR" --rooms "$ROOMS" --shard-size 20 \
    --workers "$SIM_WORKERS" --seed 1 >"$runs.sim.log" 2>&1 < /dev/null &
fi
# training needs the first validation shard (0) and one training shard
until [ -f "$RIR_DIR/shard-00000.npz" ] && [ -f "$RIR_DIR/shard-00001.npz" ]; do sleep 2; done
mkdir -p "$runs"
n=$#
pids=()
for cfg in "$@"; do
  IFS=: read -r name regions first blocks dense <<<"$cfg"
  XLA_PYTHON_CLIENT_MEM_FRACTION=$(python3 -c "print(round(0.8 / $n, 3))") \
  python3 -m train_tf.train --rir-bank "$RIR_DIR" --bank "$BANK" --out "$runs/$name" --regions "$regions" \
    --first-filters "$first" --block-filters "${blocks//-/,}" --dense-units "$dense" --batch-size "$BATCH" \
    --lr "$LR" --epochs "$EPOCHS" --steps-per-epoch "$STEPS" --patience 8 --seed "$SEED" \
    --max-minutes "$minutes" --quiet >"$runs/$name.out" 2>"$runs/$name.err" &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
tail -n 3 "$runs".sim.log 2>/dev/null | tr '\r' '\n' | tail -n 2 || true
for cfg in "$@"; do
  name=${cfg%%:*}
  echo "== $name"; tail -n 4 "$runs/$name.err"; cat "$runs/$name.out"
done
exit $status
