# Sourced by the benchmark scripts that run chatapp alone (bench/stores.sh,
# bench/nodes.sh): what they share.
#
#   bench_prepare NAME     needs two CPUs (one for the servers, one for the
#                          load generator); builds chatapp (release) and the
#                          load generator; sets CHATAPP, LOADGEN, REVISION
#                          and THROTTLES (bench/run.sh's relaxed per-client
#                          throttles, as loadgen arguments); raises the
#                          descriptor limit. NAME: the script, for messages.
#   bench_loadgen WORK SCRIPT [ARGS]
#                          the load generator on CPU 1, chatapp only, the
#                          servers on CPU 0, scratch space WORK/run, the
#                          command line SCRIPT quoted in the report
#
# and a scratch PostgreSQL: finds the postgresql package's binaries, and
# starts and stops a cluster on 127.0.0.1 (fsync and synchronous_commit on,
# as Debian ships it), pinned to the servers' CPU. initdb and postgres
# refuse root, so as root they run as the package's `postgres` user.
#
#   pg_binaries NAME       sets PGBIN, or says what to install (NAME: the
#                          script, for the message) and exits
#   scratch_pg DIR PORT    initdb into DIR/data, start postgres on PORT,
#                          wait until it answers, create the database
#                          `bench` of the superuser `chatapp`; sets PG_PID
#   stop_scratch_pg        stops it (for the caller's EXIT trap)

bench_prepare() {
  if [ "$(getconf _NPROCESSORS_ONLN)" -lt 2 ]; then
    echo "$1: needs two CPUs (one for the servers, one for the load generator)" >&2
    exit 1
  fi
  (cd "$REPO" && cargo build --release --locked)
  (cd "$REPO/bench/loadgen" && cargo build --release)
  CHATAPP=$REPO/target/release/chatapp
  LOADGEN=$REPO/bench/loadgen/target/release/loadgen
  REVISION=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || true)
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  THROTTLES=()
  for a in --message-burst --message-rate --request-burst --request-rate; do
    THROTTLES+=(--chatapp-arg="$a" --chatapp-arg=1000000)
  done
}

bench_loadgen() {
  local work=$1 script=$2
  shift 2
  taskset -c 1 "$LOADGEN" \
    --chatapp "$CHATAPP" --pkgroot "$work" --peers "$REPO/bench/peers" \
    --work "$work/run" --server-cpu 0 --servers chatapp \
    --revision "${REVISION:+(revision $REVISION)}" \
    --command "$script" "${THROTTLES[@]}" "$@"
}

pg_binaries() {
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
    echo "$1: PostgreSQL's server binaries are missing; on Debian or Ubuntu: apt-get install postgresql" >&2
    exit 1
  fi
}

scratch_pg() {
  local dir=$1 port=$2
  local as=()
  if [ "$(id -u)" = 0 ]; then
    as=(setpriv --reuid=postgres --regid=postgres --init-groups)
  fi
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  "${as[@]}" "$PGBIN/initdb" -D "$dir/data" -A trust -U chatapp -E UTF8 --locale=C >"$dir/initdb.log"
  taskset -c 0 "${as[@]}" "$PGBIN/postgres" -D "$dir/data" -p "$port" -k "$dir" \
    -c listen_addresses=127.0.0.1 >"$dir/postgres.log" 2>&1 &
  PG_PID=$!
  for _ in $(seq 1 100); do
    if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port"; then break; fi
    sleep 0.1
  done
  "$PGBIN/pg_isready" -h 127.0.0.1 -p "$port"
  "$PGBIN/createdb" -h 127.0.0.1 -p "$port" -U chatapp bench
}

stop_scratch_pg() {
  if [ -n "${PG_PID:-}" ]; then
    kill -INT "$PG_PID" 2>/dev/null
    wait "$PG_PID" 2>/dev/null || true
  fi
}
