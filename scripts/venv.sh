# Sourced by main.sh and test.sh: make .venv (Python >= 3.11) and install the project with the CPU build of vLLM.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"
if [[ ! -x .venv/bin/python ]]; then
    "${PYTHON:-python3}" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is required"'
    "${PYTHON:-python3}" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
bash scripts/install.sh .venv/bin/python
export PATH="${repo_root}/.venv/bin:${PATH}"
