#!/usr/bin/env bash
# What the bus between servers costs: one chatapp server on PostgreSQL,
# without and with `--bus` (Redis), under the same load: S3 (many small
# rooms) and S4 (private messages) at 5,000 messages a second, the highest
# step one server on PostgreSQL sustains in both (docs/BENCHMARKS.md).
#
#   1. builds chatapp (release) and the load generator;
#   2. creates a scratch PostgreSQL cluster and a scratch Redis on
#      127.0.0.1, both pinned to chatapp's CPU, so that every server-side
#      cost lands on one core and adds up;
#   3. runs the scenarios three times: without the bus, measuring
#      PostgreSQL's CPU beside chatapp's; with the bus, measuring
#      PostgreSQL's; with the bus, measuring Redis's;
#   4. prints the three reports and leaves them in the scratch directory.
#
# With the bus the server publishes every committed batch and hears it
# back (and skips it, as its own): the cost on the publishing side. What a
# second server pays to apply the batch is not measured here.
#
# Usage: bench/bus.sh [loadgen options, e.g. --step-secs 15]
# Environment:
#   BENCH_WORK=DIR        scratch directory (default /tmp/chatapp-bench)
#   BENCH_PG_PORT=N       the scratch PostgreSQL's port (default 55432)
#   BENCH_REDIS_PORT=N    the scratch Redis's port (default 56379)
#
# Everything listens on 127.0.0.1 only, every step is bounded in time, and
# the scratch servers are stopped when the script ends.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-/tmp/chatapp-bench}/bus
PORT=${BENCH_PG_PORT:-55432}
RPORT=${BENCH_REDIS_PORT:-56379}

if [ "$(getconf _NPROCESSORS_ONLN)" -lt 2 ]; then
  echo "bench/bus.sh: needs two CPUs (one for the servers, one for the load generator)" >&2
  exit 1
fi
# shellcheck source=bench/scratch-pg.sh
. "$REPO/bench/scratch-pg.sh"
pg_binaries bench/bus.sh
if ! command -v redis-server >/dev/null; then
  echo "bench/bus.sh: redis-server is missing; on Debian or Ubuntu: apt-get install redis-server" >&2
  exit 1
fi

(cd "$REPO" && cargo build --release --locked)
(cd "$REPO/bench/loadgen" && cargo build --release)
CHATAPP=$REPO/target/release/chatapp
LOADGEN=$REPO/bench/loadgen/target/release/loadgen
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

rm -rf "$WORK"
mkdir -p "$WORK"
REVISION=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || true)

THROTTLES=()
for a in --message-burst --message-rate --request-burst --request-rate; do
  THROTTLES+=(--chatapp-arg="$a" --chatapp-arg=1000000)
done

loadgen() {
  taskset -c 1 "$LOADGEN" \
    --chatapp "$CHATAPP" --pkgroot "$WORK" --peers "$REPO/bench/peers" \
    --work "$WORK/run" --server-cpu 0 --servers chatapp --only s3,s4 --rates 5000 \
    --revision "${REVISION:+(revision $REVISION)}" \
    --command "bench/bus.sh${*:+ $*}" \
    --database "postgresql://chatapp@127.0.0.1:$PORT/bench" \
    "${THROTTLES[@]}" "$@"
}

trap 'stop_scratch_pg; kill $REDIS 2>/dev/null; wait $REDIS 2>/dev/null || true' EXIT
taskset -c 0 redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$WORK" >"$WORK/redis.log" 2>&1 &
REDIS=$!
scratch_pg "$WORK/pg" "$PORT"
BUS=(--chatapp-arg=--bus --chatapp-arg="redis://127.0.0.1:$RPORT/")

loadgen --db-process postgres "$@" >"$WORK/alone.md"
loadgen --db-process postgres "${BUS[@]}" "$@" >"$WORK/bus-postgres.md"
loadgen --db-process redis-server "${BUS[@]}" "$@" >"$WORK/bus-redis.md"

echo "## One server on PostgreSQL, no bus (database CPU: PostgreSQL)"
cat "$WORK/alone.md"
echo
echo "## The same with --bus (database CPU: PostgreSQL)"
cat "$WORK/bus-postgres.md"
echo
echo "## The same with --bus (database CPU: Redis)"
cat "$WORK/bus-redis.md"
