#!/usr/bin/env bash
# Set everything up and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_verl.sh  # .venv-verl: verl's own environment for tests/test_verl_integration.py
exec .venv/bin/python -m pytest -q "$@"
