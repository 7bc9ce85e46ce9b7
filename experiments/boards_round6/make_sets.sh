#!/usr/bin/env bash
# rebuild the boards' validation/test window sets (docs/boards.md, docs/experiments/boards-full-recipe.md "Commands")
# make_sets.sh KIND BOARD...   KIND: val2 | val | test | test2
set -eu
kind=$1; shift
case $kind in
  val)   n=200;  bank=data/dry/bank-train.npz; seed=2000;;
  val2)  n=800;  bank=data/dry/bank-train.npz; seed=3000;;
  test)  n=400;  bank=data/dry/bank-test.npz;  seed=1000;;
  test2) n=1600; bank=data/dry/bank-test.npz;  seed=1100;;
esac
for b in "$@"; do
  [ -f data/$kind-$b/done.json ] && { echo "data/$kind-$b exists"; continue; }
  nice -n 10 .venv/bin/python -m train_tf.simulate windows --array $b --out data/$kind-$b --n $n \
    --bank $bank --seed $seed --min-sources 1 --max-sources 4 --set min_source_separation_deg=30 \
    --set 'rt60_s=[0.1,0.8]' --set anechoic_prob=0 --set 'snr_diffuse_db=[10,30]' --set 'snr_sensor_db=[20,40]' \
    --set 'kind_weights=[["speech_real",1.0]]' --set windows_per_room=2 --shard-size 50
done
