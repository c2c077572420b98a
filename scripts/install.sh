#!/usr/bin/env bash
# Install storeflow into ./.venv (and Debian's Chromium when no browser is found).
# Usage: bash scripts/install.sh [--test]     (--test also installs test and benchmark extras)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--test" ] && extras="[test,bench]"

have_browser() {
  [ -n "${STOREFLOW_BROWSER:-}" ] && [ -x "${STOREFLOW_BROWSER}" ] && return 0
  ls "${PLAYWRIGHT_BROWSERS_PATH:-$HOME/.cache/ms-playwright}"/chromium-*/chrome-linux*/chrome >/dev/null 2>&1 && return 0
  [ -x /usr/bin/chromium ] || command -v google-chrome >/dev/null 2>&1
}
if ! have_browser; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "storeflow: no browser found; installing Debian's chromium" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "storeflow: no browser found. Install Chromium (sudo apt-get install -y chromium) or set STOREFLOW_BROWSER." >&2
  fi
fi

# --test: PgBouncer, which the integration tests and benchmarks start in front of PostgreSQL (never as a service)
if [ -n "$extras" ] && ! [ -x /usr/sbin/pgbouncer ] && ! command -v pgbouncer >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "storeflow: installing Debian's pgbouncer (tests run it in front of PostgreSQL)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
    # the package's own service is not used: tests start private instances on free ports
    command -v systemctl >/dev/null 2>&1 && systemctl disable --now pgbouncer >/dev/null 2>&1 || true
  else
    echo "storeflow: pgbouncer not found; the PgBouncer tests will fail. Install it: sudo apt-get install -y pgbouncer" >&2
  fi
fi

PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extras}"
echo "storeflow installed in .venv ($(.venv/bin/storeflow --version))" >&2
