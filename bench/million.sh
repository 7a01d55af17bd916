#!/usr/bin/env bash
# A million room and private messages through one chatapp server (release
# build, real protocol), watching the write-ahead log, the event loop's
# turns during checkpoints, and the database's bytes per message. Prints
# the results as Markdown (docs/BENCHMARKS.md, "A million messages").
#
# Usage: bench/million.sh [million options]   (see `million --help`)
#   --messages N    fewer messages, for a trial (default 1,000,000)
#   --rate R        messages a second offered (default 10,000)
# Environment:
#   BENCH_WORK=DIR       scratch directory (default /tmp/chatapp-million)
#   BENCH_WAIT_QUIET=1   first wait (up to 30 min) for a 1-minute load
#                        average under 1.5, so others' work does not skew it
#
# The server is pinned to CPU 0 and this driver to CPU 1. Everything
# listens on 127.0.0.1 only, and every step is bounded in time.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-/tmp/chatapp-million}
mkdir -p "$WORK"

if [ "$(getconf _NPROCESSORS_ONLN)" -lt 2 ]; then
  echo "bench/million.sh: needs two CPUs (one for the server, one for the driver)" >&2
  exit 1
fi

(cd "$REPO" && cargo build --release --locked)
# The load generator's lock file follows chatapp's dependencies: no --locked.
(cd "$REPO/bench/loadgen" && cargo build --release --bin million)

# 2,000 clients hold 4,000 sockets between them.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "${BENCH_WAIT_QUIET:-0}" = 1 ]; then
  for _ in $(seq 1 30); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk -v l="$load" 'BEGIN { exit !(l < 1.5) }'; then break; fi
    echo "bench/million.sh: 1-minute load average $load, waiting for it to fall under 1.5" >&2
    sleep 60
  done
fi

exec taskset -c 1 "$REPO/bench/loadgen/target/release/million" \
  --chatapp "$REPO/target/release/chatapp" \
  --work "$WORK" \
  --server-cpu 0 \
  --command "bench/million.sh${*:+ $*}" \
  "$@"
