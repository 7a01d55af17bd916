#!/usr/bin/env bash
# S6, the reconnect storm (chatapp only: the IRC peers have no session to
# resume). One chatapp server (release build, default scrypt cost) gets
# 5,000 clients logged in, is killed with SIGKILL and restarted on the same
# data directory; every client reconnects, resumes with its token and sends
# one `catch_up`. Then a smaller storm of password logins at the default
# scrypt cost, for comparison. Prints the results as Markdown
# (docs/BENCHMARKS.md, "S6 reconnect storm").
#
# Usage: bench/reconnect.sh [reconnect options]   (see `reconnect --help`)
#   --clients N            clients that resume (default 5,000)
#   --password-clients M   clients of the password storm (default 200)
#   --quick                ten times fewer: a trial run
# Environment:
#   BENCH_WORK=DIR         scratch directory (default /tmp/chatapp-reconnect)
#
# The server is pinned to CPU 0 and this driver to CPU 1. Everything
# listens on 127.0.0.1 only, and every step is bounded in time.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-/tmp/chatapp-reconnect}
mkdir -p "$WORK"

if [ "$(getconf _NPROCESSORS_ONLN)" -lt 2 ]; then
  echo "bench/reconnect.sh: needs two CPUs (one for the server, one for the driver)" >&2
  exit 1
fi

(cd "$REPO" && cargo build --release --locked)
# The load generator's lock file follows chatapp's dependencies: no --locked.
(cd "$REPO/bench/loadgen" && cargo build --release --bin reconnect)
CHATAPP=$REPO/target/release/chatapp

# 5,000 clients hold 10,000 sockets between them.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# chatapp's per-client throttles, relaxed as for the other scenarios.
CHAT_ARGS=()
for a in --message-burst --message-rate --request-burst --request-rate; do
  CHAT_ARGS+=(--chatapp-arg="$a" --chatapp-arg=1000000)
done

REVISION=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || true)
if [ -n "$REVISION" ] && [ -n "$(cd "$REPO" && git status --porcelain -- src Cargo.toml 2>/dev/null)" ]; then
  REVISION="$REVISION with uncommitted changes"
fi

exec taskset -c 1 "$REPO/bench/loadgen/target/release/reconnect" \
  --chatapp "$CHATAPP" \
  --work "$WORK" \
  --server-cpu 0 \
  --revision "${REVISION:+(revision $REVISION)}" \
  --command "bench/reconnect.sh${*:+ $*}" \
  "${CHAT_ARGS[@]}" \
  "$@"
