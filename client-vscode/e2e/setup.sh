#!/usr/bin/env bash
# Install what the real-VS-Code end-to-end suite needs, offline apart from the package
# registries: Debian's chromium and ripgrep (and the build tools code-server's native modules
# need), then code-server and playwright-core from npm into e2e/.deps (ignored by git). A
# second run with the same versions does nothing.
#
#   bash client-vscode/e2e/setup.sh     # as root, or with sudo
set -euo pipefail
cd "$(dirname "$0")"

CODE_SERVER_VERSION=4.100.3  # bundles VS Code 1.100.3; the newest whose engines accept Node 20
PLAYWRIGHT_VERSION=1.55.0
RIPGREP_ASSET=ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz
DEPS="$PWD/.deps"
STAMP="$DEPS/.installed-$CODE_SERVER_VERSION-$PLAYWRIGHT_VERSION"

apt_packages=(chromium ripgrep build-essential pkg-config libkrb5-dev libsecret-1-dev)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "e2e setup: installing ${missing[*]}"
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [[ -f "$STAMP" ]]; then
  echo "e2e setup: code-server $CODE_SERVER_VERSION and playwright-core $PLAYWRIGHT_VERSION already installed"
  exit 0
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [[ "$node_major" != 20 ]]; then
  echo "e2e setup: code-server $CODE_SERVER_VERSION needs Node 20, found $(node --version)" >&2
  exit 1
fi

# @vscode/ripgrep's postinstall downloads rg from the internet unless its download cache
# holds the asset: seed that cache with Debian's rg (a tarball with `rg` at its top).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/rg"
cp "$(command -v rg)" "$tmp/rg/rg"
export TMPDIR="$tmp"
rm -rf "$DEPS"
mkdir -p "$DEPS"
# The cache folder is named after @vscode/ripgrep's version: read it from code-server's
# shrinkwrap after an install without scripts, seed, then run the install scripts.
export npm_config_yes=true npm_config_unsafe_perm=true npm_config_audit=false npm_config_fund=false
echo "e2e setup: npm install code-server@$CODE_SERVER_VERSION playwright-core@$PLAYWRIGHT_VERSION"
npm install --prefix "$DEPS" --ignore-scripts --no-save \
  "code-server@$CODE_SERVER_VERSION" "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null
rg_versions=$(node -e '
  const fs = require("fs");
  const lock = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  const found = new Set();
  for (const [k, v] of Object.entries(lock.packages || {}))
    if (k.endsWith("node_modules/@vscode/ripgrep")) found.add(v.version);
  console.log([...found].join(" "));
' "$DEPS/node_modules/code-server/lib/vscode/npm-shrinkwrap.json")
for version in $rg_versions; do
  mkdir -p "$tmp/vscode-ripgrep-cache-$version"
  tar -czf "$tmp/vscode-ripgrep-cache-$version/$RIPGREP_ASSET" -C "$tmp/rg" rg
done
# code-server's own native dependency (argon2 builds from source when its prebuilt binary
# cannot be downloaded).
(cd "$DEPS" && npm rebuild argon2 >/dev/null 2>"$DEPS/rebuild.log") || {
  tail -20 "$DEPS/rebuild.log" >&2; echo "e2e setup: building argon2 failed" >&2; exit 1; }
echo "e2e setup: code-server's postinstall (builds native modules; a few minutes)"
(cd "$DEPS/node_modules/code-server" && npm_config_user_agent="npm/$(npm --version) node/$(node --version) linux x64" sh ./postinstall.sh) \
  > "$DEPS/postinstall.log" 2>&1 || {
  tail -30 "$DEPS/postinstall.log" >&2
  echo "e2e setup: code-server's postinstall failed (log: $DEPS/postinstall.log)" >&2
  exit 1
}
touch "$STAMP"
echo "e2e setup: ready"
