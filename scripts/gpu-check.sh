#!/usr/bin/env bash
# Checks of the model path on one CUDA GPU, no network, well under 10 minutes: the
# transformers back-end on CUDA, PPO steps with a 7B run's precision settings (float32 master
# weights, bf16 autocast, gradient checkpointing) on a tiny model made on the spot, and the
# verl reward under verl's concurrent calling pattern. Without a GPU it runs the same checks
# on the CPU (CI does). Prints one JSON object; exit 1 when a check fails.
#
#   scripts/gpu-check.sh [--device cpu|cuda] [--out FILE] [--only NAME ...]
#
# Python: $PYTHON, else the repository's .venv, else python3 (asmopt[llm] installed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
# Nothing may come from the network: models are made locally, hubs stay offline.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec timeout 600 "$python" "$root/scripts/gpu_check.py" "$@"
