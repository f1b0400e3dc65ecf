#!/usr/bin/env bash
# Width at depth, the wide end (issue 21 item 4): finite depth-DEPTH networks at widths WIDTHS, float32,
# one `ntk-bridge width-sweep` folder per (width, seed) under experiments/results/width_sweep/depth${DEPTH}_wide/,
# so the run is resumable at that grain: a folder whose run.json says "complete": true is skipped,
# any other is run again from its start. Width-major order: every seed of a width before the next width.
# Same protocol as experiments/results/width_sweep/depth8 (a = 0.4 / (L + 1), eta*t = 10, lr*lam_max = 0.5);
# seed s is the same task draw and initialisation as seed s of that folder (checked: depth 8, width 64, seed 1
# reproduces its mtl-b and anil rel_error to 1e-9).
#   DEPTH=8 WIDTHS="512 1024 2048" SEEDS="0 1 2 3" nice -n 10 experiments/width_at_depth_wide.sh
# then: ntk-bridge width-sweep --combine --out experiments/results/width_sweep
set -euo pipefail
cd "$(dirname "$0")/.."
DEPTH=${DEPTH:-8}
WIDTHS=${WIDTHS:-"512 1024 2048"}
SEEDS=${SEEDS:-"0 1 2 3"}
METHODS=${METHODS:-mtl-b,anil,head-only}
A=$(.venv/bin/python -c "print(0.4 / ($DEPTH + 1))")
ROOT=experiments/results/width_sweep/depth${DEPTH}_wide
for w in $WIDTHS; do
  for s in $SEEDS; do
    out=$ROOT/w$(printf %04d "$w")_s$s
    if grep -q '"complete": true' "$out/run.json" 2>/dev/null; then continue; fi
    echo "$(date -u +%H:%M:%S) depth $DEPTH width $w seed $s -> $out"
    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/ntk-bridge width-sweep --depth "$DEPTH" --inner-step-size "$A" --widths "$w" \
      --seed "$s" --seeds 1 --dtype float32 --methods "$METHODS" --out "$out" --figure "$out/width_sweep.png" --quiet
  done
done
echo "$(date -u +%H:%M:%S) done"
