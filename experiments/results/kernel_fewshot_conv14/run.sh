#!/usr/bin/env bash
# The 14x14 conv-kernel study (issue 20), from the repository root. Needs the encoder run folder
# runs/kf_encoder_mtl (command in ../kernel_fewshot/README.md; ~7-18 min on 2 cores).
# The two kernel-fewshot runs share every flag but --test-split; their training episodes are
# identical (same seed and sampling order), so the conv training block is computed once and read
# from the cache by the other run. About 6 min of conv kernel per run on 2 idle cores (README.md here).
set -euo pipefail
common=(--shots 1 --train-episodes 5 --labels random-slots,global,encoding --encoder runs/kf_encoder_mtl
        --conv-depths 1,2,3,4,6,8 --conv-image-size 14 --conv-train-episodes 5 --conv-cache runs/conv14/cache --quiet)
out=experiments/results/kernel_fewshot_conv14
nice -n 10 ntk-bridge kernel-fewshot "${common[@]}" --test-split val --test-episodes 40 --conv-test-episodes 40 \
    --out $out/val --figure $out/val/kernel_fewshot.png
nice -n 10 ntk-bridge kernel-fewshot "${common[@]}" --test-split test --test-episodes 40 --conv-test-episodes 40 \
    --out $out/test --figure $out/test/kernel_fewshot.png
python experiments/conv_select.py $out/val $out/test --out $out
