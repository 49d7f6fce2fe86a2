#!/usr/bin/env bash
# Prepares .whl/ (git-ignored) with what scripts/gpu-check.sh needs on a GPU machine
# that has no package registry: cp312 manylinux wheels of tritonclient and its HTTP
# client stack plus httptools (the Python HTTP engine), cuda-bindings (what
# tritonclient.utils.cuda_shared_memory imports), and, under .whl/extra, the
# googletest source, Python 3.12 headers and the generated protos for machines
# without GTest, Python.h or grpc_tools. About 22 MiB; pass `.whl` as a carried path.
# Run from the repository root after a dev build (the protos come from it).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl/extra/proto
platforms=()
for p in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 \
  manylinux1 manylinux_2_31 manylinux_2_34 manylinux_2_35; do
  platforms+=(--platform "${p}_x86_64")
done
for pkg in tritonclient==2.73.0 geventhttpclient==2.6.1 gevent==26.9.0 greenlet==3.3.2 \
  zope.event==6.2 zope.interface==8.7 python-rapidjson==1.25 httptools==0.9.0 \
  brotli==1.2.1 cuda-bindings==13.5.0 cuda-pathfinder==1.9.1; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" --platform any -d .whl "$pkg"
done
[ -d .whl/extra/googletest ] || cp -r /usr/src/googletest .whl/extra/googletest
include=${PY312_INCLUDE:-$(ls -d /root/.pyenv/versions/3.12*/include/python3.12 2>/dev/null | head -1)}
if [ -n "$include" ] && [ ! -d .whl/extra/python3.12-include ]; then
  cp -r "$include" .whl/extra/python3.12-include
fi
cp python/tritonx/_proto/*_pb2*.py .whl/extra/proto/
du -sh .whl
