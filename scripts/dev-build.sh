#!/usr/bin/env bash
# Developer loop: build the extension and the generated protos in build/dev and drop them
# into python/tritonx so that `PYTHONPATH=python pytest` runs against the source tree.
# Serialized with flock so that several shells can call it at once.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
exec 9>build/.dev-build.lock
flock 9
# ccache, when installed, lets several checkouts (git worktrees) share compiled objects.
launcher=()
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(cd .. && pwd)}"
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
if [ ! -f build/dev/build.ninja ]; then
  cmake -S . -B build/dev "${launcher[@]}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=ON \
    -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" ${TRITONX_CMAKE_ARGS:-} >/dev/null
fi
cmake --build build/dev -j 2
# Copy then rename: running servers keep the old file mapped, never a half-written one.
for f in build/dev/csrc/_C*.so; do
  cp "$f" "python/tritonx/.$(basename "$f").tmp" && mv -f "python/tritonx/.$(basename "$f").tmp" "python/tritonx/$(basename "$f")"
done
cp build/dev/csrc/py_proto/*_pb2*.py python/tritonx/_proto/
echo "dev build ready: python/tritonx/_C + python/tritonx/_proto"
