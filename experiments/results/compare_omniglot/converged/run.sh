#!/usr/bin/env bash
# The converged Omniglot comparison (CPU): every method trained to early stopping on validation
# (plateau schedule, patience 4 / early stop 10 validations of 100 episodes every 50 steps), the
# same rules and lr 3e-3 for all, 1,000 test episodes. Resumable: rerun this script to continue;
# finished runs are reused. Run folders (with checkpoints) go to runs/compare_converged/ (ignored
# by git); copy each finished run's config/metrics/timing/summary here.
cd "$(dirname "$0")/../../../.." || exit 1
export TF_CPP_MIN_LOG_LEVEL=3
exec nice -n 10 .venv/bin/ntk-bridge compare --dataset omniglot --algorithms mtl,maml,anil,protonet,metaoptnet-ridge \
  --shots 1,5 --channels 16 --max-steps 20000 --time-budget 3600 --eval-every 50 --val-episodes 100 \
  --test-episodes 1000 --config experiments/results/compare_omniglot/mtl_fixed/override.json \
  --set early_stop_patience=10 --set schedule=plateau --no-progress --out runs/compare_converged
