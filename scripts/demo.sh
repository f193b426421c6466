#!/usr/bin/env bash
# Set everything up and run the whole TextWorld pipeline (collect -> MLE -> RLVR -> eval -> report).
# With no arguments it runs the embedded default and rewrites results/textworld.json;
# otherwise the arguments go to `rlvr-world demo`, e.g.  bash scripts/demo.sh --config textworld_tiny
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ $# -eq 0 ]; then
  set -- --config textworld --results-file results/textworld.json
fi
exec .venv/bin/rlvr-world demo "$@"
