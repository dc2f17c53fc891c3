#!/usr/bin/env bash
# System packages the test suite drives: Debian's Chromium (studio end-to-end test),
# docker-compose (validates docker-compose.yml without a Docker engine) and faketime (`make test`
# runs the suite a second time with the clock moved, see the Makefile).
# Installs what is missing when run as root on Debian; otherwise says what to install.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  missing+=(docker-compose)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "warning: missing system packages: ${missing[*]}" >&2
  echo "  install them (Debian: sudo apt-get install ${missing[*]}); the tests that need them will fail" >&2
fi
