#!/usr/bin/env bash
# The GPU check of issue 10, in one run on a GPU machine (well within 7 minutes on 16
# cores): preflight (driver, python, versions, which packages import), carried wheels
# into /tmp/site, a CUDA build of the core and the extension (gRPC and the native
# HTTP server off: such machines have no -dev packages), the C++ tests (the CUDA ones
# run there: pinned arena, streams), the gpu-marked pytest tests end to end through
# tritonclient, and a short benchmarks/bench_gpu.py. Everything is teed into
# $OUT/gpu-check.log. On a machine without a GPU it runs the same steps and the GPU
# parts skip, so the script can be rehearsed anywhere.
#
# Carried extras (all optional; see docs/gpu.md): .whl/*.whl (tritonclient and its
# dependencies, httptools), .whl/extra/googletest (source, when GTest is not
# installed), .whl/extra/python3.12-include (when Python.h is missing),
# .whl/extra/proto/*_pb2*.py (when grpc_tools is missing).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/build/gpu-check-out}
mkdir -p "$OUT"
LOG="$OUT/gpu-check.log"
PY=${PYTHON:-python3}
JOBS=${JOBS:-$(nproc)}
BUILD=${BUILD_DIR:-build/gpu}
STATUS=0
section() { echo; echo "=== $* [$(date +%T), ${SECONDS}s]"; }
fail() { echo "FAILED: $*"; STATUS=1; }

