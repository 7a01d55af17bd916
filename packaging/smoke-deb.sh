#!/usr/bin/env bash
# Smoke test of the Debian package, installed into a scratch root (never
# into this system):
#
#   1. its control data and maintainer scripts;
#   2. `dpkg --root` install into a temporary directory (maintainer scripts
#      included: they leave systemd alone when DPKG_ROOT is set);
#   3. the installed binary: --version, --help, `serve` on 127.0.0.1:0 with a
#      temporary data directory, a client from the same binary driven in a
#      pseudo-terminal (register, main menu, quit), SIGTERM ends the server;
#   4. the systemd unit and the desktop entry: in place, and valid
#      (`systemd-analyze verify` and `desktop-file-validate` when available,
#      else a syntax check); the unit's command line is accepted by the binary;
#   5. remove and purge leave nothing behind.
#
# Usage: packaging/smoke-deb.sh [DEB]   (default: the one in dist/)
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMOKE=smoke-deb
# shellcheck source=packaging/smoke-steps.sh
. "$REPO/packaging/smoke-steps.sh"

DEB=${1:-$(ls "$REPO"/dist/chatapp_*_amd64.deb 2>/dev/null | head -n 1)}
[ -n "$DEB" ] && [ -f "$DEB" ] || fail "no .deb: run packaging/build.sh first, or name one"
DEB=$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")

if ! command -v desktop-file-validate >/dev/null && command -v apt-get >/dev/null; then
    step "installing desktop-file-utils (desktop-file-validate)"
    if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
    export DEBIAN_FRONTEND=noninteractive
    { "${sudo[@]}" apt-get install -y -q --no-install-recommends desktop-file-utils ||
        { "${sudo[@]}" apt-get update -q && "${sudo[@]}" apt-get install -y -q --no-install-recommends desktop-file-utils; }; } ||
        echo "    could not install it: the desktop entry gets a syntax check only"
fi

T=$(mktemp -d /tmp/chatapp-smoke-deb.XXXXXX)
SERVER_PID=
cleanup() {
    [ -z "$SERVER_PID" ] || kill -9 "$SERVER_PID" 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
R=$T/root

step "the package's control data ($(basename "$DEB"))"
dpkg-deb --info "$DEB" >"$T/info"
sed -n 's/^ \(Package\|Version\|Architecture\|Depends\|Installed-Size\):/   &/p' "$T/info"
grep -q "^ Package: chatapp$" "$T/info" || fail "the package is not named chatapp"
grep -q "^ Architecture: amd64$" "$T/info" || fail "the package is not for amd64"
! grep -q "^ Depends:" "$T/info" || fail "a static binary should depend on nothing"
dpkg-deb --contents "$DEB" >"$T/contents"
for f in ./usr/bin/chatapp ./usr/lib/systemd/system/chatapp.service \
    ./usr/share/applications/chatapp.desktop ./usr/share/doc/chatapp/copyright; do
    grep -q " $f\$" "$T/contents" || fail "the package lacks $f"
done
grep -q "^-rwxr-xr-x root/root .* ./usr/bin/chatapp$" "$T/contents" ||
    fail "/usr/bin/chatapp is not root-owned mode 755: $(grep ' ./usr/bin/chatapp$' "$T/contents")"
mkdir -p "$T/control"
dpkg-deb --control "$DEB" "$T/control"
for s in postinst prerm postrm; do
    sh -n "$T/control/$s" || fail "$s is not valid sh"
done

step "installing into a scratch root with dpkg --root"
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/var/log"
touch "$R/var/lib/dpkg/status" "$R/var/lib/dpkg/available"
DPKG=(dpkg --root="$R" --log="$R/var/log/dpkg.log" --force-script-chrootless --force-not-root)
"${DPKG[@]}" --install "$DEB" || fail "dpkg --install into $R failed"
"${DPKG[@]}" --status chatapp | grep -q "^Status: install ok installed$" ||
    fail "dpkg does not list chatapp as installed in the scratch root"
BIN=$R/usr/bin/chatapp
[ -x "$BIN" ] || fail "$BIN is missing or not executable"
echo "    file: $(file -b "$BIN")"

step "chatapp --version and --help"
"$BIN" --version | sed 's/^/    /'
"$BIN" --version | grep -q "^chatapp [0-9]" || fail "--version says no version"
"$BIN" --help >"$T/help.txt" || fail "--help exited non-zero"
for word in Usage: serve connect; do
    grep -q -- "$word" "$T/help.txt" || fail "--help does not mention $word"
done

step "chatapp serve on 127.0.0.1:0 with a temporary data directory"
mkdir -p "$T/data" "$T/config"
"$BIN" serve --listen 127.0.0.1:0 --data-dir "$T/data" --scrypt-log-n 10 </dev/null >"$T/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    grep -q "listening on" "$T/server.log" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$T/server.log" >&2; fail "the server exited"; }
    sleep 0.1
