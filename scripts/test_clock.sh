#!/usr/bin/env bash
# `make test-clock`: the test suite under shifted clocks, at the hours that break date code:
# 03:30 UTC, 23:50 in Paris, both nights of a daylight-saving change, and a year from now. Each
# run shifts the wall clock of every Python process it starts (pytest, the embedded AWS, Airflow,
# the Lambda runtime) by one fixed offset (tests/clock_shift/sitecustomize.py), so all of them
# agree on the time and the clock keeps ticking; monotonic time and sleeps stay real.
#
#   scripts/test_clock.sh [pytest args...]        e.g. scripts/test_clock.sh tests/unit -x
#   CLOCKS="2027-03-28 00:30:00 UTC" scripts/test_clock.sh
set -uo pipefail
cd "$(dirname "$0")/.."

default_clocks() {
  date -u -d "tomorrow 03:30" "+%Y-%m-%d %H:%M:%S UTC"
  TZ=Europe/Paris date -d "tomorrow 23:50" "+%Y-%m-%d %H:%M:%S %z"
  echo "2027-03-28 00:30:00 UTC"  # Europe springs forward at 01:00 UTC: a 23-hour local day
  echo "2027-10-31 00:30:00 UTC"  # Europe falls back at 01:00 UTC: a 25-hour local day
  date -u -d "now + 365 days" "+%Y-%m-%d %H:%M:%S UTC"
}

if [ -n "${CLOCKS:-}" ]; then
  mapfile -t clocks <<<"$CLOCKS"
else
  mapfile -t clocks < <(default_clocks)
fi

failed=0
summary=()
for when in "${clocks[@]}"; do
  offset=$(($(date -d "$when" +%s) - $(date +%s)))
  echo "=== clock: $when (offset $offset s) ==="
  started=$(date +%s)
  log=$(mktemp)
  STOREPULSE_CLOCK_SHIFT_SECONDS="$offset" PYTHONPATH="$PWD/tests/clock_shift${PYTHONPATH:+:$PYTHONPATH}" \
    .venv/bin/pytest -p no:cacheprovider "$@" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  took=$(($(date +%s) - started))
  result=$(grep -E "[0-9]+ (passed|failed|error)" "$log" | tail -n 1 | tr -d "=" | xargs)
  rm -f "$log"
  summary+=("$when: ${result:-no result} (exit $status, ${took} s)")
  [ "$status" -eq 0 ] || failed=1
done

echo
echo "=== test-clock summary ==="
printf '%s\n' "${summary[@]}"
exit "$failed"
