#!/usr/bin/env bash
# Run every benchmark at its defaults, then rewrite benchmarks/RESULTS.md and benchmarks/results.json.
#   RUN_DIR   run with data/, tokenizer/ (and mle/final for realistic GRPO numbers); default runs/textworld
#   OUT       where the JSON results go; default benchmarks/results
#   PYTHON    interpreter; default .venv/bin/python
#   TRL_ARGS  options for bench_vs_trl.py; default "--pairs 3 --steps 2 --warmup 1" (a TRL step on
#             the larger `base` model takes minutes on 2 cores)
# Benchmarks: sampler vs generate, GRPO step, MLE throughput / MFU, GRPO step scaling (also rewrites
# benchmarks/scaling.png), and GRPO vs TRL when benchmarks/bench_vs_trl.py exists (it needs the
# `bench` extra, installed here quietly). Run it on a quiet machine: every number is wall-clock time.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
RUN_DIR=${RUN_DIR:-runs/textworld}
OUT=${OUT:-benchmarks/results}
TRL_ARGS=${TRL_ARGS:---pairs 3 --steps 2 --warmup 1}
mkdir -p "$OUT"

"$PYTHON" benchmarks/bench_sampler.py --run-dir "$RUN_DIR" --json "$OUT/sampler_vs_generate.json"
"$PYTHON" benchmarks/bench_grpo.py --run-dir "$RUN_DIR" --json "$OUT/grpo.json"
"$PYTHON" benchmarks/bench_mle.py --run-dir "$RUN_DIR" --profile 3 --json "$OUT/mle.json"
"$PYTHON" benchmarks/bench_scaling.py --run-dir "$RUN_DIR" --json "$OUT/scaling.json"
if [[ -f benchmarks/bench_vs_trl.py ]]; then
    "$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[bench]'
    # shellcheck disable=SC2086  # TRL_ARGS is a list of options
    "$PYTHON" benchmarks/bench_vs_trl.py --run-dir "$RUN_DIR" $TRL_ARGS --json "$OUT/grpo_vs_trl.json"
fi
"$PYTHON" benchmarks/write_results.py "$OUT"