done
sed 's/^/    /' "$T/server.log"
ADDR=$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$T/server.log" | head -n 1)
[ -n "$ADDR" ] || fail "the server did not say where it listens within 30 s"
[ -n "$(ls "$T/data")" ] || fail "the server wrote nothing in its data directory"

step "chatapp connect $ADDR in a pseudo-terminal: register, main menu, quit"
CHATAPP_CONFIG_DIR=$T/config python3 "$REPO/packaging/pty_client.py" --name debsmoke --pause no \
    --log "$T/client.log" -- "$BIN" connect "$ADDR" || fail "the client session did not go as expected"

step "SIGTERM stops the server cleanly"
kill -TERM "$SERVER_PID"
status=0
wait "$SERVER_PID" || status=$?
SERVER_PID=
[ "$status" = 0 ] || { cat "$T/server.log" >&2; fail "the server exited with status $status after SIGTERM"; }
echo "    exit status 0"

UNIT=$R/usr/lib/systemd/system/chatapp.service
DESKTOP=$R/usr/share/applications/chatapp.desktop

step "the systemd unit"
grep -q '^ExecStart=/usr/bin/chatapp serve .*--data-dir /var/lib/chatapp' "$UNIT" ||
    fail "ExecStart does not run chatapp serve --data-dir /var/lib/chatapp"
for want in DynamicUser=yes StateDirectory=chatapp NoNewPrivileges=yes ProtectSystem=strict \
    ProtectHome=yes PrivateTmp=yes PrivateDevices=yes CapabilityBoundingSet= \
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" SystemCallFilter=@system-service \
    MemoryDenyWriteExecute=yes WantedBy=multi-user.target; do
    grep -qx -- "$want" "$UNIT" || fail "the unit lacks $want"
done
# The binary accepts the unit's command line (with --fingerprint, so that
# it prints the key and exits instead of serving).
exec_line=$(sed -n 's/^ExecStart=//p' "$UNIT")
read -r -a argv <<<"$exec_line"
argv[0]=$BIN
argv=("${argv[@]//\/var\/lib\/chatapp/$T/unitdata}")
"${argv[@]}" --fingerprint >"$T/fp" || fail "the unit's command line is refused: $exec_line"
grep -q '^SHA256:' "$T/fp" || fail "--fingerprint printed no fingerprint"
echo "    its command line works: $exec_line --fingerprint -> $(cat "$T/fp")"
if command -v systemd-analyze >/dev/null; then
    # The units chatapp.service leans on (sysinit.target, ...) from this
    # machine, outside usr/ so that the purge check below is not confused.
    for d in /lib/systemd/system /usr/lib/systemd/system; do
        [ -f "$d/sysinit.target" ] && { mkdir -p "$R/lib/systemd" && cp -a "$d" "$R/lib/systemd/"; break; }
    done
    systemd-analyze verify --man=no --root="$R" /usr/lib/systemd/system/chatapp.service >"$T/verify" 2>&1 ||
        { cat "$T/verify" >&2; fail "systemd-analyze verify found problems"; }
    # Messages about the machine's own units are not ours to judge.
    if grep -i "chatapp" "$T/verify"; then fail "systemd-analyze verify complained about chatapp.service"; fi
    echo "    systemd-analyze verify: no complaint"
    if systemd-analyze security --offline=true --root="$R" chatapp.service >"$T/security" 2>&1; then
        echo "    systemd-analyze security: $(grep -i "overall exposure" "$T/security" | sed 's/^[^A-Za-z]*//')"
    fi
else
    python3 - "$UNIT" <<'EOF' || fail "the unit's syntax is wrong"
import re, sys
section = None
for n, line in enumerate(open(sys.argv[1]), 1):
    line = line.strip()
    if not line or line[0] in "#;":
        continue
    if re.fullmatch(r"\[[A-Za-z]+\]", line):
        section = line
    elif section and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*=.*", line):
        pass
    else:
        sys.exit(f"line {n}: {line}")
EOF
    echo "    syntax checked (no systemd-analyze here)"
fi

step "the desktop entry"
for want in Type=Application "Exec=chatapp connect" Terminal=true; do
    grep -qx -- "$want" "$DESKTOP" || fail "the desktop entry lacks $want"
done
if command -v desktop-file-validate >/dev/null; then
    desktop-file-validate "$DESKTOP" || fail "desktop-file-validate found problems"
    echo "    desktop-file-validate: no complaint"
else
    head -n 1 "$DESKTOP" | grep -qx '\[Desktop Entry\]' || fail "it does not start with [Desktop Entry]"
    echo "    syntax checked (no desktop-file-validate here)"
fi

step "remove and purge"
"${DPKG[@]}" --remove chatapp || fail "dpkg --remove failed"
[ ! -e "$BIN" ] && [ ! -e "$UNIT" ] && [ ! -e "$DESKTOP" ] || fail "files are left after remove"
"${DPKG[@]}" --purge chatapp || fail "dpkg --purge failed"
left=$(cd "$R" && find usr -type f 2>/dev/null || true)
[ -z "$left" ] || fail "files are left after purge: $left"

step "done"
echo "smoke-deb: ${PASSED} passed, 0 failed"
