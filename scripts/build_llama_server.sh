#!/usr/bin/env bash
# Build llama.cpp's llama-server once per machine and cache it outside the repository.
#
# The source is the llama.cpp tree vendored in the llama-cpp-python sdist (MIT), fetched from PyPI.
# The binary is CPU-only and targets x86-64-v3 (AVX2/FMA/F16C) rather than the build machine, so a
# cached copy keeps working on any machine of that level.
#
#   scripts/build_llama_server.sh          build if needed, print the binary's path
#
# Environment:
#   PARLEY_CACHE_DIR        cache root (default: ${XDG_CACHE_HOME:-~/.cache}/parley)
#   LLAMA_CPP_PY_VERSION    llama-cpp-python sdist to take llama.cpp from (default: 0.3.36)
#   PYTHON                  interpreter whose pip downloads the sdist (default: the repo's .venv)
#   BUILD_JOBS              parallel compile jobs (default: 2)
set -euo pipefail

VERSION="${LLAMA_CPP_PY_VERSION:-0.3.36}"
CACHE_ROOT="${PARLEY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/parley}"
PREFIX="$CACHE_ROOT/llama.cpp/$VERSION"
EXE=""
case "$(uname -s)" in MINGW* | MSYS* | CYGWIN*) EXE=".exe" ;; esac
BIN="$PREFIX/bin/llama-server$EXE"
JOBS="${BUILD_JOBS:-2}"
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf 'build_llama_server: %s\n' "$*" >&2; }

is_usable() { [[ -x "$BIN" ]] && "$BIN" --version >/dev/null 2>&1; }

if is_usable; then
    echo "$BIN"
    exit 0
fi

mkdir -p "$PREFIX"
# One build at a time per cache (a second caller waits, then finds the binary).
exec 9>"$PREFIX/.build.lock"
if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
    log "another build is running; waiting for it"
    flock 9
fi
if is_usable; then
    echo "$BIN"
    exit 0
fi

# ---------------------------------------------------------------------------- build tools
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
if ((${#missing[@]})); then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing build tools: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        log "missing build tools: ${missing[*]}."
        log "install them (Debian/Ubuntu: sudo apt-get install cmake g++ make) and run this again."
        exit 1
    fi
fi

if [[ -n "${PYTHON:-}" ]]; then
    py="$PYTHON"
elif [[ -x "$REPO_DIR/.venv/bin/python" ]]; then
    py="$REPO_DIR/.venv/bin/python"
else
    py="$(command -v python3)"
fi

# ---------------------------------------------------------------------------- source
SRC_ROOT="$PREFIX/src"
SRC="$SRC_ROOT/llama_cpp_python-$VERSION/vendor/llama.cpp"
if [[ ! -f "$SRC/CMakeLists.txt" ]]; then
    log "downloading llama-cpp-python==$VERSION source"
    rm -rf "$SRC_ROOT"
    mkdir -p "$SRC_ROOT"
    "$py" -m pip download --quiet --no-deps --no-binary :all: \
        --dest "$SRC_ROOT" "llama-cpp-python==$VERSION"
    tar -xzf "$SRC_ROOT"/llama_cpp_python-"$VERSION".tar.gz -C "$SRC_ROOT"
    rm -f "$SRC_ROOT"/llama_cpp_python-"$VERSION".tar.gz
fi
[[ -f "$SRC/CMakeLists.txt" ]] || { log "no llama.cpp source in the sdist at $SRC"; exit 1; }

# ---------------------------------------------------------------------------- configure
# x86-64-v3 when the CPU has it (portable cache); otherwise tune for this CPU.
cpu_flags=(-DGGML_NATIVE=ON)
# Where there is no /proc/cpuinfo (macOS) every supported x86-64 machine has that level.
if [[ "$(uname -m)" == x86_64 ]] && { [[ ! -r /proc/cpuinfo ]] || { grep -qw avx2 /proc/cpuinfo \
    && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo; }; }; then
    cpu_flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
        -DGGML_BMI2=ON -DGGML_AVX512=OFF)
else
    log "CPU lacks AVX2/FMA/F16C: building for this CPU only"
fi

BUILD="$PREFIX/build"
log "configuring in $BUILD"
start=$(date +%s)
cmake -S "$SRC" -B "$BUILD" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=ON \
    -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF \
    "${cpu_flags[@]}" >"$PREFIX/cmake-configure.log" 2>&1 \
    || { log "cmake configure failed; see $PREFIX/cmake-configure.log"; exit 1; }

log "compiling llama-server with $JOBS jobs (several minutes on 2 cores)"
cmake --build "$BUILD" --config Release --target llama-server -j "$JOBS" \
    >"$PREFIX/cmake-build.log" 2>&1 \
    || { log "build failed; see $PREFIX/cmake-build.log"; exit 1; }

built="$(find "$BUILD" -type f -name "llama-server$EXE" -perm -u+x | head -n 1)"
[[ -n "$built" ]] || { log "build finished but no llama-server binary was found"; exit 1; }
mkdir -p "$PREFIX/bin"
install -m 0755 "$built" "$BIN.tmp"
mv -f "$BIN.tmp" "$BIN"
is_usable || { log "$BIN does not run (--version failed)"; exit 1; }
# llama.cpp is MIT: keep its licence beside the binary.
cp -f "$SRC/LICENSE" "$PREFIX/LICENSE" 2>/dev/null || true
rm -rf "$BUILD" "$SRC_ROOT"

log "built in $(($(date +%s) - start)) s"
log "llama-server is at $BIN"
echo "$BIN"
