#!/usr/bin/env bash
# issue 28.1, the board size sweep on the CPU (report docs/experiments/board-size.md). From the repository root, after the
# device calls of call.sh, with each run's tar (R4zL.tar ... UMzS.tar, R4zL2.tar, R4zS2.tar) unpacked into runs/bsz/ and
# data/val2-respeaker-4mic, data/val2-minidsp-uma8 made (docs/experiments/boards-full-recipe.md, "Commands").
# 1 export each run (weights only); 2 give it the board's shipped decode section and input scaling, suppression 20 deg;
# 3 the threshold of the best val2 F1; 4 the fine_stretch of the lowest val2 mean error; 5 paired bootstrap of each
# smaller size against L on val2 (benchmarks.board_choice --as-is); 6 int8 conversion and per-window latency (4mic).
set -eu
PY=.venv/bin/python
RUNS="R4zL R4zM R4zS UMzL UMzM UMzS R4zL2 R4zS2"
board() { case $1 in R4*) echo respeaker-4mic;; UM*) echo minidsp-uma8;; esac; }
mkdir -p out/bsz
for r in $RUNS; do KERAS_BACKEND=jax JAX_PLATFORMS=cpu $PY -m train_tf.crosscheck export runs/bsz/$r runs/bsz/exp/$r; done
for r in $RUNS; do $PY experiments/boards_size/prep.py runs/bsz/exp/$r models/$(board $r)/params.json; done
for r in $RUNS; do
  $PY -m train_tf.evaluate --model runs/bsz/exp/$r --data data/val2-$(board $r) --out out/bsz/sweep-$r --baselines none \
      --sweep 0.1,0.15,0.2,0.25,0.3,0.35,0.4/20 | tee out/bsz/sweep-$r.log
  t=$(sed -n 's/^best F1 .* at threshold \([0-9.]*\),.*/\1/p' out/bsz/sweep-$r.log)
  $PY experiments/boards_size/prep.py runs/bsz/exp/$r models/$(board $r)/params.json --threshold "$t"
  $PY -m train_tf.evaluate --model runs/bsz/exp/$r --data data/val2-$(board $r) --out out/bsz/fit-$r --baselines none \
      --fit-stretch 1,1.1,1.2,1.3,1.4,1.5 | tee out/bsz/fit-$r.log
  s=$(sed -n 's/^lowest mean DOA error .* at fine_stretch \([0-9.]*\).*/\1/p' out/bsz/fit-$r.log)
  $PY experiments/boards_size/prep.py runs/bsz/exp/$r models/$(board $r)/params.json --threshold "$t" --stretch "$s"
done
for pair in "R4zM R4zL" "R4zS R4zL" "UMzM UMzL" "UMzS UMzL" "R4zS2 R4zL2"; do
  set -- $pair
  $PY -m benchmarks.board_choice $(board $1) runs/bsz/exp/$1 --as-is --shipped runs/bsz/exp/$2 --json out/bsz/choice-$1.json
done
for r in R4zL R4zM R4zS; do
  $PY -m convert --model runs/bsz/exp/$r --calib-data data/val2-respeaker-4mic --calib-windows 200 --out out/bsz/$r.tflite
  $PY -m benchmarks.runtime_bench --model out/bsz/$r.tflite --threads 1 --windows 300
done
