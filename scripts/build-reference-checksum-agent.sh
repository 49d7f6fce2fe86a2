#!/usr/bin/env bash
# Builds Triton's upstream checksum repository agent for the reference server, so
# that tests/repository/test_repo_agents.py can compare its checksum cases:
#
#   scripts/build-reference-checksum-agent.sh <checksum_repository_agent checkout> \
#       <triton core checkout> <output directory>
#   TRITONX_REFERENCE_REPOAGENTS=<output directory> pytest tests/repository/test_repo_agents.py
#
# The agent's symbols (TRITONREPOAGENT_*, TRITONSERVER_ErrorNew) are resolved by the
# tritonserver process that loads it, so only OpenSSL's libcrypto is linked.
set -euo pipefail
agent_src=$1 core_src=$2 out=$3
mkdir -p "$out/checksum"
g++ -O1 -std=c++17 -shared -fPIC -I"$core_src/include" \
  "$agent_src/src/checksum.cc" -o "$out/checksum/libtritonrepoagent_checksum.so" -lcrypto
echo "$out/checksum/libtritonrepoagent_checksum.so"
