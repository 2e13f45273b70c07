#!/usr/bin/env bash
# Install everything vmdr's lab, demo and tests need, idempotently.
#
# Called by `make bootstrap` (and so by `make demo` and `make test`). Every step
# checks first and does nothing when its work is already done, so a second run
# takes about a second. Needs root for apt-get on a fresh Debian 12 machine.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }

# 1. Debian packages --------------------------------------------------------------
APT_PACKAGES=(golang-go golang-github-vmware-govmomi-dev bind9 bind9-utils bind9-dnsutils
              postgresql qemu-utils rsync ca-certificates golang-github-google-uuid-dev
              chromium fonts-dejavu-core)
command -v node >/dev/null 2>&1 || APT_PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(npm)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || APT_PACKAGES+=(python3-venv)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts no BIND or PostgreSQL service we rely on: the lab and the tests run their own.

# 2. Python virtualenv with vmdr installed (editable) --------------------------------
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
STAMP=.venv/.vmdr-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  say "installing vmdr and its dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[vsphere,azure,dns,dev]'
  touch "$STAMP"
fi

# 3. Azurite from npm, pinned, under the repo (never global) --------------------------
if [ ! -x tools/azurite/node_modules/.bin/azurite-blob ] \
   || [ tools/azurite/package-lock.json -nt tools/azurite/node_modules/.package-lock.json ]; then
  say "installing Azurite (npm ci in tools/azurite)"
  (cd tools/azurite && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# 4. The vCenter simulator, built from Debian's govmomi (GOPATH mode, no downloads) -----
VCSIM=build/vcsim/vcsimdr
if [ ! -x "$VCSIM" ] || [ -n "$(find tools/vcsim -name '*.go' -newer "$VCSIM")" ]; then
  say "building the vCenter simulator from tools/vcsim"
  mkdir -p build/vcsim build/gopath build/gocache
  GO111MODULE=off GOPATH="$ROOT/build/gopath:/usr/share/gocode" GOCACHE="$ROOT/build/gocache" \
    GOFLAGS= GOPROXY=off go build -o "$VCSIM" ./tools/vcsim
fi
say "ready"
