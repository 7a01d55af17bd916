# Sourced by the benchmark scripts that run chatapp on PostgreSQL: finds
# the postgresql package's binaries, and starts and stops a scratch
# cluster on 127.0.0.1 (fsync and synchronous_commit on, as Debian ships
# it), pinned to the servers' CPU. initdb and postgres refuse root, so as
# root they run as the package's `postgres` user.
#
#   pg_binaries NAME       sets PGBIN, or says what to install (NAME: the
#                          script, for the message) and exits
#   scratch_pg DIR PORT    initdb into DIR/data, start postgres on PORT,
#                          wait until it answers, create the database
#                          `bench` of the superuser `chatapp`; sets PG_PID
#   stop_scratch_pg        stops it (for the caller's EXIT trap)

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
