#!/bin/sh
# Report the optional system tools OpenDeep and its tests use, and what each is for.
# It only informs: tests that need a missing tool skip with the reason (under CI=true a skip
# fails the run, and .ci/run installs them all).
missing=0
have() { command -v "$1" >/dev/null 2>&1; }
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -r | head -n 1)
if [ -z "$pg_bin" ] && ! have initdb; then
  echo "doctor: PostgreSQL server not found (Debian: apt-get install postgresql) — the PostgreSQL tests will skip" >&2
  missing=1
fi
if ! have espeak-ng; then
  echo "doctor: espeak-ng not found (Debian: apt-get install espeak-ng) — simulated callees use a synthetic voice instead" >&2
  missing=1
fi
if ! have chromium; then
  echo "doctor: chromium not found (Debian: apt-get install chromium) — the browser tests of the UI will skip" >&2
  missing=1
fi
[ "$missing" = 0 ] && echo "doctor: all optional tools present" >&2
exit 0
