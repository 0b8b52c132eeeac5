#!/usr/bin/env bash
# Install everything (into .venv) and run the main job.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
python scripts/demo.py "$@"
