#!/usr/bin/env bash
# The converged Omniglot comparison (Conv-4, 16 channels, CPU): every file of this folder from one script.
# 1. the ten runs (resumable: rerunning continues unfinished runs and reuses finished ones; about 1.5 h
#    of training on 2 cores). Each run folder's config.json reruns it alone with `ntk-bridge train`.
# 2. their result files (config, metrics, timing, summary, best checkpoint) into this folder's runs/.
# 3. the summary, curves, ratios and figure from those run folders (trains nothing).
# 4. the test-time head / MAML-ANIL inner loop of every run chosen on validation (experiments/test_time_choice.py).
set -euo pipefail
cd "$(dirname "$0")/../../../.."
export TF_CPP_MIN_LOG_LEVEL=3
HERE=experiments/results/compare_omniglot/converged
FLAGS=(--dataset omniglot --algorithms mtl,maml,anil,protonet,metaoptnet-ridge --shots 1,5 --channels 16
       --max-steps 20000 --time-budget 3600 --eval-every 50 --val-episodes 100 --test-episodes 1000
       --set lr=0.003 --set early_stop_patience=10 --set schedule=plateau --no-progress)
nice -n 10 .venv/bin/ntk-bridge compare "${FLAGS[@]}" --out runs/compare_converged
for run in runs/compare_converged/runs/*/; do
  name=$(basename "$run"); mkdir -p "$HERE/runs/$name"
  cp "$run"/{config.json,metrics.csv,metrics.json,timing.csv,summary.json} "$HERE/runs/$name/"
  rm -rf "$HERE/runs/$name/best" && cp -r "$run/best" "$HERE/runs/$name/best"
done
.venv/bin/ntk-bridge compare "${FLAGS[@]}" --target gbml-1 --time-axis cpu --from-runs --out "$HERE"
.venv/bin/python experiments/test_time_choice.py "$HERE"/runs/*/ --out "$HERE/test_time_choice.csv"
