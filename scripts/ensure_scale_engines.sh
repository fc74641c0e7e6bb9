#!/usr/bin/env bash
# The scale profile (STOREPULSE_PROFILE=scale) runs Airflow's metadata database on Debian's
# PostgreSQL and its Celery broker on Debian's Redis: install them when missing. Only the
# binaries are used; the platform runs its own instances under its state directory.
set -euo pipefail
missing=()
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || command -v postgres >/dev/null \
  || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "error: the scale profile needs ${missing[*]}: install Debian's packages" \
       "(sudo apt-get install ${missing[*]}), or put their binaries on PATH" >&2
  exit 1
fi
echo "installing Debian's ${missing[*]} for the scale profile ..."
apt-get update -qq
# policy-rc.d exit 101: the packages' own system services are not started (the platform runs
# its own instances, on its own ports).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
