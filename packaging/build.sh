#!/usr/bin/env bash
# Builds chatapp's release artifacts on a Debian or Ubuntu x86_64 machine:
#
#   dist/chatapp-VERSION-x86_64-linux            static Linux binary (musl)
#   dist/chatapp-VERSION-x86_64-windows.exe      Windows executable (mingw-w64)
#   dist/chatapp_VERSION-1_amd64.deb             Debian package: the static
#                                                binary, a systemd unit, a
#                                                desktop entry
#   dist/SHA256SUMS                              their checksums
#
# It installs what it lacks (rustup targets; apt packages musl-tools,
# gcc-mingw-w64-x86-64, file, as root or through sudo), checks that the
# Linux binary is static and that the Windows one imports only system DLLs,
# and ends with each artifact's size and build time. When a step fails it
# says which, and exits non-zero.
#
# Usage: packaging/build.sh
# Environment:
#   DIST=DIR                output directory (default: dist/ in the repository)
#   CARGO_TARGET_DIR=DIR    cargo's build directory (default: target/)
#   DEB_MAINTAINER=TEXT     the .deb's Maintainer field
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
DIST=${DIST:-$REPO/dist}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
export CARGO_TARGET_DIR=$TARGET_DIR
MAINTAINER=${DEB_MAINTAINER:-chatapp developers <chatapp@localhost>}

LINUX_TARGET=x86_64-unknown-linux-musl
WINDOWS_TARGET=x86_64-pc-windows-gnu

STEP="starting"
trap 'echo "packaging/build.sh: FAILED while ${STEP} (the output above says why)" >&2' ERR
step() {
    STEP=$1
    echo "==> $1"
}
fail() {
    echo "packaging/build.sh: FAILED while ${STEP}: $1" >&2
    exit 1
}

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$VERSION" ] || fail "no version = \"...\" line in Cargo.toml"
LINUX_ART=chatapp-$VERSION-x86_64-linux
WINDOWS_ART=chatapp-$VERSION-x86_64-windows.exe
DEB_ART=chatapp_$VERSION-1_amd64.deb

# ---- what the build needs ----

step "checking the tools"
command -v cargo >/dev/null || fail "cargo is not installed (install Rust with rustup)"
command -v rustup >/dev/null || fail "rustup is not installed: the cross targets come from it"
[ "$(uname -m)" = x86_64 ] || fail "this script builds on x86_64 only, not $(uname -m)"

step "adding the Rust targets $LINUX_TARGET and $WINDOWS_TARGET"
installed=$(rustup target list --installed)
for t in "$LINUX_TARGET" "$WINDOWS_TARGET"; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t" ||
        fail "rustup target add $t did not work"
done

missing=()
command -v musl-gcc >/dev/null || missing+=(musl-tools)
command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-x86-64)
command -v x86_64-w64-mingw32-objdump >/dev/null || missing+=(binutils-mingw-w64-x86-64)
command -v file >/dev/null || missing+=(file)
command -v dpkg-deb >/dev/null || missing+=(dpkg)
if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]} with apt-get"
    command -v apt-get >/dev/null ||
        fail "no apt-get here: install ${missing[*]} (or your system's equivalents) by hand"
    if [ "$(id -u)" = 0 ]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
        fail "installing ${missing[*]} needs root: run as root, or install them first"
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q ||
        fail "apt-get update did not work (network? sources?)"
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" ||
        fail "apt-get install ${missing[*]} did not work"
fi

rm -rf "$DIST"
mkdir -p "$DIST"
declare -A SECONDS_FOR

# ---- the static Linux binary ----

step "building the static Linux binary ($LINUX_TARGET)"
start=$(date +%s)
CC_x86_64_unknown_linux_musl=musl-gcc \
    cargo build --release --locked --target "$LINUX_TARGET" ||
    fail "cargo build --target $LINUX_TARGET failed"
SECONDS_FOR[$LINUX_ART]=$(($(date +%s) - start))
cp "$TARGET_DIR/$LINUX_TARGET/release/chatapp" "$DIST/$LINUX_ART"

step "checking that the Linux binary is static"
kind=$(file -b "$DIST/$LINUX_ART")
echo "    file: $kind"
case $kind in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) fail "$LINUX_ART is not statically linked: $kind" ;;
esac
if deps=$(ldd "$DIST/$LINUX_ART" 2>&1) && ! grep -q "statically linked" <<<"$deps"; then
    fail "ldd lists shared libraries for $LINUX_ART: $deps"
fi
echo "    ldd: $(head -n 1 <<<"$deps" | sed 's/^[[:space:]]*//')"
"$DIST/$LINUX_ART" --version >/dev/null || fail "$LINUX_ART --version does not run"

