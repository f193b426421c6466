#!/usr/bin/env bash
# Set everything up and run a whole pipeline (collect -> MLE -> RLVR -> eval -> report), TextWorld by default.
# With no arguments it runs the embedded default and rewrites results/textworld.json;
# otherwise the arguments go to `rlvr-world demo`, e.g.  bash scripts/demo.sh --config textworld_tiny
# or  bash scripts/demo.sh --world metaworld --results-file results/metaworld.json  (the video world)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ $# -eq 0 ]; then
  set -- --config textworld --results-file results/textworld.json
fi
exec .venv/bin/rlvr-world demo "$@"
