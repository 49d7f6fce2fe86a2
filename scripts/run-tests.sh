#!/usr/bin/env bash
# The whole test suite: the style gates (scripts/lint.sh), C++ core unit tests
# (GoogleTest via ctest) and the Python tests against the installed package (real
# servers on loopback, real tritonclient).
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase's seconds, for keeping CI within its time: "run-tests: <phase> <n> s".
phase_start=$SECONDS
phase_done() { echo "run-tests: $1 $((SECONDS - phase_start)) s"; phase_start=$SECONDS; }
if [ -n "${TRITONX_CI_START:-}" ]; then  # set by .ci/run: set-up and install before us
  echo "run-tests: system packages, venv and pip install $(($(date +%s) - TRITONX_CI_START)) s"
fi
# The style gates (ruff, mypy, clang-format; about a minute, mostly mypy on one core)
# run beside the C++ test build; their verdict comes before that build's tests run.
mkdir -p build
./scripts/lint.sh >build/lint.log 2>&1 &
lint_pid=$!
# Every C++ component is built, gRPC included, so that the gRPC frontend's unit tests
# (tests/cpp/test_grpc_*) build and run too. The Python extension comes from
# `pip install`, not from this tree. Built without optimization or debug info
# (build type None): 93 s instead of 193 s (RelWithDebInfo) on two cores, and the
# tests run in seconds either way; the optimized code is the extension pytest
# exercises, and `cmake --preset asan` is the build for hunting memory errors.
cmake -S . -B build/ctest -G Ninja -DBUILD_TESTING=ON -DTRITONX_BUILD_PYTHON=OFF \
  -DTRITONX_ENABLE_GRPC=ON -DCMAKE_BUILD_TYPE=None >/dev/null
cmake --build build/ctest -j "$(nproc)"
phase_done "C++ test build (lint beside it)"
lint_status=0
wait "$lint_pid" || lint_status=$?
cat build/lint.log
if [ "$lint_status" != 0 ]; then
  echo "run-tests: the style gates failed (above)" >&2
  exit "$lint_status"
fi
phase_done "lint (after the build)"
# Fail loudly rather than pass without them if a configure change drops the gRPC tests.
for suite in GrpcCodec GrpcPolicy; do
  if ! ctest --test-dir build/ctest -N -R "^${suite}\." | grep -q "Total Tests: [1-9]"; then
    echo "run-tests: no ${suite} tests in build/ctest (is TRITONX_ENABLE_GRPC on?)" >&2
    exit 1
  fi
done
ctest --test-dir build/ctest --output-on-failure -j 2
phase_done ctest
# The Python tests in parallel (pytest-xdist), a test file per worker at a time so
# that a module's server fixture starts once. Most tests wait on servers and
# subprocesses, so twice as many workers as cores keeps the cores busy: 7 minutes
# instead of 21 in one process on two cores. At most 8: each worker runs servers
# and stubs of its own. TRITONX_TEST_WORKERS=0 runs them in this process
# (arguments after the script's own override these).
workers=$(( $(nproc) * 2 ))
if [ "$workers" -gt 8 ]; then workers=8; fi
workers="${TRITONX_TEST_WORKERS:-$workers}"
python -m pytest -q -n "$workers" --dist loadfile "$@"
phase_done pytest
