#!/usr/bin/env bash
# Install everything (into .venv) and run the whole test suite: lint, types, and every test tier.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
echo "== ruff" && ruff check . && ruff format --check .
echo "== mypy" && mypy
echo "== import contracts" && lint-imports --no-cache
echo "== pytest" && pytest "$@"
