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
# pytest keeps the cores only two-thirds busy (its workers mostly wait on servers
# and subprocesses), so the style gates (scripts/lint.sh, about a minute of mypy)
# and the C++ test build (about 190 s of both cores alone) run beside it at low CPU
# priority, on the cycles it leaves idle; their verdicts, and ctest, come after it.
mkdir -p build
nice -n 15 ./scripts/lint.sh >build/lint.log 2>&1 &
lint_pid=$!
# Every C++ component is built, gRPC included, so that the gRPC frontend's unit tests
# (tests/cpp/test_grpc_*) build and run too. The Python extension comes from
# `pip install`, not from this tree. Built without optimization or debug info
# (build type None): 93 s instead of 193 s (RelWithDebInfo) on two cores, and the
# tests run in seconds either way; the optimized code is the extension pytest
# exercises, and `cmake --preset asan` / `--preset tsan` are the builds for hunting
# memory errors / data races.
(
  cmake -S . -B build/ctest -G Ninja -DBUILD_TESTING=ON -DTRITONX_BUILD_PYTHON=OFF \
    -DTRITONX_ENABLE_GRPC=ON -DCMAKE_BUILD_TYPE=None >/dev/null &&
    nice -n 15 cmake --build build/ctest -j "$(nproc)"
) >build/ctest-build.log 2>&1 &
build_pid=$!
# The Python tests in parallel (pytest-xdist), a test file per worker at a time so
# that a module's server fixture starts once. Most tests wait on servers and
# subprocesses, so twice as many workers as cores keeps the cores busy: 7 minutes
# instead of 21 in one process on two cores. At most 8: each worker runs servers
# and stubs of its own. TRITONX_TEST_WORKERS=0 runs them in this process
# (arguments after the script's own override these).
workers=$(( $(nproc) * 2 ))
if [ "$workers" -gt 8 ]; then workers=8; fi
workers="${TRITONX_TEST_WORKERS:-$workers}"
pytest_status=0
# The slowest tests are listed at the end, for keeping the run within CI's time.
python -m pytest -q -n "$workers" --dist loadfile --durations=25 "$@" 2>&1 |
  tee build/pytest.log ||
  pytest_status=$?
phase_done "pytest (lint and the C++ test build beside it)"
lint_status=0
wait "$lint_pid" || lint_status=$?
cat build/lint.log
build_status=0
wait "$build_pid" || build_status=$?
phase_done "lint and C++ test build, after pytest"
if [ "$build_status" != 0 ]; then
  tail -n 60 build/ctest-build.log
  echo "run-tests: the C++ test build failed (above; whole log in build/ctest-build.log)" >&2
fi
ctest_status=0
if [ "$build_status" = 0 ]; then
  # Fail loudly rather than pass without them if a configure change drops the gRPC
  # tests.
  for suite in GrpcCodec GrpcPolicy; do
    if ! ctest --test-dir build/ctest -N -R "^${suite}\." | grep -q "Total Tests: [1-9]"; then
      echo "run-tests: no ${suite} tests in build/ctest (is TRITONX_ENABLE_GRPC on?)" >&2
      ctest_status=1
    fi
  done
  # Its summary only, unless something failed: pytest's report stays in view.
  if ! ctest --test-dir build/ctest --output-on-failure -j 2 >build/ctest.log 2>&1; then
    ctest_status=1
    cat build/ctest.log
  fi
  grep -E "tests passed|tests failed" build/ctest.log || true
  phase_done ctest
fi
if [ "$lint_status" != 0 ]; then
  echo "run-tests: the style gates failed (above)" >&2
fi
if [ "$pytest_status" != 0 ]; then
  sed -n '/short test summary info/,$p' build/pytest.log
  echo "run-tests: pytest failed (exit $pytest_status; whole report in build/pytest.log)" >&2
fi
for status in "$pytest_status" "$lint_status" "$build_status" "$ctest_status"; do
  if [ "$status" != 0 ]; then exit "$status"; fi
done
