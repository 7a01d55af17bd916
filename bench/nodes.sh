#!/usr/bin/env bash
# chatapp on one server and on several: S2 (one big room), S3 (many small
# rooms) and S4 (private messages) in five deployments, in one invocation
# so that they are compared in one session:
#
#   sqlite    one server, SQLite (the default)
#   postgres  one server on PostgreSQL
#   bus       one server on PostgreSQL with --bus (Redis): what publishing
#             costs the server that stores
#   2 nodes   two servers sharing PostgreSQL and Redis behind HAProxy
#   3 nodes   three of them
#
# The load generator connects through HAProxy, which spreads the clients
# over the servers (packaging/haproxy.cfg, the documented configuration,
# with loopback addresses); each client learns its server from `logged_in`,
# so deliveries that crossed from one server to another are counted apart,
# with their own p99.
#
# Everything on the server side (every chatapp server, PostgreSQL, Redis,
# HAProxy) is pinned to CPU 0 and the load generator to CPU 1: on a 2-core
# machine more servers cannot add CPU, so what this measures is the cost
# per delivery that each added server, the bus and the balancer add, with
# the CPU of every process (chatapp summed over its servers; `postgres`,
# `redis-server` and `haproxy` by name).
#
# Usage: bench/nodes.sh [loadgen options, e.g. --step-secs 5]
# Environment:
#   BENCH_WORK=DIR        scratch directory (default /tmp/chatapp-bench)
#   BENCH_PG_PORT=N       the scratch PostgreSQL's port (default 55432)
#   BENCH_REDIS_PORT=N    the scratch Redis's port (default 56379)
#
# Everything listens on 127.0.0.1 only (chatapp's servers on 17879 and up,
# HAProxy on 17878), every step is bounded in time, and the scratch servers
# are stopped when the script ends.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-/tmp/chatapp-bench}/nodes
PORT=${BENCH_PG_PORT:-55432}
RPORT=${BENCH_REDIS_PORT:-56379}
# Each scenario's rate steps (messages a second).
RATES=(s2room:100,500 s3:5000,10000 s4:2000,5000)

# shellcheck source=bench/common.sh
. "$REPO/bench/common.sh"
pg_binaries bench/nodes.sh
for program in redis-server haproxy; do
  if ! command -v "$program" >/dev/null; then
    echo "bench/nodes.sh: $program is missing; on Debian or Ubuntu: apt-get install $program" >&2
    exit 1
  fi
done

bench_prepare bench/nodes.sh
rm -rf "$WORK"
mkdir -p "$WORK"
ARGS="$*"

# The documented HAProxy configuration for N servers: HAProxy where the
# load generator connects, the servers after it, no stats socket.
balancer() {
  local n=$1
  awk -v n="$n" '
    $1 == "bind" { print "    bind 127.0.0.1:17878"; next }
    $1 == "stats" && $2 == "socket" { next }
    $1 == "server" { next }
    { print }
    END { for (k = 1; k <= n; k++) printf "    server node%d 127.0.0.1:%d\n", k, 17878 + k }
  ' "$REPO/packaging/haproxy.cfg" >"$WORK/haproxy-$n.cfg"
  echo "$WORK/haproxy-$n.cfg"
}

# One deployment: every scenario at its steps; the reports one after the
# other in WORK/NAME.md.
deployment() {
  local name=$1
  shift
  : >"$WORK/$name.md"
  for entry in "${RATES[@]}"; do
    bench_loadgen "$WORK" "bench/nodes.sh${ARGS:+ $ARGS}" \
      --only "${entry%%:*}" --rates "${entry#*:}" \
      --measure postgres,redis-server,haproxy "$@" >>"$WORK/$name.md"
  done
}

trap 'stop_scratch_pg; kill $REDIS 2>/dev/null; wait $REDIS 2>/dev/null || true' EXIT
taskset -c 0 redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$WORK" >"$WORK/redis.log" 2>&1 &
REDIS=$!
scratch_pg "$WORK/pg" "$PORT"
DATABASE=(--database "postgresql://chatapp@127.0.0.1:$PORT/bench")
BUS=(--chatapp-arg=--bus --chatapp-arg="redis://127.0.0.1:$RPORT/")

deployment sqlite "$@"
deployment postgres "${DATABASE[@]}" "$@"
deployment bus "${DATABASE[@]}" "${BUS[@]}" "$@"
deployment nodes-2 "${DATABASE[@]}" "${BUS[@]}" --nodes 2 --balancer "$(balancer 2)" "$@"
deployment nodes-3 "${DATABASE[@]}" "${BUS[@]}" --nodes 3 --balancer "$(balancer 3)" "$@"

for name in sqlite postgres bus nodes-2 nodes-3; do
  echo "## $name"
  cat "$WORK/$name.md"
  echo
done