# musl's own allocator halves the server's speed; this build must give
# SQLite mimalloc (see src/store/sqlite/malloc.rs). The test runs alone, as it must.
step "checking that SQLite allocates from mimalloc in the musl build"
CC_x86_64_unknown_linux_musl=musl-gcc \
    cargo test --release --locked --target "$LINUX_TARGET" --lib -- --exact \
        store::sqlite::malloc::tests::sqlite_allocates_from_mimalloc ||
    fail "the musl build's SQLite does not allocate from mimalloc"

# ---- the Windows executable ----

step "building the Windows executable ($WINDOWS_TARGET)"
start=$(date +%s)
# crt-static links libgcc and winpthreads into the exe instead of importing
# their DLLs, which no Windows machine has.
CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
    CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
    CC_x86_64_pc_windows_gnu=x86_64-w64-mingw32-gcc \
    AR_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ar \
    cargo build --release --locked --target "$WINDOWS_TARGET" ||
    fail "cargo build --target $WINDOWS_TARGET failed"
SECONDS_FOR[$WINDOWS_ART]=$(($(date +%s) - start))
cp "$TARGET_DIR/$WINDOWS_TARGET/release/chatapp.exe" "$DIST/$WINDOWS_ART"

step "checking that the Windows executable imports only system DLLs"
echo "    file: $(file -b "$DIST/$WINDOWS_ART")"
dlls=$(x86_64-w64-mingw32-objdump -p "$DIST/$WINDOWS_ART" | sed -n 's/^[[:space:]]*DLL Name: //p' | sort -fu)
[ -n "$dlls" ] || fail "objdump found no imported DLL in $WINDOWS_ART"
echo "    imports: ${dlls//$'\n'/ }"
foreign=()
for dll in $dlls; do
    case ${dll,,} in
        kernel32.dll | ntdll.dll | bcryptprimitives.dll | bcrypt.dll | ws2_32.dll | \
            advapi32.dll | userenv.dll | msvcrt.dll | ucrtbase.dll | user32.dll | \
            shell32.dll | ole32.dll | oleaut32.dll | combase.dll | secur32.dll | crypt32.dll | \
            iphlpapi.dll | api-ms-win-*.dll) ;;
        *) foreign+=("$dll") ;;
    esac
done
[ ${#foreign[@]} -eq 0 ] ||
    fail "$WINDOWS_ART imports DLLs a Windows machine does not have: ${foreign[*]}"

# ---- the Debian package ----

step "assembling the Debian package"
start=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
install -Dm755 "$DIST/$LINUX_ART" "$root/usr/bin/chatapp"
install -Dm644 packaging/chatapp.service "$root/usr/lib/systemd/system/chatapp.service"
install -Dm644 packaging/chatapp.desktop "$root/usr/share/applications/chatapp.desktop"
install -Dm644 README.md "$root/usr/share/doc/chatapp/README.md"
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: chatapp"
    echo
    echo "Files: *"
    echo "License: $(sed -n 's/^license = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
    echo
    echo "Comment: the notices of the code built into the binary follow."
    sed 's/^$/./; s/^/ /' NOTICE
} >"$work/copyright"
install -Dm644 "$work/copyright" "$root/usr/share/doc/chatapp/copyright"
mkdir -p "$root/DEBIAN"
install -m755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
description=$(sed -n 's/^description = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
cat >"$root/DEBIAN/control" <<EOF
Package: chatapp
Version: $VERSION-1
Architecture: amd64
Maintainer: $MAINTAINER
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Section: net
Priority: optional
Description: terminal chat server and client
 $description.
 .
 One static binary: \`chatapp serve\` runs the server (a systemd unit,
 chatapp.service, runs it as a service, not enabled on install) and
 \`chatapp connect\` the client (a desktop entry opens it in a terminal).
EOF
(cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
dpkg-deb --root-owner-group -Zxz --build "$root" "$DIST/$DEB_ART" >/dev/null ||
    fail "dpkg-deb --build failed"
SECONDS_FOR[$DEB_ART]=$(($(date +%s) - start))
dpkg-deb --info "$DIST/$DEB_ART" | sed -n 's/^ *\(Package\|Version\|Architecture\|Installed-Size\):/    &/p'

# ---- checksums and summary ----

step "writing SHA256SUMS"
(cd "$DIST" && sha256sum "$LINUX_ART" "$WINDOWS_ART" "$DEB_ART" >SHA256SUMS)

STEP="printing the summary"
echo
echo "Artifacts in $DIST (build time: the cargo build, or assembling the package):"
for a in "$LINUX_ART" "$WINDOWS_ART" "$DEB_ART"; do
    size=$(stat -c %s "$DIST/$a")
    printf '  %-42s %10s bytes (%s)  %4ss\n' "$a" "$size" "$(numfmt --to=iec-i --suffix=B "$size")" "${SECONDS_FOR[$a]}"
done
printf '  %-42s\n' SHA256SUMS
echo
sed 's/^/  /' "$DIST/SHA256SUMS"
