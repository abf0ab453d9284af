#!/bin/sh
# Add this unpacked Parley to your menu and PATH (nothing outside your home folder is touched).
#   ./install.sh             menu entry, icon, and ~/.local/bin/parley
#   ./install.sh --remove    take them away again (this folder, your conversations and settings stay)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
BIN=$HOME/.local/bin
ENTRY=$DATA/applications/parley.desktop
ICON=$DATA/icons/hicolor/scalable/apps/parley.svg

if [ "${1:-}" = "--remove" ]; then
    rm -f "$ENTRY" "$ICON"
    [ -L "$BIN/parley" ] && rm -f "$BIN/parley"
    echo "Parley's menu entry and command are removed; delete $HERE to remove Parley itself."
    exit 0
fi

mkdir -p "$DATA/applications" "$(dirname "$ICON")" "$BIN"
cp "$HERE/share/parley.svg" "$ICON"
sed "s|^Exec=.*|Exec=\"$HERE/parley\"|" "$HERE/share/parley.desktop" > "$ENTRY"
ln -sfn "$HERE/parley" "$BIN/parley"
if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database -q "$DATA/applications" || true
fi
echo "Parley is in your applications menu, and 'parley' runs it from a terminal (from $BIN)."
