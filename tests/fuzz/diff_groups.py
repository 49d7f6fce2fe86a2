"""Groups the mismatches a differential fuzz run logged (``TRITONX_DIFF_LOG``).

Usage: ``python tests/fuzz/diff_groups.py LOG.jsonl [...]``. Mismatches whose
answers differ only in request ids, quoted names and numbers fall in one class;
classes are printed largest first, each with its shortest request.
"""

from __future__ import annotations

import collections
import json
import re
import sys
from typing import Any


def shape(code: str, text: str) -> str:
    """An answer with what varies between requests of one class blanked out."""
    if code in ("OK", "200"):
        return "<success>"
    text = re.sub(r"\[request id: .*?\] ", "[request id: X] ", text, flags=re.S)
    text = re.sub(r"'[^']*'", "'S'", text)
    return re.sub(r"-?\d+", "N", text)[:150]


def main(paths: list[str]) -> None:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = collections.defaultdict(list)
    for path in paths:
        with open(path) as lines:
            for line in lines:
                entry = json.loads(line)
                ours, theirs = entry["ours"], entry["theirs"] or ["skipped", ""]
                key = (entry["kind"], ours[0], shape(*ours), theirs[0], shape(*theirs))
                groups[key].append(entry)
    total = sum(len(entries) for entries in groups.values())
    print(f"{total} mismatches in {len(groups)} classes")
    for key, entries in sorted(groups.items(), key=lambda kv: (kv[0][0], -len(kv[1]))):
        entry = min(entries, key=lambda e: len(e["shown"]))
        theirs = entry["theirs"] or ["skipped", ""]
        print("=" * 80)
        print(f"{key[0]} x{len(entries)}")
        print(f"  tritonx {entry['ours'][0]}: {entry['ours'][1][:300]!r}")
        print(f"  Triton  {theirs[0]}: {theirs[1][:300]!r}")
        print(f"  request: {entry['shown'][:1200]}")


if __name__ == "__main__":
    main(sys.argv[1:])
