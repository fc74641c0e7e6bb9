#!/usr/bin/env bash
# The dashboard's end-to-end tests drive Debian's Chromium (/usr/bin/chromium): install it when
# missing. A browser downloaded at run time (e.g. `playwright install`) is not reachable here.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "error: the end-to-end tests need Chromium: install Debian's 'chromium' package" \
       "(sudo apt-get install chromium), or put a chromium binary on PATH" >&2
  exit 1
fi
echo "installing Debian's chromium for the end-to-end tests ..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
