#!/usr/bin/env bash
# Set up (see setup.sh --dev) and run the whole test suite. Exit status: pytest's, with
# "no tests collected" (5) counted as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev || exit 1
.venv/bin/ruff check . || exit 1

# The VS Code client: type-check, unit tests, bundle, package, integration test against the
# real `asmopt serve`. Its tools (vsce 3) need Node >= 20.
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if ((node_major >= 20)); then
  ASMOPT_PYTHON="$PWD/.venv/bin/python" bash client-vscode/scripts/ci.sh || exit 1
else
  echo "test: client-vscode skipped: Node >= 20 is needed (found ${node_major})" >&2
fi

.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
  echo "test: no tests were collected" >&2
  exit 1
fi
exit $rc
