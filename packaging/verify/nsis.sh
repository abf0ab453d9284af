#!/usr/bin/env bash
# Compile the Windows installer script and run it under wine64, as a user without admin rights.
#
#   packaging/verify/nsis.sh VERSION
#
# The payload is a stand-in folder shaped like the PyInstaller output (two runnable .exe files
# from wine, an _internal tree with a stand-in model); the real payload is built on Windows.
# Checked: the silent install puts every file in %LOCALAPPDATA%\Programs\Parley, makes the
# Start-menu and (with /DESKTOP) desktop shortcuts and the per-user uninstall registry entry;
# the installed program runs; the silent uninstall removes all of it, and the cache and logs,
# and keeps the user's settings and conversations, nothing else.
# Needs: nsis (makensis) and wine64. The wine prefix is made once in $PARLEY_CACHE_DIR.
set -euo pipefail

VERSION=${1:?usage: nsis.sh VERSION}
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
WORK="$ROOT/build/nsis"
CACHE="${PARLEY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/parley}"
VENV=${PARLEY_VENV:-$ROOT/.venv}
WINE_BIN_DIR=/usr/lib/x86_64-linux-gnu/wine/x86_64-windows

log() { printf '\033[1m[verify nsis]\033[0m %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
command -v makensis >/dev/null || die "makensis is missing (apt-get install nsis)"
# Debian's wine64 package keeps its programs out of PATH.
export PATH="$PATH:/usr/lib/wine"
command -v wine64 >/dev/null || die "wine64 is missing (apt-get install wine64)"

rm -rf "$WORK"
mkdir -p "$WORK/home"
# Wine writes into $HOME (the prefix, desktop links): keep it all in the work folder.
export HOME="$WORK/home" WINEDEBUG=-all WINEPREFIX="$WORK/prefix"
export WINEDLLOVERRIDES="winemenubuilder.exe=d;mscoree=d;mshtml=d"
unset DISPLAY

# ------------------------------------------------------------------------------ stand-in payload

payload="$WORK/payload"
mkdir -p "$payload/_internal/engines/models" "$payload/_internal/engines/whisper/base" \
    "$payload/_internal/resources/icons"
cp "$WINE_BIN_DIR/hostname.exe" "$payload/parley.exe"
cp "$WINE_BIN_DIR/notepad.exe" "$payload/parleyw.exe"
head -c 8000000 /dev/urandom >"$payload/_internal/engines/models/stand-in.gguf"
head -c 300000 /dev/urandom >"$payload/_internal/engines/whisper/base/model.bin"
cp resources/icons/*.svg "$payload/_internal/resources/icons/"
echo "stand-in" >"$payload/_internal/base_library.zip"
PYTHONPATH="$ROOT" "$VENV/bin/python" packaging/make_icons.py "$WORK/parley.ico"

setup="$WORK/Parley-$VERSION-setup.exe"
start=$SECONDS
makensis -V2 "-DPAYLOAD=$payload" "-DVERSION=$VERSION" "-DICON=$WORK/parley.ico" \
    "-DOUTFILE=$setup" packaging/windows/parley.nsi
log "makensis: $((SECONDS - start)) s, $(stat -c %s "$setup") bytes"

# ------------------------------------------------------------------------------ the prefix

base_prefix="$CACHE/wine-prefix"
if [[ ! -f "$base_prefix/.complete" ]]; then
    log "making a wine prefix (once)"
    rm -rf "$base_prefix"
    WINEPREFIX="$base_prefix" wine64 wineboot -i >/dev/null 2>&1
    WINEPREFIX="$base_prefix" wineserver -w
    touch "$base_prefix/.complete"
fi
cp -a "$base_prefix" "$WINEPREFIX"
user_dir=$(find "$WINEPREFIX/drive_c/users" -mindepth 1 -maxdepth 1 -type d ! -name Public | head -n 1)
local_app="$user_dir/AppData/Local"
roaming="$user_dir/AppData/Roaming"
inst="$local_app/Programs/Parley"
start_menu="$roaming/Microsoft/Windows/Start Menu/Programs/Parley.lnk"
desktop=$(find "$user_dir" -maxdepth 1 -iname Desktop | head -n 1)
key='HKCU\Software\Microsoft\Windows\CurrentVersion\Uninstall\Parley'

snapshot() { (cd "$WINEPREFIX/drive_c" && find . -path ./windows -prune -o -print | grep -v '/Temp/' | sort); }
snapshot >"$WORK/before.txt"

# ------------------------------------------------------------------------------ install

start=$SECONDS
wine64 "$setup" /S /DESKTOP
wineserver -w
log "silent install: $((SECONDS - start)) s"
[[ -d "$inst" ]] || die "nothing installed in $inst"
(cd "$payload" && find . -type f | sort) >"$WORK/payload-files.txt"
while read -r f; do
    cmp -s "$payload/$f" "$inst/$f" || die "installed $f differs from the payload"
done <"$WORK/payload-files.txt"
[[ -f "$inst/Uninstall.exe" ]] || die "no uninstaller"
[[ -f "$start_menu" ]] || die "no Start-menu shortcut"
[[ -n "$desktop" && -f "$desktop/Parley.lnk" ]] || die "no desktop shortcut (/DESKTOP)"
reg=$(wine64 reg query "$key" 2>/dev/null | tr -d '\r')
for field in DisplayName DisplayVersion UninstallString QuietUninstallString InstallLocation; do
    grep -q "$field" <<<"$reg" || die "uninstall entry lacks $field"
done
grep -q "DisplayVersion.*$VERSION" <<<"$reg" || die "uninstall entry has the wrong version"
ran=$(wine64 "C:\\users\\$(basename "$user_dir")\\AppData\\Local\\Programs\\Parley\\parley.exe" 2>/dev/null | tr -d '\r')
[[ -n "$ran" ]] || die "the installed program does not run"
log "installed: $(wc -l <"$WORK/payload-files.txt") files, shortcuts, uninstall entry; the program runs"

# ------------------------------------------------------------------------------ the user's data

mkdir -p "$local_app/Parley/conversations" "$local_app/Parley/Cache/models" "$local_app/Parley/Logs"
echo 'language = "en"' >"$local_app/Parley/settings.toml"
echo '{"role": "user", "text": "hello"}' >"$local_app/Parley/conversations/2026-01-01.jsonl"
echo "cache" >"$local_app/Parley/Cache/models/x.gguf"
echo "log" >"$local_app/Parley/Logs/parley.log"

# ------------------------------------------------------------------------------ uninstall

start=$SECONDS
wine64 "$inst/Uninstall.exe" /S
wineserver -w
log "silent uninstall: $((SECONDS - start)) s"
[[ ! -e "$inst" ]] || die "the install folder is still there: $(find "$inst" | head -5)"
[[ ! -e "$start_menu" && ! -e "$desktop/Parley.lnk" ]] || die "a shortcut is left"
if wine64 reg query "$key" >/dev/null 2>&1; then die "the uninstall entry is left"; fi
[[ ! -e "$local_app/Parley/Cache" && ! -e "$local_app/Parley/Logs" ]] || die "cache or logs left"
[[ -f "$local_app/Parley/settings.toml" && -f "$local_app/Parley/conversations/2026-01-01.jsonl" ]] \
    || die "the user's settings or conversations were removed"
snapshot >"$WORK/after.txt"
left=$(comm -13 "$WORK/before.txt" "$WORK/after.txt")
expected=$(printf '%s\n' "./users/$(basename "$user_dir")/AppData/Local/Parley" \
    "./users/$(basename "$user_dir")/AppData/Local/Parley/conversations" \
    "./users/$(basename "$user_dir")/AppData/Local/Parley/conversations/2026-01-01.jsonl" \
    "./users/$(basename "$user_dir")/AppData/Local/Parley/settings.toml" | sort)
extra=$(comm -23 <(echo "$left") <(echo "$expected"))
[[ -z "$extra" ]] || die "left behind besides the user's data: $extra"
log "uninstalled: nothing left but the user's settings and conversations"
log "installer size: $(stat -c %s "$setup") bytes for a $(du -sb "$payload" | cut -f1)-byte stand-in payload"
