#!/usr/bin/env bash
# System packages tritonx builds against: grpc++/protobuf for the C++ gRPC server,
# libevent/OpenSSL/RapidJSON/zlib/RE2 for the C++ HTTP server, GoogleTest for the C++
# unit tests, a compiler and CMake/Ninja, Python's venv module and headers (Debian
# ships both apart from python3), and redis-server for the Redis response cache's
# tests. Debian/Ubuntu.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
pkgs=(build-essential cmake ninja-build pkg-config libgrpc++-dev libprotobuf-dev
      protobuf-compiler protobuf-compiler-grpc libgtest-dev python3-venv python3-dev
      libevent-dev libssl-dev rapidjson-dev zlib1g-dev libre2-dev redis-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
