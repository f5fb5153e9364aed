#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 and lets the user `postgres`
# in without a password from there, as the tests expect (NOTESAGA_TEST_POSTGRES_URL's
# default). On a fresh Debian machine `make deps` has installed the server; this starts
# its cluster (creating one if there is none) and, only if the tests could not log in,
# trusts loopback connections in that cluster's pg_hba.conf. A server that already
# answers and lets the tests in is left alone.
set -euo pipefail

ready() { pg_isready -q -h 127.0.0.1 -p 5432; }
login() { psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; }

if ready && login; then
  exit 0
fi
version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$version" ]; then
  if [ -d /usr/lib/postgresql ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    pg_createcluster "$version" main
  else
    echo "PostgreSQL is not installed: run \`make deps\` (or set NOTESAGA_TEST_POSTGRES_URL)" >&2
    exit 1
  fi
fi
if ! ready; then
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 30); do ready && break; sleep 1; done
fi
if ! login; then
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  echo "trusting loopback connections in $hba for the tests"
  sed -i '1i host all postgres 127.0.0.1/32 trust # notesaga tests\nhost all postgres ::1/128 trust # notesaga tests' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  for _ in $(seq 1 30); do login && break; sleep 1; done
fi
ready && login || { echo "PostgreSQL does not let the tests in on 127.0.0.1:5432" >&2; exit 1; }
