#!/usr/bin/env bash
# Set up (see setup.sh --dev) and run the whole test suite. Exit status: pytest's, with
# "no tests collected" (5) counted as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev || exit 1
.venv/bin/ruff check . || exit 1
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
  echo "test: no tests were collected" >&2
  exit 1
fi
exit $rc
