#!/usr/bin/env bash
# The 14x14 conv-kernel study (issue 20), from the repository root. Needs the encoder run folder
# runs/kf_encoder_mtl (command in ../kernel_fewshot/README.md; ~18 min on 2 shared cores).
# The two kernel-fewshot runs share every flag but --test-split; their training episodes are
# identical (same seed and sampling order), so the conv training block is computed once and read
# from the cache by the other run. Sized for 2 heavily shared cores (README.md here).
set -euo pipefail
common=(--shots 1 --train-episodes 3 --test-episodes 20 --labels random-slots,global,encoding
        --encoder runs/kf_encoder_mtl --conv-depths 1,2,3,4 --conv-image-size 14 --conv-train-episodes 3
        --conv-test-episodes 20 --conv-tile 8 --conv-cache runs/conv14/cache --quiet)
out=experiments/results/kernel_fewshot_conv14
nice -n 10 ntk-bridge kernel-fewshot "${common[@]}" --test-split val --out $out/val --figure $out/val/kernel_fewshot.png
nice -n 10 ntk-bridge kernel-fewshot "${common[@]}" --test-split test --out $out/test --figure $out/test/kernel_fewshot.png
python experiments/conv14_select.py $out/val $out/test --out $out
