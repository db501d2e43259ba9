#!/usr/bin/env bash
# Debian's chromium for the console tests (driven by Playwright's Python package, never its own browser download).
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "chromium is missing: install Debian's chromium package (browser tests will be skipped)" >&2
fi
