#!/usr/bin/env bash
# Install everything (into .venv) and run the main job: `harness run` on the embedded reference server (vLLM
# engine, embedded model). Arguments pass through, e.g. `./scripts/main.sh --engine sim`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
harness run "$@"
