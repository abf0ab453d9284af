#!/usr/bin/env bash
# Install the Linux packages on a clean Debian and use them as a person would (needs root).
#
#   packaging/verify/chroot.sh PARLEY.deb PARLEY.tar.gz
#
# A minimal Debian bookworm (debootstrap --variant=minbase: no Python, no compiler, no X) is
# made once and cached in $PARLEY_CACHE_DIR/chroot; every run starts from a fresh copy of it.
#   .deb     installed with apt, which brings in only the package's declared dependencies;
#   .tar.gz  unpacked in a user's home after only those same dependencies are installed.
# Each one then, as an ordinary user: `parley --version`; `parley talk` with the local engines on
# the bundled spoken question (the answer is transcribed here with Whisper); and the window on
# an Xvfb display run by this machine, timed from launch to "ready to talk", with its memory
# measured and a screenshot taken. Everything lands in build/verify/.
#
# Environment: PARLEY_CACHE_DIR, PARLEY_DEBIAN_MIRROR (default http://deb.debian.org/debian),
# PARLEY_VENV (the Python that transcribes the answers; default .venv), DISPLAY_NUMBER (default 87).
set -euo pipefail

DEB=$(realpath "$1")
TARBALL=$(realpath "$2")
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
OUT="$ROOT/build/verify"
CACHE="${PARLEY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/parley}/chroot"
BASE="$CACHE/bookworm-minbase"
MIRROR=${PARLEY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
DISPLAY_NUMBER=${DISPLAY_NUMBER:-87}
VENV=${PARLEY_VENV:-$ROOT/.venv}
USER_NAME=alice
SAMPLE=resources/samples/question.wav

log() { printf '\033[1m[verify]\033[0m %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

[[ "$(id -u)" == 0 ]] || die "run as root (debootstrap, chroot and mounts need it)"
for tool in debootstrap Xvfb import xwininfo; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install debootstrap xvfb imagemagick x11-utils)"
done
mkdir -p "$OUT" "$CACHE"

# ------------------------------------------------------------------------------ the clean system

if [[ ! -f "$BASE/.complete" ]]; then
    log "making a minimal Debian bookworm in $BASE (once)"
    rm -rf "$BASE"
    start=$SECONDS
    debootstrap --variant=minbase bookworm "$BASE" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || die "debootstrap failed; see $CACHE/debootstrap.log"
    touch "$BASE/.complete"
    log "debootstrap took $((SECONDS - start)) s ($(du -sh "$BASE" | cut -f1))"
fi

MOUNTED=()
JAIL=""
jail_pids() {  # processes running inside the jail (their root directory is the jail)
    local p
    for p in /proc/[0-9]*; do
        [[ "$(readlink "$p/root" 2>/dev/null)" == "$JAIL" ]] && echo "${p#/proc/}"
    done
    return 0
}
XVFB_PID=""
remove_jail() {
    if [[ -n "$JAIL" ]]; then
        # Anything still running inside the jail goes first, then its mounts, then the jail.
        for pid in $(jail_pids); do kill -9 "$pid" 2>/dev/null || true; done
        local i
        for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTED[$i]}" 2>/dev/null || true; done
        MOUNTED=()
        rm -rf --one-file-system "$JAIL"
        JAIL=""
    fi
}
cleanup() {
    remove_jail
    if [[ -n "$XVFB_PID" ]]; then kill "$XVFB_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

fresh_jail() {  # fresh_jail NAME: a new copy of the base system, with /proc, /dev and DNS
    remove_jail
    JAIL="$ROOT/build/jail-$1"
    rm -rf --one-file-system "$JAIL"
    cp -a "$BASE" "$JAIL"
    mount -t proc proc "$JAIL/proc" && MOUNTED+=("$JAIL/proc")
    mount --rbind /dev "$JAIL/dev" && mount --make-rslave "$JAIL/dev" && MOUNTED+=("$JAIL/dev")
    mount -t tmpfs tmpfs "$JAIL/tmp" && MOUNTED+=("$JAIL/tmp")
    # The display: this machine's Xvfb socket, as a desktop session would provide it.
    mkdir -p "$JAIL/tmp/.X11-unix"
    mount --bind /tmp/.X11-unix "$JAIL/tmp/.X11-unix" && MOUNTED+=("$JAIL/tmp/.X11-unix")
    cp /etc/resolv.conf "$JAIL/etc/resolv.conf"
    in_jail useradd -m -s /bin/sh "$USER_NAME"
    for forbidden in python3 python gcc cc; do
        in_jail sh -c "! command -v $forbidden" >/dev/null || die "the clean system has $forbidden"
    done
}

in_jail() { chroot "$JAIL" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

as_user() {  # as_user CMD...: run as the ordinary user, with a desktop-like environment
    chroot --userspec="$USER_NAME:$USER_NAME" "$JAIL" /usr/bin/env -i \
        HOME="/home/$USER_NAME" USER="$USER_NAME" LANG=C.UTF-8 \
        PATH="/home/$USER_NAME/.local/bin:/usr/bin:/bin" XDG_RUNTIME_DIR=/tmp/runtime \
        DISPLAY=":$DISPLAY_NUMBER" "$@"
}

apt_in_jail() {
    in_jail apt-get -qq update >/dev/null
    DEBIAN_FRONTEND=noninteractive in_jail apt-get install -y -qq --no-install-recommends "$@" \
        >"$OUT/apt-$NAME.log" 2>&1 || { tail -20 "$OUT/apt-$NAME.log" >&2; die "apt-get install $*"; }
}

# ------------------------------------------------------------------------------ measurements

tree_rss_mb() {  # total resident memory of a process and all its descendants, in MB
    local pids=("$1") i=0 total=0 kid rss
    while ((i < ${#pids[@]})); do
        for kid in $(pgrep -P "${pids[$i]}" 2>/dev/null || true); do pids+=("$kid"); done
        i=$((i + 1))
    done
    for kid in "${pids[@]}"; do  # a zombie has no VmRSS line
        rss=$(awk '/^VmRSS/ {print $2}' "/proc/$kid/status" 2>/dev/null || true)
        total=$((total + ${rss:-0}))
    done
    echo $((total / 1024))
}

transcribe() {  # transcribe WAV: what the answer says, by Whisper base on this machine
    PYTHONPATH="$ROOT" HF_HUB_OFFLINE=1 "$VENV/bin/python" - "$1" <<'EOF'
import sys
import soundfile
import soxr
from faster_whisper import WhisperModel
from assistant.engines.local.whisper_models import model_dir
audio, rate = soundfile.read(sys.argv[1], dtype="float32", always_2d=True)
audio = soxr.resample(audio.mean(axis=1), rate, 16000)
segments, _ = WhisperModel(str(model_dir("base")), device="cpu", compute_type="int8").transcribe(
    audio, language="en", beam_size=1
)
print(" ".join(s.text.strip() for s in segments))
EOF
}

check_talk() {  # check_talk PARLEY_COMMAND SAMPLE_IN_JAIL
    local parley=$1 sample=$2 start peak=0 rss pid status
    log "$NAME: $(as_user "$parley" --version)"
    start=$(date +%s%N)
    as_user "$parley" talk --input "$sample" --output "/home/$USER_NAME/answer.wav" \
        --timeline "/home/$USER_NAME/timeline.json" >"$OUT/talk-$NAME.log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        rss=$(tree_rss_mb "$pid")
        ((rss > peak)) && peak=$rss
        sleep 0.5
    done
    wait "$pid" && status=0 || status=$?
    cat "$OUT/talk-$NAME.log" >&2
    ((status == 0)) || die "$NAME: parley talk exited with $status"
    # A library the bundle lacks shows as a feature it says it cannot offer (echo cancellation).
    ! grep -qi "not available on this computer" "$OUT/talk-$NAME.log" \
        || die "$NAME: the installed app lacks a library it needs (see its output above)"
    cp "$JAIL/home/$USER_NAME/answer.wav" "$OUT/answer-$NAME.wav"
    cp "$JAIL/home/$USER_NAME/timeline.json" "$OUT/timeline-$NAME.json"
    RESULTS+=("$NAME talk: $((($(date +%s%N) - start) / 1000000)) ms, peak RSS ${peak} MB")
    local heard
    heard=$(transcribe "$OUT/answer-$NAME.wav")
    log "$NAME: the answer, transcribed: $heard"
    RESULTS+=("$NAME answer: $heard")
    [[ -n "$heard" ]] || die "$NAME: the answer is silent"
}

check_window() {  # check_window PARLEY_COMMAND: open the window, wait for "ready to talk"
    local parley=$1 logfile pid start ready="" rss i
    logfile="$JAIL/home/$USER_NAME/.local/state/Parley/log/parley.log"
    as_user mkdir -p -m 0700 /tmp/runtime
    start=$SECONDS
    as_user "$parley" >"$OUT/window-$NAME.log" 2>&1 &
    pid=$!
    for ((i = 0; i < 20; i++)); do  # the window as it loads its engines
        if DISPLAY=":$DISPLAY_NUMBER" xwininfo -root -children 2>/dev/null | grep -i parley >/dev/null
        then
            break
        fi
        sleep 0.5
    done
    sleep 1
    import -display ":$DISPLAY_NUMBER" -window root "$OUT/window-$NAME-loading.png" || true
    for ((i = 0; i < 600; i++)); do
        if grep -q "ready to talk" "$logfile" 2>/dev/null; then ready=yes; break; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    [[ -n "$ready" ]] || { cat "$OUT/window-$NAME.log" >&2; die "$NAME: the window never became ready"; }
    rss=$(tree_rss_mb "$pid")
    sleep 2  # let the last progress repaint land
    import -display ":$DISPLAY_NUMBER" -window root "$OUT/window-$NAME.png"
    RESULTS+=("$NAME window: $(grep -o 'ready to talk, [0-9.]* s after launch' "$logfile" | tail -1)" \
        "$NAME window: RSS when ready ${rss} MB (app + llama-server)")
    # What a logout does: SIGTERM to the app (the child of the background subshell).
    pkill -TERM -P "$pid"
    wait "$pid" 2>/dev/null || true
    sleep 1
    local left
    left=$(jail_pids)
    [[ -z "$left" ]] || die "$NAME: processes outlived the app: $(ps -o comm= -p "${left//$'\n'/,}")"
    log "$NAME: window ready after $((SECONDS - start)) s; screenshot $OUT/window-$NAME.png"
}

RESULTS=()
log "starting Xvfb :$DISPLAY_NUMBER"
Xvfb ":$DISPLAY_NUMBER" -screen 0 1280x800x24 -nolisten tcp -ac >"$OUT/xvfb.log" 2>&1 &
XVFB_PID=$!
sleep 1

# ------------------------------------------------------------------------------ the .deb

NAME=deb
fresh_jail deb
cp "$DEB" "$JAIL/tmp/"
start=$SECONDS
apt_in_jail "/tmp/$(basename "$DEB")"
RESULTS+=("deb install (apt, with its dependencies): $((SECONDS - start)) s" \
    "deb installed size: $(du -sh "$JAIL/opt/parley" | cut -f1) in /opt/parley" \
    "deb pulled in: $(grep -c '^Setting up' "$OUT/apt-deb.log" || true) packages")
[[ -L "$JAIL/usr/bin/parley" && -f "$JAIL/usr/share/applications/parley.desktop" ]] \
    || die "deb: /usr/bin/parley or the desktop entry is missing"
[[ -f "$JAIL/usr/share/icons/hicolor/scalable/apps/parley.svg" ]] || die "deb: icon missing"
check_talk parley "/opt/parley/_internal/$SAMPLE"
check_window parley
in_jail dpkg --purge parley >/dev/null
[[ ! -e "$JAIL/opt/parley" && ! -e "$JAIL/usr/bin/parley" ]] || die "deb: files left after purge"
log "deb: removed cleanly"

# ------------------------------------------------------------------------------ the .tar.gz

NAME=tarball
fresh_jail tarball
# The first of each set of alternatives, without versions.
read -ra depends <<<"$(dpkg-deb -f "$DEB" Depends | sed -e 's/([^)]*)//g' -e 's/|[^,]*//g' -e 's/,/ /g')"
apt_in_jail "${depends[@]}"
cp "$TARBALL" "$JAIL/home/$USER_NAME/"
chown "$(stat -c %u:%g "$JAIL/home/$USER_NAME")" "$JAIL/home/$USER_NAME/$(basename "$TARBALL")"
folder=$(basename "$TARBALL" .tar.gz)
start=$SECONDS
as_user sh -c "cd && tar -xzf $(basename "$TARBALL") && ./$folder/install.sh"
RESULTS+=("tarball unpack + install.sh: $((SECONDS - start)) s" \
    "tarball installed size: $(du -sh "$JAIL/home/$USER_NAME/$folder" | cut -f1)")
[[ -f "$JAIL/home/$USER_NAME/.local/share/applications/parley.desktop" ]] || die "tarball: no menu entry"
check_talk "/home/$USER_NAME/.local/bin/parley" "/home/$USER_NAME/$folder/_internal/$SAMPLE"
check_window "/home/$USER_NAME/.local/bin/parley"

cleanup
printf '%s\n' "${RESULTS[@]}" | tee "$OUT/results.txt" >&2
log "the Linux packages work on a clean Debian"
