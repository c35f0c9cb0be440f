#!/usr/bin/env bash
# Install what storeedge needs on a fresh Debian machine (run as root, or with sudo available):
# Debian packages for the real services, then a virtualenv in .venv with the project and its
# test tools. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# STOREEDGE_SETUP_RUNTIME=1 (what docker/Dockerfile runs): only what the services run with;
# no test tools, and no broker or time-series server (those run in their own containers).
runtime="${STOREEDGE_SETUP_RUNTIME:-0}"
want=(mosquitto victoria-metrics postgresql)  # postgresql: the chain's Tryton in the tests
[ "$runtime" = 1 ] && want=()
# The tests also drive Chromium, step the agent's clock with libfaketime (the chaos suite) and
# read our shelf simulator with an independent Modbus master (mbpoll, on libmodbus).
[ "${STOREEDGE_SETUP_BROWSER:-0}" = 1 ] && want+=(chromium faketime mbpoll)
# The pages are Chinese first: without a CJK font a browser on this machine draws empty boxes.
[ "$runtime" = 1 ] || want+=(fonts-noto-cjk)
# A Python 3.11+ with venv may come from elsewhere (pyenv, a base image); else Debian's.
if ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  want+=(python3 python3-venv)
fi
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.storeedge-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv" >&2
  .venv/bin/pip install -q --upgrade pip >/dev/null
  if [ "$runtime" = 1 ]; then
    .venv/bin/pip install -q --no-cache-dir .
  else
    .venv/bin/pip install -q -e '.[test]'
  fi
  touch "$stamp"
fi
