#!/usr/bin/env bash
# Smoke test of the Windows executable under wine (Debian's wine64):
#
#   1. `chatapp.exe --help`;
#   2. `chatapp.exe serve` on 127.0.0.1 with a temporary data directory;
#   3. `chatapp.exe` with no arguments (the double-click path), driven in a
#      pseudo-terminal against that server: trust it, create an account, see
#      the main menu, log out, quit; wine gives the program a console of its
#      own, as Explorer does, so it must then wait for Enter before closing;
#   4. the same with --no-pause (logging in, not registering): no wait;
#   5. no server to reach: the error, then the wait for Enter; and started
#      from cmd (a shell sharing the console): the error, no wait.
#
# Usage: packaging/smoke-wine.sh [EXE]   (default: the one in dist/)
#
# Installs wine64 (and mingw-w64's gcc) with apt-get if they are missing.
# Wine 8 has no bcryptprimitives.dll, whose ProcessPrng Rust's standard
# library calls for random bytes: the test builds a stand-in from
# packaging/wine-processprng-shim.c into its temporary directory, beside a
# copy of the exe. That DLL is for this test only and is never shipped.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMOKE=smoke-wine
# shellcheck source=packaging/smoke-steps.sh
. "$REPO/packaging/smoke-steps.sh"

EXE=${1:-$(ls "$REPO"/dist/chatapp-*-x86_64-windows.exe 2>/dev/null | head -n 1)}
[ -n "$EXE" ] && [ -f "$EXE" ] || fail "no Windows executable: run packaging/build.sh first, or name one"

step "finding wine and mingw-w64"
find_wine() {
    for w in wine64 /usr/lib/wine/wine64 wine; do
        command -v "$w" >/dev/null && { command -v "$w"; return; }
    done
}
WINE=$(find_wine || true)
missing=()
[ -n "$WINE" ] || missing+=(wine64)
command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-x86-64)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]} with apt-get"
    if [ "$(id -u)" = 0 ]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
        fail "installing ${missing[*]} needs root"
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q || fail "apt-get update did not work"
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" ||
        fail "apt-get install ${missing[*]} did not work"
    WINE=$(find_wine || true)
    [ -n "$WINE" ] || fail "wine64 installed, but no wine64 program found"
fi
WINESERVER=$(command -v wineserver || ls /usr/lib/wine/wineserver 2>/dev/null || true)
echo "    $("$WINE" --version 2>/dev/null || echo "wine (version unknown)") at $WINE"

T=$(mktemp -d /tmp/chatapp-smoke-wine.XXXXXX)
SERVER_PID=
cleanup() {
    [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
    [ -z "$WINESERVER" ] || WINEPREFIX=$T/prefix "$WINESERVER" -k 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
export WINEPREFIX=$T/prefix WINEDEBUG=-all WINEARCH=win64
# No Mono or Gecko install prompts; the stand-in DLL from the exe's folder.
export WINEDLLOVERRIDES="mscoree,mshtml=;bcryptprimitives=n"
export LANG=C.UTF-8 TERM=xterm
winpath() { echo "Z:${1//\//\\}"; }

step "building the test-only bcryptprimitives.dll (ProcessPrng) beside a copy of the exe"
mkdir -p "$T/bin"
cp "$EXE" "$T/bin/chatapp.exe"
x86_64-w64-mingw32-gcc -shared -O2 -o "$T/bin/bcryptprimitives.dll" \
    "$REPO/packaging/wine-processprng-shim.c" -ladvapi32 ||
    fail "mingw-w64 could not build the ProcessPrng stand-in"

step "creating a wine prefix"
start=$(date +%s)
timeout 300 "$WINE" wineboot --init </dev/null >"$T/wineboot.log" 2>&1 ||
    { cat "$T/wineboot.log" >&2; fail "wineboot --init did not finish"; }
echo "    $(($(date +%s) - start))s"

step "chatapp.exe --help"
timeout 120 "$WINE" "$T/bin/chatapp.exe" --help </dev/null >"$T/help.txt" 2>&1 ||
    { cat "$T/help.txt" >&2; fail "--help exited non-zero"; }
tr -d '\r' <"$T/help.txt" | sed 's/^/    /'
for word in Usage: serve connect --no-pause; do
    grep -q -- "$word" "$T/help.txt" || fail "--help does not mention $word"
done

step "chatapp.exe serve on 127.0.0.1"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$T/data" "$T/config"
# A low scrypt cost (a hidden test option) keeps registration quick.
"$WINE" "$T/bin/chatapp.exe" serve --listen "127.0.0.1:$PORT" --data-dir "$(winpath "$T/data")" \
    --scrypt-log-n 10 </dev/null >"$T/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do
    grep -q "listening on" "$T/server.log" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$T/server.log" >&2; fail "the server exited"; }
    sleep 0.2
done
grep -q "listening on" "$T/server.log" || { cat "$T/server.log" >&2; fail "the server did not start in 120 s"; }
sed 's/^/    /' "$T/server.log"
[ -n "$(ls -A "$T/data")" ] || fail "the server wrote nothing in its data directory"

step "chatapp.exe with no arguments, in a pseudo-terminal: register, main menu, quit, the pause"
export CHATAPP_SERVER=127.0.0.1:$PORT
export CHATAPP_CONFIG_DIR
CHATAPP_CONFIG_DIR=$(winpath "$T/config")
python3 "$REPO/packaging/pty_client.py" --name smoketest --pause yes --log "$T/client1.log" -- \
    "$WINE" "$T/bin/chatapp.exe" || fail "the client session did not go as expected"
[ -s "$T/config/known_servers" ] || fail "the client did not remember the server's key"

step "chatapp.exe --no-pause: log in, main menu, quit, no pause"
python3 "$REPO/packaging/pty_client.py" --login --name smoketest --pause no --log "$T/client2.log" -- \
    "$WINE" "$T/bin/chatapp.exe" --no-pause || fail "the --no-pause client session did not go as expected"

step "chatapp.exe with no arguments, no server there: the error, then the pause"
CLOSED=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
CHATAPP_SERVER=127.0.0.1:$CLOSED python3 "$REPO/packaging/pty_client.py" --fail-with "could not reach" \
    --name nobody --pause yes --log "$T/client3.log" -- "$WINE" "$T/bin/chatapp.exe" ||
    fail "an error did not wait for Enter"

step "the same from a shell (cmd /c chatapp.exe): the error, no pause"
CHATAPP_SERVER=127.0.0.1:$CLOSED python3 "$REPO/packaging/pty_client.py" --fail-with "could not reach" \
    --name nobody --pause no --log "$T/client4.log" -- "$WINE" cmd /c "$(winpath "$T/bin/chatapp.exe")" ||
    fail "started from cmd, it should not wait for Enter"

kill "$SERVER_PID" 2>/dev/null || true
SERVER_PID=
step "done"
echo "smoke-wine: ${PASSED} passed, 0 failed"
