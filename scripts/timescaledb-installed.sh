#!/usr/bin/env bash
# Exits 0 when the TimescaleDB extension is installed for the PostgreSQL the
# tests use (the newest /usr/lib/postgresql/*/bin, or pg_config's), 1 when
# not (or when STREAMFORGE_NO_TIMESCALEDB is set): `make test` runs the
# TimescaleDB tests only then. Prints where it looked.
set -uo pipefail
if [ -n "${STREAMFORGE_NO_TIMESCALEDB:-}" ]; then
  echo "STREAMFORGE_NO_TIMESCALEDB is set"
  exit 1
fi
bindir=""
if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
  bindir="$(pg_config --bindir)"
else
  bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
fi
if [ -z "$bindir" ]; then
  echo "no PostgreSQL server found"
  exit 1
fi
libdir="$("$bindir/pg_config" --pkglibdir 2>/dev/null || echo /usr/lib/postgresql/lib)"
if ls "$libdir"/timescaledb*.so >/dev/null 2>&1; then
  echo "TimescaleDB installed in $libdir"
  exit 0
fi
echo "no TimescaleDB in $libdir"
exit 1
