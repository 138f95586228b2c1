#!/usr/bin/env bash
# The VS Code client's CI: install from the lockfile, type-check, unit tests, bundle, package,
# check the package, and the integration test against the real `asmopt serve` (it skips, with
# the reason, when that Python cannot import asmopt.server; ASMOPT_PYTHON picks the Python).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "npm ci"
npm ci --no-audit --no-fund
step "tsc --noEmit"
npx tsc --noEmit
step "unit tests"
npm run --silent compile-tests
node --test --test-reporter=spec out/test/unit/*.test.js
step "build (esbuild)"
npm run --silent build
step "package (vsce)"
npm run --silent package
step "check the vsix"
node scripts/check-vsix.mjs asmopt.vsix
step "integration test (asmopt serve)"
node --test --test-reporter=spec out/test/integration/*.test.js
