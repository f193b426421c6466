#!/usr/bin/env bash
# Set everything up and run the whole TextWorld pipeline (collect -> MLE -> RLVR -> eval -> report).
# Extra arguments are config overrides, e.g.  bash scripts/demo.sh --config textworld_tiny
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/rlvr-world demo "${@:---config=textworld}"
