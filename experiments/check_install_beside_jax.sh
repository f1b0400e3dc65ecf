#!/usr/bin/env bash
# Installs ntk_bridge into a virtual environment that already holds the newest JAX and flax a
# researcher would have, and checks that pip changes neither (issue 19). Also prints the venv's
# size, whether TensorFlow is present, and the install times.
#   bash experiments/check_install_beside_jax.sh [VENV_DIR]      (default: a fresh temporary folder)
# Exit 0 when jax, jaxlib and flax keep their versions and TensorFlow is absent; 1 otherwise.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$(mktemp -d)/venv}"
python3 -m venv "$venv"
pip="$venv/bin/python -m pip"
$pip install -q --upgrade pip 2>/dev/null
versions() { $pip list --format=freeze 2>/dev/null | grep -iE '^(jax|jaxlib|flax|optax|orbax-checkpoint|tensorflow)==' | sort; }
t0=$(date +%s)
$pip install -q jax "flax>=0.12" 2>/dev/null
t1=$(date +%s)
before="$(versions)"
$pip install -q -e "$repo[dev]" 2>/dev/null
$pip install -q --no-deps neural-tangents==0.6.5 2>/dev/null
t2=$(date +%s)
after="$(versions)"
echo "python: $($venv/bin/python --version)"
echo "before ntk_bridge ($((t1 - t0)) s):"; echo "$before" | sed 's/^/  /'
echo "after ntk_bridge ($((t2 - t1)) s):"; echo "$after" | sed 's/^/  /'
echo "venv size: $(du -sh "$venv" | cut -f1)"
status=0
for pkg in jax jaxlib flax; do
  b=$(echo "$before" | grep -i "^$pkg==" || true); a=$(echo "$after" | grep -i "^$pkg==" || true)
  if [ "$b" != "$a" ]; then echo "CHANGED: $b -> $a"; status=1; fi
done
if echo "$after" | grep -qi '^tensorflow=='; then echo "TensorFlow was installed"; status=1; fi
"$venv/bin/python" -c "import ntk_bridge.engine.fc as k, numpy as np; x = k.to_sphere(np.eye(3, 4) + 1); print('fc_kernels diag:', np.diag(k.fc_kernels(k.NetSpec(depth=2), x).ntk))"
[ $status = 0 ] && echo "OK: jax, jaxlib and flax kept their versions; no TensorFlow" || echo "FAIL"
exit $status
