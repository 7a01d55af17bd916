#!/usr/bin/env bash
# chatapp's side-by-side benchmark against two IRC servers (ngircd and
# InspIRCd, from Debian's packages), in one invocation:
#
#   1. fetches and unpacks the two peers (no install, nothing started by apt);
#   2. builds chatapp (release) and the load generator (bench/loadgen);
#   3. runs every scenario against ngircd, InspIRCd and chatapp, each server
#      started fresh for each scenario and pinned to CPU 0, the load
#      generator pinned to CPU 1;
#   4. writes the tables into docs/BENCHMARKS.md (between its marker lines).
#
# Usage: bench/run.sh [loadgen options]
#   --quick                 everything ten times smaller: a trial run
#   --only s1,s2burst,...   some scenarios (s1 s2burst s2room s3 s4 s5)
#   --servers chatapp,...   some servers (ngircd inspircd chatapp)
#   --step-secs N           seconds each rate step sends for (default 10)
# Environment:
#   BENCH_OUT=FILE          write there instead of docs/BENCHMARKS.md
#   BENCH_WORK=DIR          scratch directory (default /tmp/chatapp-bench)
#   BENCH_WAIT_QUIET=1      first wait (up to 30 min) for a 1-minute load
#                           average under 1.0, so others' work does not skew it
#
# Everything listens on 127.0.0.1 only, and every step is bounded in time.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-/tmp/chatapp-bench}
PKGROOT=$WORK/pkg
mkdir -p "$WORK"

if [ "$(getconf _NPROCESSORS_ONLN)" -lt 2 ]; then
  echo "bench/run.sh: needs two CPUs (one for the server, one for the load generator)" >&2
  exit 1
fi

# 1. The peers, unpacked from Debian's packages.
if [ ! -x "$PKGROOT/usr/sbin/ngircd" ] || [ ! -x "$PKGROOT/usr/sbin/inspircd" ]; then
  mkdir -p "$WORK/debs" "$PKGROOT"
  (
    cd "$WORK/debs"
    if ! apt-get download ngircd inspircd libident; then
      apt-get update
      apt-get download ngircd inspircd libident
    fi
    for d in *.deb; do dpkg-deb -x "$d" "$PKGROOT"; done
  )
fi

# 2. Release builds.
(cd "$REPO" && cargo build --release --locked)
# The load generator's lock file follows chatapp's dependencies: no --locked.
(cd "$REPO/bench/loadgen" && cargo build --release)
CHATAPP=$REPO/target/release/chatapp
LOADGEN=$REPO/bench/loadgen/target/release/loadgen

# 5,000 clients hold 10,000 sockets between them.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# chatapp's per-client throttles, relaxed as the peers' are, when this
# build has the options for it (the loadgen counts refusals either way).
CHAT_ARGS=()
if "$CHATAPP" serve --fingerprint --data-dir "$WORK/probe-flags" \
     --message-burst 1000000 --message-rate 1000000 \
     --request-burst 1000000 --request-rate 1000000 >/dev/null 2>&1; then
  for a in --message-burst --message-rate --request-burst --request-rate; do
    CHAT_ARGS+=(--chatapp-arg="$a" --chatapp-arg=1000000)
  done
fi
rm -rf "$WORK/probe-flags"

if [ "${BENCH_WAIT_QUIET:-0}" = 1 ]; then
  for _ in $(seq 1 15); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk -v l="$load" 'BEGIN { exit !(l < 1.0) }'; then break; fi
    echo "bench/run.sh: 1-minute load average $load, waiting for it to fall under 1.0" >&2
    sleep 120
  done
fi

REVISION=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || true)
if [ -n "$REVISION" ] && [ -n "$(cd "$REPO" && git status --porcelain -- src Cargo.toml 2>/dev/null)" ]; then
  REVISION="$REVISION with uncommitted changes"
fi

# 3 and 4. The servers are pinned to CPU 0 by the load generator itself.
exec taskset -c 1 "$LOADGEN" \
  --chatapp "$CHATAPP" \
  --pkgroot "$PKGROOT" \
  --peers "$REPO/bench/peers" \
  --work "$WORK/run" \
  --server-cpu 0 \
  --out "${BENCH_OUT:-$REPO/docs/BENCHMARKS.md}" \
  --revision "${REVISION:+(revision $REVISION)}" \
  --command "bench/run.sh${*:+ $*}" \
  "${CHAT_ARGS[@]}" \
  "$@"
