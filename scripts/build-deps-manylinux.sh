#!/usr/bin/env bash
# cibuildwheel's before-all for manylinux_2_28 images (AlmaLinux 8), run once per image
# before the wheels are built (pyproject.toml [tool.cibuildwheel]): the libraries that
# scripts/install-system-deps.sh takes from apt on Debian. EL8's grpc/protobuf are too
# old, so gRPC (with its bundled protobuf, abseil, re2 and c-ares) is built from source
# as static, position-independent libraries linked into tritonx._C; libevent, OpenSSL
# and zlib come from dnf and are vendored by `auditwheel repair`. Not run on the
# development machine (no container engine there); see docs/deploy.md.
set -euo pipefail
GRPC_VERSION="${GRPC_VERSION:-v1.66.2}"
RAPIDJSON_COMMIT="${RAPIDJSON_COMMIT:-3202b0a3ddfbe2cf739ce0acfc48fead2cb75f4a}"
PREFIX=/usr/local
jobs="$(nproc)"

dnf install -y -q openssl-devel libevent-devel zlib-devel git

# RapidJSON is header-only; 1.1.0 (2016, EL8's) does not build with current GCCs.
git clone -q https://github.com/Tencent/rapidjson /tmp/rapidjson
git -C /tmp/rapidjson checkout -q "$RAPIDJSON_COMMIT"
cp -r /tmp/rapidjson/include/rapidjson "$PREFIX/include/"

git clone -q --depth 1 --branch "$GRPC_VERSION" --recurse-submodules --shallow-submodules \
  https://github.com/grpc/grpc /tmp/grpc
cmake -S /tmp/grpc -B /tmp/grpc/build -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX" \
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DBUILD_SHARED_LIBS=OFF \
  -DgRPC_INSTALL=ON -DgRPC_BUILD_TESTS=OFF \
  -DgRPC_SSL_PROVIDER=package -DgRPC_ZLIB_PROVIDER=package \
  -DgRPC_BUILD_CSHARP_EXT=OFF -DgRPC_BUILD_GRPC_CSHARP_PLUGIN=OFF \
  -DgRPC_BUILD_GRPC_NODE_PLUGIN=OFF -DgRPC_BUILD_GRPC_OBJECTIVE_C_PLUGIN=OFF \
  -DgRPC_BUILD_GRPC_PHP_PLUGIN=OFF -DgRPC_BUILD_GRPC_PYTHON_PLUGIN=OFF \
  -DgRPC_BUILD_GRPC_RUBY_PLUGIN=OFF
cmake --build /tmp/grpc/build -j "$jobs"
cmake --install /tmp/grpc/build
rm -rf /tmp/grpc /tmp/rapidjson
