#!/usr/bin/env bash
# The project's style gates, as CI runs them (scripts/run-tests.sh): ruff (lint and
# format), mypy over the package, clang-format over the C++ sources. The tool versions
# are pinned in pyproject.toml's `lint` extra so that every machine agrees.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check python tests benchmarks scripts
ruff format --check python tests benchmarks scripts
mypy python/tritonx
find csrc tests/cpp \( -name '*.cc' -o -name '*.cpp' -o -name '*.h' -o -name '*.cu' \) \
  -print0 | xargs -0 clang-format --dry-run -Werror
echo "lint: clean"
