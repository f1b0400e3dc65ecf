#!/usr/bin/env bash
# The 28x28 conv-kernel study (issue 20), from the repository root: every kernel and the trained
# Conv-4 see the same 28x28 Omniglot images. Needs the encoder run folder runs/kf_encoder_mtl
# (command in ../kernel_fewshot/README.md). The two kernel-fewshot runs share every flag but
# --test-split (identical training episodes: the conv training block is computed once, then read
# from the cache). About 26 min of conv kernel per run on 2 idle cores, float64, depths 1-4 from one
# pass (README.md here); on a GPU, experiments/gpu_conv_kernels.py with the same flags fills the cache.
set -euo pipefail
common=(--shots 1 --train-episodes 3 --image-size 28 --labels random-slots,global,encoding
        --encoder runs/kf_encoder_mtl --conv-depths 1,2,3,4 --conv-image-size 28 --conv-train-episodes 3
        --conv-cache runs/conv28/cache --quiet)
out=experiments/results/kernel_fewshot_conv28
nice -n 10 ntk-bridge kernel-fewshot "${common[@]}" --test-split val --test-episodes 40 --conv-test-episodes 40 \
    --out $out/val --figure $out/val/kernel_fewshot.png
nice -n 10 ntk-bridge kernel-fewshot "${common[@]}" --test-split test --test-episodes 40 --conv-test-episodes 40 \
    --out $out/test --figure $out/test/kernel_fewshot.png
python experiments/conv_select.py $out/val $out/test --out $out
