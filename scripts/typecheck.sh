#!/usr/bin/env bash
# mypy over the package as it installs: asmopt.executor, .model and .server live in top-level
# folders (pyproject's package-dir), which mypy cannot map by itself. Without this shadow
# tree it would treat every `from asmopt.model... import name` as a missing module and let a
# wrong name through. The tree is made of links to the real files, in a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
shadow=$(mktemp -d "${TMPDIR:-/tmp}/asmopt-typecheck.XXXXXX")
trap 'rm -rf "$shadow"' EXIT
mkdir "$shadow/asmopt"
for entry in asmopt/*; do
    case "$(basename "$entry")" in __pycache__|examples) continue ;; esac
    ln -s "$repo/$entry" "$shadow/asmopt/"
done
ln -s "$repo/executor" "$shadow/asmopt/executor"
ln -s "$repo/model" "$shadow/asmopt/model"
ln -s "$repo/server" "$shadow/asmopt/server"
cd "$shadow"
"$repo/.venv/bin/mypy" --config-file "$repo/pyproject.toml" -p asmopt "$@"
