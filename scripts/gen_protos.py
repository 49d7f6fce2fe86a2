"""Generate tritonx's Python protobuf/grpc modules from protos/ (run by CMake).

The generated modules import each other as ``tritonx._proto.<name>_pb2`` so that they do
not collide with other packages' top-level ``model_config_pb2`` (tritonclient ships one).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]


def main() -> int:
    proto_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    protos = sorted(str(p) for p in proto_dir.glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{proto_dir}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        return 1
    # Make imports between generated modules package-relative, and register the
    # descriptors in a pool of our own: tritonclient registers the same `inference.*`
    # messages in protobuf's default pool, and both must be importable in one process
    # (a Python model may use tritonclient, tests use both).
    for path in out_dir.glob("*_pb2*.py"):
        text = path.read_text()
        text = re.sub(
            r"^import (\w+_pb2) as",
            r"from tritonx._proto import \1 as",
            text,
            flags=re.M,
        )
        text = text.replace(
            "_descriptor_pool.Default()",
            "__import__('tritonx._proto', fromlist=['POOL']).POOL",
        )
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
