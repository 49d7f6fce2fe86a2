"""Packs a libFuzzer corpus directory into one file, and back.

A pack is the inputs one after another, each a uint32 little-endian length and then
its bytes (replay_main.cc reads it). The repository keeps one pack per target
(corpus/<target>.pack) instead of thousands of small files:

    python tests/cpp/fuzz/corpus_pack.py unpack corpus/fuzz_http_infer.pack /tmp/c
    ... fuzz with /tmp/c as the corpus, merge (-set_cover_merge=1) into /tmp/kept ...
    python tests/cpp/fuzz/corpus_pack.py pack /tmp/kept corpus/fuzz_http_infer.pack
"""

from __future__ import annotations

import argparse
import hashlib
import struct
from pathlib import Path


def pack(folder: Path, out: Path) -> int:
    inputs = sorted(path.read_bytes() for path in folder.iterdir() if path.is_file())
    out.write_bytes(b"".join(struct.pack("<I", len(data)) + data for data in inputs))
    return len(inputs)


def unpack(packed: Path, folder: Path) -> int:
    data = packed.read_bytes()
    folder.mkdir(parents=True, exist_ok=True)
    at = count = 0
    while at < len(data):
        if len(data) - at < 4:
            raise ValueError(f"{packed}: cut short after {count} inputs")
        (length,) = struct.unpack_from("<I", data, at)
        item = data[at + 4 : at + 4 + length]
        if len(item) != length:
            raise ValueError(f"{packed}: cut short after {count} inputs")
        # libFuzzer's own naming: the SHA-1 of the input.
        (folder / hashlib.sha1(item).hexdigest()).write_bytes(item)
        at += 4 + length
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="directory -> pack")
    packing.add_argument("folder", type=Path)
    packing.add_argument("out", type=Path)
    unpacking = commands.add_parser("unpack", help="pack -> directory")
    unpacking.add_argument("packed", type=Path)
    unpacking.add_argument("folder", type=Path)
    args = parser.parse_args()
    if args.command == "pack":
        print(f"packed {pack(args.folder, args.out)} inputs into {args.out}")
    else:
        print(f"unpacked {unpack(args.packed, args.folder)} inputs into {args.folder}")


if __name__ == "__main__":
    main()
