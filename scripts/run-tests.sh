#!/usr/bin/env bash
# The whole test suite: C++ core unit tests (GoogleTest via ctest) and the Python tests
# against the installed package (real servers on loopback, real tritonclient).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build/ctest -G Ninja -DBUILD_TESTING=ON -DTRITONX_BUILD_PYTHON=OFF \
  -DTRITONX_ENABLE_GRPC=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/ctest -j "$(nproc)"
ctest --test-dir build/ctest --output-on-failure -j 2
python -m pytest -q "$@"
