#!/usr/bin/env bash
# Install helix4d into ./.venv (the README's set-up step).
#   scripts/install.sh                 the package: generate, train, export, evaluate
#   scripts/install.sh test,app,blender,alembic  + tests, the web app, Blender import, Alembic export (CI runs this)
# System libraries (headless EGL rendering; for tests also Chromium and Node for the browser and glTF checks)
# are installed with apt-get when it is available and we are root; otherwise install them yourself.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}

apt_packages="libegl1 libegl-mesa0 libgl1-mesa-dri libgles2"
[[ ",$extras," == *",test,"* ]] && apt_packages="$apt_packages chromium nodejs npm"
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  missing=$(for p in $apt_packages; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    # Node may come from elsewhere (nvm, a distribution image): only ask apt for what has no command yet.
    command -v node >/dev/null 2>&1 && missing=$(echo "$missing" | grep -vx 'nodejs\|npm' || true)
    if [ -n "$missing" ]; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# PyTorch first: a CPU build where one is provided locally, otherwise the default build for this platform.
.venv/bin/pip install -q "torch==2.13.0" 2>/dev/null || .venv/bin/pip install -q "torch>=2.5"
if [ -n "$extras" ]; then .venv/bin/pip install -q -e ".[$extras]"; else .venv/bin/pip install -q -e .; fi
[[ ",$extras," == *",test,"* ]] && command -v npm >/dev/null 2>&1 && npm ci --prefix tests/js --no-audit --no-fund -s || true
.venv/bin/helix4d --version
