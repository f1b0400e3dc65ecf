#!/usr/bin/env bash
# The device checks of issues 5 and 6 in one call (run from the repository root on a GPU
# machine whose python3 has JAX, flax, optax and orbax; ntk_bridge is used from the checkout).
#   1. MTL with ResNet-12: images/s at 32 and 84 px, an end-to-end run, projected GPU-hours
#   2. one training step of MTL, MAML (+remat, first order), ANIL, ProtoNet, MetaOptNet-ridge
#      on ResNet-12 at the papers' batch sizes: per-step time ratios
# Logs and JSON go to $OUT (default ./gpu_out).
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"; export OUT PYTHONPATH=. PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import jax, flax, optax, orbax.checkpoint as oc; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'devices', jax.devices())"
} 2>&1 | tee "$OUT/env.log"
timeout "${TRAINER_TIMEOUT:-200}" python3 experiments/gpu_trainer_check.py 2>&1 | tee "$OUT/gpu_trainer_check.log"
timeout "${GBML_TIMEOUT:-330}" python3 experiments/gpu_gbml_check.py --budget "${GBML_BUDGET:-150}" 2>&1 | tee "$OUT/gpu_gbml_check.log"
