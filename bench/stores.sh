#!/usr/bin/env bash
# One chatapp node on each of its stores, SQLite (the default) and
# PostgreSQL, under the same load: S2 to S4 of bench/run.sh, chatapp only,
# in one invocation, so that the two are compared in one session.
#
#   1. builds chatapp (release) and the load generator;
#   2. runs S2 (one big room), S3 (many small rooms) and S4 (private
#      messages) on SQLite;
#   3. creates a scratch PostgreSQL cluster (initdb from the postgresql
#      package, fsync and synchronous_commit on, as Debian ships it) on
#      127.0.0.1, pinned to the same CPU as chatapp, and runs the same
#      scenarios with `serve --database`, measuring PostgreSQL's processes'
#      CPU per delivery beside chatapp's;
#   4. prints both reports and leaves them in the scratch directory.
#
# Usage: bench/stores.sh [loadgen options, e.g. --step-secs 15 or --quick]
# Environment:
#   BENCH_WORK=DIR     scratch directory (default /tmp/chatapp-bench)
#   BENCH_PG_PORT=N    the scratch PostgreSQL's port (default 55432)
#
# Everything listens on 127.0.0.1 only, every step is bounded in time, and
# the scratch PostgreSQL is stopped when the script ends.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-/tmp/chatapp-bench}/stores
PORT=${BENCH_PG_PORT:-55432}
SCENARIOS=s2room,s3,s4

# shellcheck source=bench/common.sh
. "$REPO/bench/common.sh"
pg_binaries bench/stores.sh

# 1. Release builds.
bench_prepare bench/stores.sh
rm -rf "$WORK"
mkdir -p "$WORK"

loadgen() {
  bench_loadgen "$WORK" "bench/stores.sh${ARGS:+ $ARGS}" --only "$SCENARIOS" "$@"
}
ARGS="$*"

# 2. SQLite.
loadgen "$@" >"$WORK/sqlite.md"

# 3. PostgreSQL: a scratch cluster (bench/common.sh).
trap stop_scratch_pg EXIT
scratch_pg "$WORK/pg" "$PORT"
loadgen --database "postgresql://chatapp@127.0.0.1:$PORT/bench" --measure postgres "$@" \
  >"$WORK/postgres.md"

# 4.
echo "## chatapp on SQLite"
cat "$WORK/sqlite.md"
echo
echo "## chatapp on PostgreSQL"
cat "$WORK/postgres.md"
