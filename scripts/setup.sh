#!/usr/bin/env bash
# Create .venv and install rlvr-world with the TextWorld world and test tools. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch is pinned to 2.13.0 in pyproject.toml: the CPU wheel (a looser pin pulls a CUDA build).
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[textworld,test]' 2>&1 \
  | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, transformers, textworld; print('rlvr-world env ready: torch', torch.__version__, 'transformers', transformers.__version__, 'textworld', textworld.__version__)"
