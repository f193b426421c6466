#!/usr/bin/env bash
# Create .venv-verl: verl 0.9.1 with our package installed --no-deps beside it, for
# tests/test_verl_integration.py (verl pins transformers <5.11, our .venv has 5.23). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VERL=0.9.1
if [ ! -x .venv-verl/bin/python ]; then
  "$PY" -m venv .venv-verl
fi
pip_install() {
  .venv-verl/bin/python -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true
}
if [ "$(.venv-verl/bin/python -c 'from importlib.metadata import version; print(version("verl"))' 2>/dev/null)" != "$VERL" ]; then
  # torch comes in through accelerate/peft/tensordict; pinned here to the CPU wheel (an unpinned
  # torch is a multi-GB CUDA build). verl's own training stack (vLLM, flash-attn) is not needed
  # to load and call a reward function.
  pip_install "verl==$VERL" "torch==2.13.0"
fi
# Our package without its dependencies (they would replace verl's transformers); the reward
# path needs only what verl already brings (transformers, torch, numpy, tqdm, pyyaml).
if ! .venv-verl/bin/python -c "import rlvr_world" 2>/dev/null; then
  pip_install --no-deps -e .
fi
.venv-verl/bin/python -c "import verl, transformers, rlvr_world.integrations.verl; print('verl env ready: verl', verl.__version__, 'transformers', transformers.__version__)"
