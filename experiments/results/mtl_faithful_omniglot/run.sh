#!/usr/bin/env bash
# Claim 4 on equal terms, the short CPU version (issue 31): Omniglot 5-way 1-shot, Conv-4 with 64
# channels, every method under the same rules: the packaged omniglot_1shot config (the faithful MTL's
# rules: 6 tasks / episodes per step x 10 images per class, random-crop augmentation, RAdam lr 1e-3,
# validation on fresh random episodes, plateau x0.1 at the 5th bad validation, early stop after 15),
# shortened to what 2 shared CPU cores allow: 240 steps (1,440 tasks = 0.9 of the paper's 1,600-task
# epoch), a validation every 40 steps on 100 fresh episodes x 15 queries, 1,000 test episodes x 15
# queries of the best-validation state. Runs in parallel under nice; each stops at 240 steps or at
# the first validation after BUDGET s of training steps (default 900: with the machine at a load of
# 10-24 on 2 cores a step took about 30 s, so the runs stopped at their first validation, step 40,
# 240 tasks). Re-running resumes / reuses the run folders; BUDGET=3000 run.sh continues them exactly.
#   mtl          the faithful MTL (head x sqrt(163/5), batch norm per task, normalised features)
#   mtl-pooled   ours before issue 31 (plain head, batch norm pooled over the 6 tasks, raw features)
#   protonet     ProtoNet, 6 episodes of 1 support + 9 queries per class (the same 300 images per step)
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=experiments/results/mtl_faithful_omniglot/runs
NB="${NB:-ntk-bridge}"
COMMON=(--dataset omniglot --shots 1 --steps 240 --time-budget "${BUDGET:-900}" --no-progress
        --set eval_every=40 --set checkpoint_every=40 --set val_episodes=100 --set test_episodes=1000)
nice -n 10 $NB train "${COMMON[@]}" --algorithm mtl --run-dir $OUT/mtl_1shot >> $OUT/mtl_1shot.log 2>&1 &
nice -n 10 $NB train "${COMMON[@]}" --algorithm mtl-pooled --set normalize_features=false \
    --run-dir $OUT/mtl-pooled_1shot >> $OUT/mtl-pooled_1shot.log 2>&1 &
nice -n 10 $NB train "${COMMON[@]}" --algorithm protonet --set test_head=own --set 'val_heads=["own","logreg"]' \
    --run-dir $OUT/protonet_1shot >> $OUT/protonet_1shot.log 2>&1 &
wait
/work/main/.venv/bin/python experiments/results/mtl_faithful_omniglot/summarise.py
