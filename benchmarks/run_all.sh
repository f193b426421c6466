#!/usr/bin/env bash
# Run both benchmarks at their defaults and rewrite benchmarks/RESULTS.md.
#   RUN_DIR   run with data/, tokenizer/ (and mle/final for realistic GRPO numbers); default runs/textworld
#   OUT       where the JSON results go; default benchmarks/results
#   PYTHON    interpreter; default .venv/bin/python
# Run it on a quiet machine: every number is wall-clock time.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
RUN_DIR=${RUN_DIR:-runs/textworld}
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"

"$PYTHON" benchmarks/bench_sampler.py --run-dir "$RUN_DIR" --json "$OUT/sampler.json"
"$PYTHON" benchmarks/bench_grpo.py --run-dir "$RUN_DIR" --json "$OUT/grpo.json"
"$PYTHON" benchmarks/write_results.py --sampler "$OUT/sampler.json" --grpo "$OUT/grpo.json"