checks() {
section "preflight"
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv \
  || echo "nvidia-smi: no GPU"
echo "python: $(command -v "$PY") $("$PY" --version 2>&1); cores: $(nproc)"
cmake --version | head -1; ninja --version; command -v nvcc && nvcc --version | tail -1
"$PY" - <<'PYEOF'
import importlib
for name in ["numpy", "torch", "onnx", "onnxruntime", "grpc", "google.protobuf",
             "grpc_tools", "pybind11", "prometheus_client", "pynvml", "psutil",
             "uvloop", "httptools", "tritonclient", "geventhttpclient", "gevent",
             "rapidjson", "pytest", "pytest_timeout", "hypothesis", "cupy",
             "tensorrt"]:
    try:
        mod = importlib.import_module(name)
        print(f"  {name:18} {getattr(mod, '__version__', 'ok')}")
    except Exception as exc:
        print(f"  {name:18} MISSING ({type(exc).__name__}: {exc})")
try:
    import torch
    print("  torch.cuda:", torch.cuda.is_available(), torch.version.cuda,
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
    import onnxruntime as ort
    print("  onnxruntime providers:", ort.get_available_providers())
except Exception as exc:
    print("  torch/onnxruntime probe failed:", exc)
PYEOF

section "carried wheels"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || fail "wheel install"
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  "$PY" -c "import tritonclient.http, httptools; print('tritonclient + httptools import')" \
    || fail "carried wheels do not import"
else
  echo "no .whl/*.whl: using what is installed"
fi

section "configure"
extra=()
if ! command -v nvcc >/dev/null; then
  for dir in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
    [ -x "$dir/nvcc" ] && { export PATH="$dir:$PATH"; break; }
  done
fi
command -v nvcc >/dev/null && extra+=(-DCMAKE_CUDA_COMPILER="$(command -v nvcc)")
include=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
if [ ! -f "$include/Python.h" ] && [ -d .whl/extra/python3.12-include ]; then
  echo "no Python.h in $include: using the carried headers"
  extra+=(-DPython_INCLUDE_DIR="$PWD/.whl/extra/python3.12-include")
fi
if [ -d .whl/extra/googletest ] && ! ls /usr/lib/*/cmake/GTest /usr/lib/cmake/GTest \
    /usr/local/lib/cmake/GTest >/dev/null 2>&1; then
  echo "building the carried googletest"
  cmake -S .whl/extra/googletest -B /tmp/gtest-build -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX=/tmp/gtest -DBUILD_GMOCK=OFF >/dev/null \
    && cmake --build /tmp/gtest-build -j"$JOBS" >/dev/null \
    && cmake --install /tmp/gtest-build >/dev/null || fail "googletest build"
  extra+=(-DGTest_ROOT=/tmp/gtest)
fi
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(cd .. && pwd)}"
  extra+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} -DBUILD_TESTING=ON \
  -DTRITONX_ENABLE_GRPC=${TRITONX_ENABLE_GRPC:-OFF} \
  -DTRITONX_ENABLE_HTTP=${TRITONX_ENABLE_HTTP:-OFF} -DTRITONX_ENABLE_CUDA=ON \
  -DPython_EXECUTABLE="$(command -v "$PY")" \
  -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" "${extra[@]}" \
  | grep -E "tritonx|Error|error" || true
[ -f "$BUILD/build.ninja" ] || { fail "configure"; return 1; }

section "build (-j$JOBS)"
# The extension and every C++ test executable this configuration defines (so that
# ctest finds none unbuilt), not `all`: that also generates the protos, which
# needs grpc_tools (absent there; the carried ones are used below).
targets=(_C)
for t in $(grep -ohE 'test_[a-z_]+' tests/cpp/CMakeLists.txt | sort -u); do
  ninja -C "$BUILD" -t query "$t" >/dev/null 2>&1 && targets+=("$t")
done
echo "targets: ${targets[*]}"
cmake --build "$BUILD" -j"$JOBS" --target "${targets[@]}" || { fail "build"; return 1; }
for f in "$BUILD"/csrc/_C*.so; do cp "$f" python/tritonx/; done
if "$PY" -c "import grpc_tools" 2>/dev/null; then
  "$PY" scripts/gen_protos.py protos python/tritonx/_proto || fail "protos"
elif compgen -G ".whl/extra/proto/*_pb2*.py" >/dev/null; then
  cp .whl/extra/proto/*_pb2*.py python/tritonx/_proto/
  if ! PYTHONPATH=python:${PYTHONPATH:-} "$PY" -c "import tritonx._proto.model_config_pb2" \
      2>/dev/null; then
    echo "carried protos are newer than this protobuf: dropping their version check"
    sed -i -e '/ValidateProtobufRuntimeVersion(/,/)/d' -e '/import runtime_version/d' \
      python/tritonx/_proto/*_pb2*.py
  fi
fi
export PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH}
"$PY" -c "from tritonx import _native as n; print('core: cuda_built', n.CUDA_BUILT, \
'usable', n.probe_cuda(), 'devices', n.cuda_device_ids(), 'grpc', n.GRPC_BUILT)" \
  || fail "extension import"

section "C++ tests"
ctest --test-dir "$BUILD" -j"$JOBS" --timeout 120 --output-on-failure \
  > "$OUT/ctest.log" 2>&1 || fail "C++ tests"
tail -n 40 "$OUT/ctest.log"
echo "--- the CUDA ones in full:"
"$BUILD"/tests/cpp/test_cuda_runtime || fail "test_cuda_runtime"
"$BUILD"/tests/cpp/test_tensor_memory || fail "test_tensor_memory"

section "pytest (every gpu-marked test under tests/, then the GPU-side neighbours)"
export TRITONX_TEST_SOURCE_TREE=1 PYTHONUNBUFFERED=1
# Any test file that marks tests `gpu` (tests/gpu marks all of its own).
mapfile -t marked < <(grep -rlE "mark\.gpu\b" tests --include='test_*.py' | sort)
timeout 200 "$PY" -m pytest -p no:cacheprovider -q -rs --timeout 200 -m gpu \
  tests/gpu "${marked[@]}" 2>&1 | tee "$OUT/pytest-gpu.log" || fail "pytest (gpu)"
timeout 120 "$PY" -m pytest -p no:cacheprovider -q -rs --timeout 120 \
  tests/core/test_dlpack_outputs.py tests/core/test_dlpack_tensors.py \
  tests/test_gpu_absent.py \
  "tests/backends/test_onnxruntime_backend.py::test_gpu_instance_providers_follow_the_config" \
  2>&1 | tee "$OUT/pytest-more.log" || fail "pytest (neighbours)"

section "bench_gpu.py (short; each row in a process of its own)"
# shellcheck disable=SC2086
timeout ${BENCH_TIMEOUT:-150} "$PY" benchmarks/bench_gpu.py --seconds ${BENCH_SECONDS:-2} \
  --repeats 2 --instances 1 2 ${BENCH_ARGS:---extra-rows 1:2:1} 2>&1 | tee "$OUT/bench.log" \
  || fail "bench_gpu"

section "summary"
grep -m1 "^core:" "$LOG" || true
grep -E "tests passed|tests failed" "$OUT/ctest.log" || echo "ctest: no summary"
for f in "$OUT"/pytest-*.log; do echo "$(basename "$f" .log): $(tail -n 1 "$f")"; done
grep -E "^\| |^  torch loop|FAILED" "$OUT/bench.log" || echo "bench: no rows"
echo "done: $([ $STATUS = 0 ] && echo ALL OK || echo FAILURES) in ${SECONDS}s"
return $STATUS
}

# A pipeline rather than `exec > >(tee)`: the log is complete when the script ends.
checks 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
